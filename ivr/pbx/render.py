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
from typing import Any, TypedDict

import jinja2

from config import Settings
from config.settings import config_path
from ivr.pbx.errors import PbxError

TEMPLATE_DIR = config_path("asterisk")
AMI_USERNAME = "hotline"
CARRIER_USERNAME = "carrier-sim"  # the simulated carrier trunk of the load tests (pjsip.conf)
# The DTLS certificate of the WebRTC softphones, made at every start (paths inside the root: Asterisk's key dir).
DTLS_CERT_FILE = "/var/lib/asterisk/keys/webrtc.crt"
DTLS_KEY_FILE = "/var/lib/asterisk/keys/webrtc.key"


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
    # the controller's blocklist FastAGI (blocklist_agi_url)
    blocklist_agi: str = "agi://127.0.0.1:15073/blocklist"
    # browser softphones (settings.softphone): SIP over WebSocket, WebRTC extension → SIP password
    ws_port: int = 15088
    webrtc_agents: dict[str, str] = field(default_factory=dict)
    test_phone_number: str = "13800012345"
    test_phone_password: str = ""
    dtls_cert_file: str = DTLS_CERT_FILE
    dtls_key_file: str = DTLS_KEY_FILE

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
            blocklist_agi=blocklist_agi_url(settings),
            **softphone_values(settings),
        )

    def as_context(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class MessageValues(TypedDict):
    message_max_s: int
    message_silence_s: int
    message_readback_wait_s: int


class SoftphoneValues(TypedDict):
    ws_port: int
    webrtc_agents: dict[str, str]
    test_phone_number: str
    test_phone_password: str


def message_values(settings: Settings) -> MessageValues:
    """The voice-message (留言) limits of the dialplan's [globals]."""
    msg = settings.message
    return {
        "message_max_s": msg.max_s,
        "message_silence_s": msg.silence_s,
        "message_readback_wait_s": msg.readback_wait_s,
    }


def softphone_values(settings: Settings) -> SoftphoneValues:
    """The WebRTC softphones' port, extensions and test phone, with passwords fresh for this start."""
    phone = settings.softphone
    extensions = range(phone.extension_first, phone.extension_first + phone.extension_count)
    return {
        "ws_port": phone.ws_port,
        "webrtc_agents": {str(ext): secrets.token_urlsafe(18) for ext in extensions},
        "test_phone_number": phone.test_phone_number,
        "test_phone_password": secrets.token_urlsafe(18),
    }


def blocklist_agi_url(settings: Settings) -> str:
    """Where the dialplan asks the controller's blocklist (FastAGI): the PBX's own host, the configured port."""
    return f"agi://{settings.pbx.host}:{settings.blocklist.agi_port}/blocklist"


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
    webrtc = dict(values.get("webrtc_agents", {}))
    clash = webrtc.keys() & dict(values.get("agents", {})).keys()
    if clash:
        raise PbxError(
            "pbx.extension_clash", f"浏览器软电话分机与坐席分机重复：{', '.join(sorted(clash))}"
        )
    for ext, password in webrtc.items():
        if not str(password).strip():
            raise PbxError("pbx.empty_secret", f"软电话分机 {ext} 的 SIP 密码为空，拒绝生成配置")
    if not str(values.get("test_phone_password", "")).strip():
        raise PbxError("pbx.empty_secret", "测试电话的 SIP 密码为空，拒绝生成配置")
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
