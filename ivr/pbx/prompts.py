"""Chinese IVR prompts: text from config/asterisk/prompts.toml, voice from espeak-ng, 8 kHz WAV for Asterisk.

Files are re-synthesised only when the text file changed (a stamp holds its hash). Also makes the
hold sound of the ``hotline`` music class and converts caller audio for emulated calls.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tomllib
from collections.abc import Mapping
from pathlib import Path

from config.settings import config_path
from ivr.pbx.errors import PbxError

PROMPTS_FILE = config_path("asterisk") / "prompts.toml"
STAMP = ".prompts.sha256"


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise PbxError(
            "pbx.tool_missing", f"缺少系统工具 {tool}，请安装 Debian 软件包 {tool}", tool
        )
    return path


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise PbxError(
            "pbx.audio_failed", "语音文件生成失败", f"{' '.join(cmd)}: {proc.stderr.strip()}"
        )


def to_asterisk_wav(source: Path, target: Path) -> None:
    """Any audio file sox reads → 8 kHz mono 16-bit WAV (what format_wav plays without transcoding)."""
    if not source.is_file():
        raise PbxError("pbx.audio_missing", f"音频文件不存在：{source}", str(source))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp.wav")
    _run(
        [
            _require("sox"),
            "-G",
            str(source),
            "-r",
            "8000",
            "-c",
            "1",
            "-b",
            "16",
            "-e",
            "signed-integer",
            str(tmp),
        ]
    )
    tmp.replace(target)


def synthesise(text: str, voice: str, speed: int, target: Path) -> None:
    """One prompt with espeak-ng, resampled to 8 kHz."""
    target.parent.mkdir(parents=True, exist_ok=True)
    raw = target.with_name(target.name + ".espeak.wav")
    _run([_require("espeak-ng"), "-v", voice, "-s", str(speed), "-w", str(raw), text])
    try:
        to_asterisk_wav(raw, target)
    finally:
        raw.unlink(missing_ok=True)


def hold_sound(target: Path) -> None:
    """A quiet chime every two seconds for the queue's music on hold (no third-party music is shipped)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _run(
        [
            _require("sox"),
            "-n",
            "-r",
            "8000",
            "-c",
            "1",
            "-b",
            "16",
            str(target),
            "synth",
            "0.5",
            "sine",
            "523",
            "fade",
            "0.05",
            "0.5",
            "0.2",
            "vol",
            "0.15",
            "pad",
            "0",
            "1.5",
            "repeat",
            "9",
        ]
    )


def install_prompts(folders: Mapping[str, Path], prompts_file: Path = PROMPTS_FILE) -> int:
    """Synthesise each table of *prompts_file* named in *folders* into its folder, unless already done for
    this text (a stamp in the first folder holds its hash); returns the number of files written."""
    text = prompts_file.read_bytes()
    digest = hashlib.sha256(text).hexdigest()
    stamp = next(iter(folders.values())) / STAMP
    if stamp.is_file() and stamp.read_text().strip() == digest:
        return 0
    data = tomllib.loads(text.decode("utf-8"))
    voice, speed = str(data.get("voice", "cmn")), int(data.get("speed", 150))
    written = 0
    for table, folder in folders.items():
        for name, words in data.get(table, {}).items():
            synthesise(str(words), voice, speed, folder / f"{name}.wav")
            written += 1
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(digest + "\n")
    return written
