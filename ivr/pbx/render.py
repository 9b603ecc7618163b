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
# the AMI account that only writes the softphones' SIP passwords into AstDB (manager.conf: write = system)
CREDENTIALS_USERNAME = "hotline-credentials"
CARRIER_USERNAME = "carrier-sim"  # the simulated carrier trunk of the load tests (pjsip.conf)
# The DTLS certificate of the WebRTC softphones, made at every start (paths inside the root: Asterisk's key dir).
DTLS_CERT_FILE = "/var/lib/asterisk/keys/webrtc.crt"
DTLS_KEY_FILE = "/var/lib/asterisk/keys/webrtc.key"
# Debian's folders of the default instance (inside the root); a named instance's end in -<name>.
ETC_DIR = "/etc/asterisk"
RUN_DIR = "/var/run/asterisk"
SPOOL_DIR = "/var/spool/asterisk"
LOG_DIR = "/var/log/asterisk"
# AstDB and keys (the shared data stay in /var/lib/asterisk, astvarlibdir)
LIB_DIR = "/var/lib/asterisk"


@dataclass(frozen=True)
class Instance:
    """One Asterisk of the local harness in the shared root: the default one (name "") with Debian's folders and
    the ports as configured, or a named one (``pbx.instances``) with folders ending in ``-<name>``, every port
    shifted by ``port_shift`` and its Uniqueids prefixed with its system name."""

    name: str = ""
    port_shift: int = 0

    @classmethod
    def of(cls, settings: Settings, name: str = "") -> Instance:
        """The instance ``name``: the nth of ``pbx.instances`` shifts its ports by n × ``instance_port_offset``."""
        if not name:
            return cls()
        pbx = settings.pbx
        if name not in pbx.instances:
            raise PbxError(
                "pbx.unknown_instance",
                f"未配置的本地 PBX 实例：{name}",
                f"pbx.instances = {pbx.instances}",
            )
        instance = cls(name, (pbx.instances.index(name) + 1) * pbx.instance_port_offset)
        highest = max(pbx.rtp_end, pbx.ami_port, pbx.sip_port, settings.softphone.ws_port)
        if max(highest, settings.blocklist.agi_port) + instance.port_shift > 65535:
            raise PbxError("pbx.bad_ports", f"本地 PBX 实例 {name} 的端口超出 65535")
        return instance

    def folder(self, path: str) -> str:
        """The instance's copy of a Debian folder: ``/etc/asterisk`` → ``/etc/asterisk-b``."""
        return f"{path}-{self.name}" if self.name else path

    @property
    def system_name(self) -> str:
        """asterisk.conf ``systemname`` (Uniqueids ``<system name>-<epoch>.<n>``); none for the default one."""
        return f"hotline-{self.name}" if self.name else ""

    def shifted(self, settings: Settings) -> Settings:
        """``settings`` with the ports this instance binds (AMI, SIP, RTP, WebSocket) and the controller's
        blocklist FastAGI port its dialplan asks shifted; the bot's AudioSocket port stays."""
        if not self.port_shift:
            return settings
        pbx, shift = settings.pbx, self.port_shift
        ports = {
            "ami_port": pbx.ami_port + shift,
            "sip_port": pbx.sip_port + shift,
            "rtp_start": pbx.rtp_start + shift,
            "rtp_end": pbx.rtp_end + shift,
        }
        return settings.model_copy(
            update={
                "pbx": pbx.model_copy(update=ports),
                "softphone": settings.softphone.model_copy(
                    update={"ws_port": settings.softphone.ws_port + shift}
                ),
                "blocklist": settings.blocklist.model_copy(
                    update={"agi_port": settings.blocklist.agi_port + shift}
                ),
            }
        )


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
    # the speech-bot hosts the dialplan tries (settings.bot.hosts); empty = audiosocket_host:audiosocket_port
    bot_hosts: tuple[str, ...] = ()
    agents: dict[str, str] = field(default_factory=dict)  # extension → SIP password
    # the AstDB account of the softphones' passwords (ivr/softphone_credentials.py); its secret is fresh too
    credentials_username: str = CREDENTIALS_USERNAME
    credentials_secret: str = ""
    carrier_username: str = CARRIER_USERNAME
    carrier_password: str = ""
    message_max_s: int = 120  # voice messages (留言): settings.message
    message_silence_s: int = 5
    message_readback_wait_s: int = 10
    # the controller's blocklist FastAGI (blocklist_agi_url)
    blocklist_agi: str = "agi://127.0.0.1:15073/blocklist"
    # browser softphones (settings.softphone): SIP over WebSocket, the WebRTC extensions (their passwords are
    # short-lived, in AstDB: ivr/softphone_credentials.py), the test phone's caller number
    ws_port: int = 15088
    webrtc_extensions: list[str] = field(default_factory=list)
    test_phone_number: str = "13800012345"
    dtls_cert_file: str = DTLS_CERT_FILE
    dtls_key_file: str = DTLS_KEY_FILE
    # the instance's own folders and Uniqueid prefix (asterisk.conf, :func:`instance_values`)
    etc_dir: str = ETC_DIR
    run_dir: str = RUN_DIR
    spool_dir: str = SPOOL_DIR
    log_dir: str = LOG_DIR
    lib_dir: str = LIB_DIR
    system_name: str = ""

    @classmethod
    def generate(
        cls,
        settings: Settings,
        *,
        audiosocket_port: int | None = None,
        instance: Instance | None = None,
    ) -> RenderValues:
        """Fresh values for ``instance`` (default: the default one); ``settings`` as given, so the caller passes
        the instance's shifted settings (:meth:`Instance.shifted`)."""
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
            bot_hosts=settings.bot.hosts,
            agents=agents,
            credentials_username=CREDENTIALS_USERNAME,
            credentials_secret=secrets.token_urlsafe(24),
            carrier_username=CARRIER_USERNAME,
            carrier_password=secrets.token_urlsafe(12),
            **message_values(settings),
            blocklist_agi=blocklist_agi_url(settings),
            **softphone_values(settings),
            **instance_values(instance or Instance()),
        )

    def as_context(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class MessageValues(TypedDict):
    message_max_s: int
    message_silence_s: int
    message_readback_wait_s: int


class SoftphoneValues(TypedDict):
    ws_port: int
    webrtc_extensions: list[str]
    test_phone_number: str


def message_values(settings: Settings) -> MessageValues:
    """The voice-message (留言) limits of the dialplan's [globals]."""
    msg = settings.message
    return {
        "message_max_s": msg.max_s,
        "message_silence_s": msg.silence_s,
        "message_readback_wait_s": msg.readback_wait_s,
    }


def softphone_values(settings: Settings) -> SoftphoneValues:
    """The WebRTC softphones' port, extensions and test phone (no passwords: the console issues them)."""
    phone = settings.softphone
    extensions = range(phone.extension_first, phone.extension_first + phone.extension_count)
    return {
        "ws_port": phone.ws_port,
        "webrtc_extensions": [str(ext) for ext in extensions],
        "test_phone_number": phone.test_phone_number,
    }


class InstanceValues(TypedDict):
    etc_dir: str
    run_dir: str
    spool_dir: str
    log_dir: str
    lib_dir: str
    dtls_cert_file: str
    dtls_key_file: str
    system_name: str


def instance_values(instance: Instance) -> InstanceValues:
    """asterisk.conf's folders and system name of ``instance``, and its DTLS certificate in its own key folder."""
    lib = instance.folder(LIB_DIR)
    return {
        "etc_dir": instance.folder(ETC_DIR),
        "run_dir": instance.folder(RUN_DIR),
        "spool_dir": instance.folder(SPOOL_DIR),
        "log_dir": instance.folder(LOG_DIR),
        "lib_dir": lib,
        "dtls_cert_file": DTLS_CERT_FILE.replace(LIB_DIR, lib, 1),
        "dtls_key_file": DTLS_KEY_FILE.replace(LIB_DIR, lib, 1),
        "system_name": instance.system_name,
    }


def blocklist_agi_url(settings: Settings) -> str:
    """Where the dialplan asks the controller's blocklist (FastAGI): the PBX's own host, the configured port."""
    return f"agi://{settings.pbx.host}:{settings.blocklist.agi_port}/blocklist"


def template_names(template_dir: Path = TEMPLATE_DIR) -> list[str]:
    return sorted(p.name for p in template_dir.glob("*.conf"))


def _check(values: Mapping[str, Any]) -> None:
    for account in ("ami", "credentials"):
        if not str(values.get(f"{account}_secret", "")).strip():
            raise PbxError("pbx.empty_secret", "AMI 密码为空，拒绝生成配置", account)
        if not str(values.get(f"{account}_username", "")).strip():
            raise PbxError("pbx.empty_secret", "AMI 用户名为空，拒绝生成配置", account)
    if values["ami_username"] == values["credentials_username"]:
        raise PbxError("pbx.ami_account_clash", "AMI 控制账号与软电话密码账号不能相同")
    for ext, password in dict(values.get("agents", {})).items():
        if not str(password).strip():
            raise PbxError("pbx.empty_secret", f"分机 {ext} 的 SIP 密码为空，拒绝生成配置")
    clash = set(values.get("webrtc_extensions", [])) & dict(values.get("agents", {})).keys()
    if clash:
        raise PbxError(
            "pbx.extension_clash", f"浏览器软电话分机与坐席分机重复：{', '.join(sorted(clash))}"
        )
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
