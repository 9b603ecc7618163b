"""A real Asterisk on any Debian machine: `LocalPbx` builds a sid root once, renders our configuration
with fresh credentials, runs ``asterisk -f`` chrooted in its own session and mount namespace, and
stops it again. Everything lives in the cache folder; the running instance is described by ``pbx.json``.

A named instance (``LocalPbx(settings, instance="b")``, :class:`ivr.pbx.render.Instance`) runs a second
Asterisk from the same root with its own configuration, run, spool, log and AstDB folders, shifted ports
and ``pbx-b.json``, ``asterisk-b.log``: two PBXs on one machine, e.g. one controller each.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from config import Settings
from ivr.pbx.errors import PbxError
from ivr.pbx.filelock import locked
from ivr.pbx.mirror import debian_mirror
from ivr.pbx.prompts import PromptVoice, hold_sound, install_prompts
from ivr.pbx.render import (
    CARRIER_USERNAME,
    CREDENTIALS_USERNAME,
    ETC_DIR,
    LIB_DIR,
    LOG_DIR,
    RUN_DIR,
    SPOOL_DIR,
    Instance,
    RenderValues,
    SoftphoneValues,
    blocklist_agi_url,
    instance_values,
    message_values,
    render_all,
    softphone_values,
    write_private,
)
from ivr.pbx.rootfs import ensure_root, root_path
from ivr.pbx.webrtc import make_dtls_certificate

log = logging.getLogger(__name__)

# Folders inside the root (paths as Asterisk sees them, without the leading slash).
SOUNDS = "usr/share/asterisk/sounds/hotline"  # prompts and emulated-caller audio: Playback(hotline/<name>)
ZH = "usr/share/asterisk/sounds/zh"  # fixed-name files in the callers' language: digits/*, queue-lessthan
MOH = "usr/share/asterisk/moh-hotline"
RECORDINGS = "var/spool/asterisk/recordings"
MESSAGES = "var/spool/asterisk/messages"  # voice messages (留言), [hotline-message]
KEEP_DEBIAN_CONFIG = frozenset({"indications.conf"})  # ring-back and busy tones


@dataclass
class PbxInfo:
    """How to reach the running local PBX; paths are on the host side."""

    pid: int
    ami_host: str
    ami_port: int
    ami_username: str
    ami_secret: str
    sip_port: int
    audiosocket_port: int
    sounds_dir: Path
    recordings_dir: Path
    root: Path
    agents: dict[str, str] = field(default_factory=dict)  # softphone extension → SIP password
    log_file: Path | None = None
    # the AMI account that only writes the softphones' passwords into AstDB (write = system); empty in the
    # pbx.json of a PBX started before it existed (a restart adds it)
    credentials_username: str = ""
    credentials_secret: str = ""
    carrier_username: str = (
        ""  # the simulated carrier trunk (load tests): calls 12345 with any caller number
    )
    carrier_password: str = ""
    # browser softphones: SIP over WebSocket port, WebRTC extensions (short-lived passwords in AstDB), test phone
    ws_port: int = 0
    webrtc_extensions: list[str] = field(default_factory=list)
    test_phone_number: str = ""
    instance: str = ""  # "" the default instance, else its name (pbx.instances)

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    def clear_messages(self) -> int:
        """Delete the voice messages (留言) left in the PBX's folder by earlier runs, which a service on a fresh
        database would file as new tickets; returns how many."""
        old = list((self.root / MESSAGES).glob("*.wav"))
        for path in old:
            path.unlink(missing_ok=True)
        return len(old)

    @classmethod
    def from_json(cls, text: str) -> PbxInfo:
        known = {
            f.name for f in fields(cls)
        }  # an older start's fields (e.g. SIP passwords) are dropped
        data: dict[str, Any] = {k: v for k, v in json.loads(text).items() if k in known}
        paths = {f.name for f in fields(cls) if "Path" in str(f.type)}
        for key in paths & data.keys():
            data[key] = Path(data[key]) if data[key] is not None else None
        return cls(**data)


def _require_root() -> None:
    if os.geteuid() != 0:
        raise PbxError("pbx.needs_root", "本地 PBX 需要 root 权限 (debootstrap、chroot、mount)")


def _alive_in(pid: int, root: Path) -> bool:
    """True when *pid* is a live (not zombie) process chrooted into *root*."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return (
            stat.rsplit(")", 1)[1].split()[0] != "Z"
            and Path(os.readlink(f"/proc/{pid}/root")) == root
        )
    except (OSError, IndexError):
        return False


def _wait_exit(pid: int, timeout: float) -> bool:
    """Wait (on a pidfd, not by polling) until *pid* has exited; reap it when it is our child."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        exited = bool(select.select([pidfd], [], [], timeout)[0])
    finally:
        os.close(pidfd)
    if exited:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    return exited


def _chown_to(path: Path, uid: int, gid: int, mode: int) -> None:
    os.chown(path, uid, gid)
    path.chmod(mode)


def _asterisk_ids(root: Path) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        parts = line.split(":")
        if parts[0] == "asterisk":
            return int(parts[2]), int(parts[3])
    raise PbxError("pbx.root_broken", "Asterisk 运行环境不完整 (缺少 asterisk 用户)")


class LocalPbx:
    """Build, start, inspect and stop the local Asterisk kept in *cache_dir* (default settings.pbx.cache_dir):
    the default one, or the named *instance* of ``pbx.instances`` beside it in the same root (its ports shifted:
    ``self.settings`` are the instance's). Prompts are spoken by *voice* (default: espeak-ng, see
    :mod:`ivr.pbx.prompts`)."""

    def __init__(
        self,
        settings: Settings,
        cache_dir: Path | None = None,
        *,
        instance: str = "",
        voice: PromptVoice | None = None,
    ) -> None:
        self.instance = Instance.of(settings, instance)
        self.settings = self.instance.shifted(settings)
        self.voice = voice
        self.cache_dir = Path(cache_dir or settings.pbx.cache_dir).resolve()
        self.root = root_path(self.cache_dir)
        suffix = f"-{instance}" if instance else ""
        self.info_file = self.cache_dir / f"pbx{suffix}.json"
        self.log_file = self.cache_dir / f"asterisk{suffix}.log"
        self._lock = self.cache_dir / f"pbx{suffix}.lock"
        self._etc = self.instance.folder(ETC_DIR)
        self._asterisk = ["/usr/sbin/asterisk", "-C", f"{self._etc}/asterisk.conf"]

    # ---- public API -------------------------------------------------------------------------------------
    def status(self) -> PbxInfo | None:
        """The running instance, or None (a stale pbx.json of a dead process counts as not running)."""
        if not self.info_file.is_file():
            return None
        try:
            info = PbxInfo.from_json(self.info_file.read_text())
        except (ValueError, TypeError):
            return None
        return info if _alive_in(info.pid, self.root) else None

    def start(self, *, audiosocket_port: int | None = None) -> PbxInfo:
        """Start (building the root first if needed) and wait until fully booted, with freshly generated AMI
        and SIP credentials; an already running instance is returned as it is."""
        _require_root()
        with locked(self._lock):
            info = self.status()
            if info is not None:
                if audiosocket_port and audiosocket_port != info.audiosocket_port:
                    info = self._retarget_bot(info, audiosocket_port)
                return info
            return self._start(
                RenderValues.generate(
                    self.settings, audiosocket_port=audiosocket_port, instance=self.instance
                )
            )

    def restart(self) -> PbxInfo:
        """Stop and start again with the same credentials and ports, so connected clients can log in again."""
        _require_root()
        with locked(self._lock):
            running = self.status()
            values = (
                self._values_of(running)
                if running
                else RenderValues.generate(self.settings, instance=self.instance)
            )
            if running is not None:
                self._stop(running)
            return self._start(values)

    def stop(self) -> None:
        """Stop cleanly (`core stop now`), then SIGTERM / SIGKILL; mounts vanish with the process."""
        with locked(self._lock):
            info = self.status()
            if info is not None:
                self._stop(info)
            self.info_file.unlink(missing_ok=True)

    def _start(self, values: RenderValues) -> PbxInfo:
        if not self.root.is_dir():
            ensure_root(
                self.cache_dir, self.settings.pbx.suite, debian_mirror(self.settings.pbx.mirror)
            )
        self._prepare()
        uid, gid = _asterisk_ids(self.root)
        make_dtls_certificate(
            self.root / values.dtls_cert_file[1:], self.root / values.dtls_key_file[1:], (uid, gid)
        )
        self._write_config(values)
        pid = self._spawn()
        try:
            self._wait_booted(pid)
        except BaseException:
            self._terminate(pid)
            raise
        info = PbxInfo(
            pid=pid,
            ami_host=values.host,
            ami_port=values.ami_port,
            ami_username=values.ami_username,
            ami_secret=values.ami_secret,
            sip_port=values.sip_port,
            audiosocket_port=values.audiosocket_port,
            sounds_dir=self.root / SOUNDS,
            recordings_dir=self.root / RECORDINGS,
            root=self.root,
            agents=values.agents,
            log_file=self.log_file,
            credentials_username=values.credentials_username,
            credentials_secret=values.credentials_secret,
            carrier_username=values.carrier_username,
            carrier_password=values.carrier_password,
            ws_port=values.ws_port,
            webrtc_extensions=values.webrtc_extensions,
            test_phone_number=values.test_phone_number,
            instance=self.instance.name,
        )
        self._write_info(info)
        log.info("local PBX running, pid %d, AMI %s:%d", pid, info.ami_host, info.ami_port)
        return info

    def rx(self, command: str, *, timeout: float = 10) -> str:
        """Run one Asterisk CLI command in the running instance (``asterisk -rx``) and return its output."""
        try:
            proc = subprocess.run(
                ["chroot", str(self.root), *self._asterisk, "-rx", command],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise PbxError("pbx.cli_timeout", "Asterisk 控制台命令超时", command) from None
        if proc.returncode != 0:
            raise PbxError(
                "pbx.cli_failed", "Asterisk 控制台命令失败", f"{command}: {proc.stderr.strip()}"
            )
        return proc.stdout

    # ---- steps ------------------------------------------------------------------------------------------
    def _prepare(self) -> None:
        uid, gid = _asterisk_ids(self.root)
        for rel in (RECORDINGS, MESSAGES, self._inside(RUN_DIR)):
            path = self.root / rel
            path.mkdir(parents=True, exist_ok=True)
            _chown_to(path, uid, gid, 0o755 if rel == self._inside(RUN_DIR) else 0o750)
        # a named instance's own copies of Debian's folders, as Debian made them
        for debian in (SPOOL_DIR, LOG_DIR, LIB_DIR):
            path = self.root / self._inside(debian)
            path.mkdir(exist_ok=True)
            _chown_to(path, uid, gid, (self.root / debian[1:]).stat().st_mode & 0o7777)
        (self.root / self._etc[1:]).mkdir(mode=0o755, exist_ok=True)
        install_prompts(
            {
                "prompts": self.root / SOUNDS,
                "zh": self.root / ZH,
                "digits": self.root / ZH / "digits",
            },
            voice=self.voice,
        )
        hold = self.root / MOH / "hold.wav"
        if not hold.is_file():
            hold_sound(hold)

    def _inside(self, debian: str) -> str:
        """The instance's copy of a Debian folder, relative to the root (``/var/run`` read as ``run``: it is an
        absolute symlink inside the root, never followed from outside)."""
        return self.instance.folder(debian.replace("/var/run/", "/run/", 1))[1:]

    def _write_config(self, values: RenderValues) -> None:
        uid, gid = _asterisk_ids(self.root)
        rendered = render_all(values.as_context())
        etc = self.root / self._etc[1:]
        for kept in KEEP_DEBIAN_CONFIG:  # a named instance's copy of Debian's file
            debian = self.root / ETC_DIR[1:] / kept
            if debian.is_file() and not (etc / kept).exists():
                shutil.copy2(debian, etc / kept)
                os.chown(etc / kept, uid, gid)
        for stale in etc.iterdir():  # Debian's sample files: only ours (and tones) are read
            if (
                stale.is_file()
                and stale.name not in rendered
                and stale.name not in KEEP_DEBIAN_CONFIG
            ):
                stale.unlink()
        for (
            name,
            text,
        ) in rendered.items():  # manager.conf and pjsip.conf hold the AMI secret, SIP passwords
            write_private(etc / name, text, 0o640, (uid, gid))

    def _spawn(self) -> int:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        # Own session (survives `hotline pbx start` returning) and own mount namespace (its /proc mount
        # disappears with it: nothing to unmount, even after a crash).
        script = 'root="$1"; shift; mount -t proc proc "$root/proc" && exec chroot "$root" "$@"'
        cmd = [
            "unshare",
            "--mount",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            str(self.root),
            *self._asterisk,
            "-f",
        ]
        with self.log_file.open("ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        return proc.pid

    def _wait_booted(self, pid: int) -> None:
        deadline = time.monotonic() + self.settings.pbx.boot_timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PbxError("pbx.boot_timeout", "Asterisk 启动超时", self._log_tail())
            if not _alive_in(pid, self.root) and _wait_exit(pid, 0):
                raise PbxError("pbx.start_failed", "Asterisk 启动失败", self._log_tail())
            try:
                if "fully booted" in self.rx("core waitfullybooted", timeout=remaining).lower():
                    break
            except PbxError:
                pass  # control socket not there yet
            _wait_exit(pid, min(0.2, remaining))  # returns at once if Asterisk died meanwhile
        self._check_ami()

    def _check_ami(self) -> None:
        host, port = self.settings.pbx.host, self.settings.pbx.ami_port
        try:
            with socket.create_connection((host, port), timeout=5) as sock:
                banner = sock.makefile("rb").readline(200)
        except OSError as exc:
            raise PbxError(
                "pbx.ami_unreachable", "Asterisk 管理接口 (AMI) 无法连接", f"{host}:{port}: {exc}"
            ) from None
        if not banner.startswith(b"Asterisk Call Manager"):
            raise PbxError(
                "pbx.ami_unreachable", "AMI 端口被其他程序占用", f"{host}:{port}: {banner!r}"
            )

    def _terminate(self, pid: int) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                return
            if _wait_exit(pid, 5):
                return

    def _stop(self, info: PbxInfo) -> None:
        try:
            self.rx("core stop now", timeout=10)
        except PbxError:
            pass
        if not _wait_exit(info.pid, 10):
            self._terminate(info.pid)

    def _values_of(self, info: PbxInfo, audiosocket_port: int | None = None) -> RenderValues:
        """The render values of a running instance (same credentials and ports)."""
        return RenderValues(
            host=info.ami_host,
            ami_port=info.ami_port,
            ami_username=info.ami_username,
            ami_secret=info.ami_secret,
            sip_port=info.sip_port,
            rtp_start=self.settings.pbx.rtp_start,
            rtp_end=self.settings.pbx.rtp_end,
            audiosocket_host=info.ami_host,
            audiosocket_port=audiosocket_port or info.audiosocket_port,
            queue_timeout_s=self.settings.pbx.queue_timeout_s,
            bot_hosts=self.settings.bot.hosts,
            agents=info.agents,
            credentials_username=info.credentials_username or CREDENTIALS_USERNAME,
            credentials_secret=info.credentials_secret or secrets.token_urlsafe(24),
            carrier_username=info.carrier_username or CARRIER_USERNAME,
            carrier_password=info.carrier_password or secrets.token_urlsafe(12),
            **message_values(self.settings),
            blocklist_agi=blocklist_agi_url(self.settings),
            **self._softphone_values_of(info),
            **instance_values(self.instance),
        )

    def _softphone_values_of(self, info: PbxInfo) -> SoftphoneValues:
        """The running instance's softphone values; the settings' for an instance started before softphones."""
        if not info.webrtc_extensions:
            return softphone_values(self.settings)
        return {
            "ws_port": info.ws_port,
            "webrtc_extensions": info.webrtc_extensions,
            "test_phone_number": info.test_phone_number,
        }

    def _retarget_bot(self, info: PbxInfo, audiosocket_port: int) -> PbxInfo:
        self._write_config(self._values_of(info, audiosocket_port))
        self.rx("dialplan reload")
        info.audiosocket_port = audiosocket_port
        self._write_info(info)
        return info

    def _write_info(self, info: PbxInfo) -> None:
        write_private(self.info_file, info.to_json(), 0o600)  # holds the AMI secret

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
