"""Attachment files: streamed upload with size and type limits, kept under ``<data_dir>/attachments``.

A file is stored under the hex SHA-256 of its bytes (the uploaded name is only shown, never used as a path);
its type is decided by its first bytes, not by what the browser claims.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from aiohttp import BodyPartReader, web

from agent_console.errors import BadRequest, InvalidInput
from config import Settings

MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
CHUNK = 64 * 1024
# magic bytes → (content type, file name endings allowed with it)
_SIGNATURES: tuple[tuple[bytes, str, tuple[str, ...]], ...] = (
    (b"\xff\xd8\xff", "image/jpeg", (".jpg", ".jpeg")),
    (b"\x89PNG\r\n\x1a\n", "image/png", (".png",)),
    (b"%PDF-", "application/pdf", (".pdf",)),
    (
        b"PK\x03\x04",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        (".docx",),
    ),
    (
        b"PK\x03\x04",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        (".xlsx",),
    ),
)
ALLOWED_ENDINGS = tuple(e for _, _, endings in _SIGNATURES for e in endings)


def attachments_dir(settings: Settings) -> Path:
    """Where reply attachments are kept: ``<data_dir>/attachments``."""
    return Path(settings.data_dir) / "attachments"


@dataclass(frozen=True)
class StoredFile:
    file_name: str
    content_type: str
    size: int
    sha256: str


def _bad_file(message: str) -> InvalidInput:
    return InvalidInput(
        message, details=[{"field": "file", "code": "invalid_attachment", "message": message}]
    )


def sniff(head: bytes, file_name: str) -> str:
    """The content type of a file starting with ``head`` named ``file_name``, if it is one we accept."""
    ending = Path(file_name).suffix.lower()
    for magic, content_type, endings in _SIGNATURES:
        if head.startswith(magic) and ending in endings:
            return content_type
    raise _bad_file(
        f"不支持的附件类型：{file_name}（可上传 {'、'.join(ALLOWED_ENDINGS)}，且内容须与扩展名一致）"
    )


async def _file_part(request: web.Request) -> BodyPartReader:
    if request.content_type != "multipart/form-data":
        raise BadRequest("请以 multipart/form-data 上传附件（字段名 file）")
    reader = await request.multipart()
    async for part in reader:
        if isinstance(part, BodyPartReader) and part.name == "file" and part.filename:
            return part
    raise _bad_file("请选择要上传的附件（字段名 file）")


def _temp_file(directory: Path) -> tuple[int, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, prefix=".upload-")
    return fd, Path(name)


async def receive_upload(request: web.Request, directory: Path) -> StoredFile:
    """Stream the multipart field ``file`` to ``directory``; 422 (field ``file``) when too big or of another type."""
    part = await _file_part(request)
    file_name = Path(
        unquote(part.filename or "")
    ).name.strip()  # some clients percent-encode non-ASCII names
    fd, tmp = await asyncio.to_thread(_temp_file, directory)
    digest, size, head = hashlib.sha256(), 0, b""
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := await part.read_chunk(CHUNK):
                size += len(chunk)
                if size > MAX_ATTACHMENT_BYTES:
                    raise _bad_file(f"附件不能超过 {MAX_ATTACHMENT_BYTES // (1024 * 1024)} MB")
                if len(head) < 16:
                    head += chunk[:16]
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise _bad_file("附件是空文件")
        content_type = sniff(head, file_name)
        sha = digest.hexdigest()
        await asyncio.to_thread(tmp.replace, directory / sha)
    finally:
        await asyncio.to_thread(tmp.unlink, missing_ok=True)
    return StoredFile(file_name, content_type, size, sha)


def file_response(
    directory: Path, sha256: str, file_name: str, content_type: str
) -> web.FileResponse:
    """The stored file as a download (never rendered inline by the browser)."""
    path = directory / sha256
    if not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(
        path,
        headers={
            "Content-Type": content_type,
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(file_name)}",
            "Cache-Control": "private, no-store",
        },
    )
