"""The DTLS certificate of the local PBX's WebRTC softphones: self-signed, made fresh at every start.

Browsers check DTLS against the fingerprint in the SDP (``dtls_verify = fingerprint``), not against a CA, so a
self-signed certificate is what WebRTC expects; it only needs to be Asterisk's own and private.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ivr.pbx.errors import PbxError

VALID_DAYS = 365
SUBJECT = "/CN=hotline12345-webrtc"


def make_dtls_certificate(cert: Path, key: Path, owner: tuple[int, int]) -> None:
    """Write a fresh ECDSA P-256 key and its self-signed certificate (owner *owner*, key mode 0600)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise PbxError(
            "pbx.openssl_missing",
            "缺少 openssl，无法生成 WebRTC 的 DTLS 证书 (apt-get install openssl)",
        )
    cert.parent.mkdir(parents=True, exist_ok=True)
    key.unlink(missing_ok=True)
    command = [
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", str(VALID_DAYS), "-subj", SUBJECT, "-keyout", str(key), "-out", str(cert),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PbxError(
            "pbx.certificate_failed", "生成 WebRTC 的 DTLS 证书失败", result.stderr[-500:]
        )
    for path, mode in ((cert, 0o644), (key, 0o600)):
        os.chown(path, *owner)
        path.chmod(mode)
