"""Errors of the local PBX harness: a stable code for machines and a Chinese message for people."""

from __future__ import annotations

from config.errors import HotlineError


class PbxError(HotlineError):
    """The local PBX cannot be built, configured, started or reached."""

    def __init__(self, code: str, message: str, detail: str = "") -> None:
        super().__init__(code, message)
        self.detail = detail
