"""Errors of the local PBX harness: a stable code for machines and a Chinese message for people."""

from __future__ import annotations


class PbxError(RuntimeError):
    """The local PBX cannot be built, configured, started or reached."""

    def __init__(self, code: str, message: str, detail: str = "") -> None:
        super().__init__(f"{code}: {message}" + (f" ({detail})" if detail else ""))
        self.code = code
        self.message = message
        self.detail = detail
