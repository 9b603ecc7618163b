"""Chinese IVR prompts: text from config/asterisk/prompts.toml, 8 kHz WAV for Asterisk.

The voice is given by whoever starts the PBX (:class:`PromptVoice`: ``hotline run`` and ``hotline pbx start``
pass the bot's voice, so a caller hears one voice from the greeting to the answer); without one, espeak-ng
with the file's ``voice`` and ``speed``. Files are re-synthesised only when the text file or the voice
changed (a stamp holds their hash): a voice is named without loading it, so an up-to-date start loads
none. Also makes the hold sound of the ``hotline`` music class and converts caller audio for emulated calls.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class PromptVoice:
    """Who speaks the prompts: ``name`` names everything that changes the sound (a new name re-synthesises
    them), ``speak`` writes one text as an 8 kHz mono 16-bit WAV file. ``spoken_name``, when given, names the
    voice that really spoke once ``speak`` has run (one that fell back to another voice): the stamp keeps it,
    so the prompts are made again with the voice named at the next start."""

    name: str
    speak: Callable[[str, Path], None]
    spoken_name: Callable[[], str] | None = None

    def stamp_name(self) -> str:
        return self.name if self.spoken_name is None else self.spoken_name()


def espeak_voice(voice: str, speed: int) -> PromptVoice:
    return PromptVoice(
        f"espeak-ng/{voice}/{speed}", lambda text, target: synthesise(text, voice, speed, target)
    )


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


def install_prompts(
    folders: Mapping[str, Path],
    prompts_file: Path = PROMPTS_FILE,
    voice: PromptVoice | None = None,
) -> int:
    """Synthesise each table of *prompts_file* named in *folders* into its folder with *voice* (default:
    espeak-ng as the file says), unless already done for this text and voice (a stamp in the first folder
    holds their hash); returns the number of files written."""
    text = prompts_file.read_bytes()
    data = tomllib.loads(text.decode("utf-8"))
    if voice is None:
        voice = espeak_voice(str(data.get("voice", "cmn")), int(data.get("speed", 150)))
    stamp = next(iter(folders.values())) / STAMP
    if stamp.is_file() and stamp.read_text().strip() == _digest(text, voice.name):
        return 0
    written = 0
    for table, folder in folders.items():
        for name, words in data.get(table, {}).items():
            voice.speak(str(words), folder / f"{name}.wav")
            written += 1
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(_digest(text, voice.stamp_name()) + "\n")
    return written


def _digest(prompts: bytes, voice_name: str) -> str:
    return hashlib.sha256(prompts + b"\0" + voice_name.encode()).hexdigest()
