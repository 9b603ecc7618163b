"""Render the shipped Asterisk configuration templates (config/asterisk/*.conf) with this start's values.

Templates use Jinja2 ``{{ name }}`` placeholders (Asterisk's own ``${VAR}`` syntax passes through
untouched). Rendering fails on any placeholder without a value and on an empty secret, so a shipped file
can never run with a default or blank AMI secret or SIP password.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from config import Settings
from config.settings import config_path
from ivr.pbx.errors import PbxError

TEMPLATE_DIR = config_path("asterisk")
AMI_USERNAME = "hotline"
CARRIER_USERNAME = "carrier-sim"  # the simulated carrier trunk of the load tests (pjsip.conf)


@dataclass(frozen=True)
class RenderValues:
    """Everything the templates need; secrets are fresh for every start."""

    host: str
    ami_port: int
    ami_username: str
    ami_secret: str
    sip_port: int
    rtp_start: int
    rtp_end: int
    audiosocket_host: str
    audiosocket_port: int
    queue_timeout_s: int
    agents: dict[str, str] = field(default_factory=dict)  # extension → SIP password
    carrier_username: str = CARRIER_USERNAME
    carrier_password: str = ""
    message_max_s: int = 120  # voice messages (留言): settings.message
    message_silence_s: int = 5
    message_readback_wait_s: int = 10

    @classmethod
    def generate(cls, settings: Settings, *, audiosocket_port: int | None = None) -> RenderValues:
        pbx = settings.pbx
        agents = {
            str(pbx.agent_first + i): secrets.token_urlsafe(12) for i in range(pbx.agent_count)
        }
        return cls(
            host=pbx.host,
            ami_port=pbx.ami_port,
            ami_username=AMI_USERNAME,
            ami_secret=secrets.token_urlsafe(24),
            sip_port=pbx.sip_port,
            rtp_start=pbx.rtp_start,
            rtp_end=pbx.rtp_end,
            audiosocket_host=pbx.host,
            audiosocket_port=audiosocket_port or pbx.audiosocket_port,
            queue_timeout_s=pbx.queue_timeout_s,
            agents=agents,
            carrier_username=CARRIER_USERNAME,
            carrier_password=secrets.token_urlsafe(12),
            **message_values(settings),
        )

    def as_context(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def message_values(settings: Settings) -> dict[str, int]:
    """The voice-message (留言) limits of the dialplan's [globals]."""
    msg = settings.message
    return {
        "message_max_s": msg.max_s,
        "message_silence_s": msg.silence_s,
        "message_readback_wait_s": msg.readback_wait_s,
    }


def template_names(template_dir: Path = TEMPLATE_DIR) -> list[str]:
    return sorted(p.name for p in template_dir.glob("*.conf"))


def _check(values: Mapping[str, Any]) -> None:
    if not str(values.get("ami_secret", "")).strip():
        raise PbxError("pbx.empty_secret", "AMI 密码为空，拒绝生成配置")
    if not str(values.get("ami_username", "")).strip():
        raise PbxError("pbx.empty_secret", "AMI 用户名为空，拒绝生成配置")
    for ext, password in dict(values.get("agents", {})).items():
        if not str(password).strip():
            raise PbxError("pbx.empty_secret", f"分机 {ext} 的 SIP 密码为空，拒绝生成配置")
    if not str(values.get("carrier_password", "")).strip():
        raise PbxError("pbx.empty_secret", "模拟运营商中继的 SIP 密码为空，拒绝生成配置")
    if values.get("rtp_start", 0) > values.get("rtp_end", 0):
        raise PbxError("pbx.bad_ports", "RTP 端口范围无效 (rtp_start > rtp_end)")


def render_all(values: Mapping[str, Any], template_dir: Path = TEMPLATE_DIR) -> dict[str, str]:
    """File name → rendered text for every template; raises PbxError on a missing value or empty secret."""
    _check(values)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_dir),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    out: dict[str, str] = {}
    for name in template_names(template_dir):
        try:
            out[name] = env.get_template(name).render(**values)
        except jinja2.UndefinedError as exc:
            raise PbxError(
                "pbx.template_value_missing", f"配置模板 {name} 缺少取值", str(exc)
            ) from None
    return out


def write_private(path: Path, text: str, mode: int, owner: tuple[int, int] | None = None) -> None:
    """Replace *path* with *text* (secrets inside) through a file that is never more open than *mode*.

    The text goes into a fresh temporary file beside *path*, created exclusively with mode 0600 whatever the
    umask (no stale temporary file is reused), given *owner* (uid, gid) and *mode*, then renamed over *path*.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            if owner is not None:
                os.fchown(out.fileno(), *owner)
            os.fchmod(out.fileno(), mode)
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
