"""The agents' browser softphone (WebRTC): who has which extension, and the SIP account a browser registers with.

Credentials: each WebRTC extension's SIP password is random, made at every ``hotline pbx start`` and known only
to the PBX and to the console server (the local PBX's ``pbx.json``, readable by root only). A logged-in agent's
page fetches its own extension's account over the authenticated session (``Cache-Control: no-store``) and
keeps it in memory only: the agent never sees or types it, and it changes with the next PBX start. It is not a
per-login secret: someone who reads it out of their browser's developer tools can register that extension
until the PBX restarts. A true per-login password would need the console to rewrite Asterisk's configuration
(AMI ``UpdateConfig`` / ``DBPut`` with ``config`` or ``system`` write rights), which the controller's
least-privilege AMI account deliberately does not have.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aiohttp import web

from agent_console.calls import default_interface
from config import Settings
from ivr.pbx import LocalPbx, PbxInfo

TEST_PHONE = "test-phone"  # the PBX's endpoint of the administrators' test phone (pjsip.conf)
SIP_DOMAIN = "hotline12345"  # the SIP domain of the accounts' addresses (Asterisk ignores it)


@dataclass(frozen=True)
class SipAccount:
    """What a browser needs to register one softphone."""

    extension: str
    password: str
    ws_url: str
    display_name: str

    @property
    def uri(self) -> str:
        return f"sip:{self.extension}@{SIP_DOMAIN}"


class SoftphoneDirectory(Protocol):
    """The SIP accounts of the agents' softphones and of the test phone; None when there is none."""

    def agent_account(self, username: str) -> SipAccount | None: ...

    def test_phone_account(self) -> SipAccount | None: ...


def ws_url(settings: Settings) -> str:
    """The SIP-over-WebSocket URL browsers connect to."""
    phone = settings.softphone
    return phone.ws_url or f"ws://{settings.pbx.host}:{phone.ws_port}/ws"


def ws_origin(settings: Settings) -> str:
    """``ws_url`` without its path: what the console's Content-Security-Policy lets pages connect to."""
    scheme, _, rest = ws_url(settings).partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


class LocalPbxSoftphones:
    """The accounts of the local PBX (``hotline pbx start``), read from its ``pbx.json`` at every request, so a
    restarted PBX's new passwords are handed out at once."""

    def __init__(
        self, settings: Settings, status: Callable[[], PbxInfo | None] | None = None
    ) -> None:
        self.settings = settings
        self.status = status or LocalPbx(settings, Path(settings.pbx.cache_dir)).status

    def agent_account(self, username: str) -> SipAccount | None:
        extension = self.settings.softphone.extensions.get(username)
        info = self.status()
        if extension is None or info is None or extension not in info.webrtc_agents:
            return None
        password = info.webrtc_agents[extension]
        return SipAccount(extension, password, ws_url(self.settings), f"坐席{extension}")

    def test_phone_account(self) -> SipAccount | None:
        info = self.status()
        if info is None or not info.test_phone_password:
            return None
        return SipAccount(TEST_PHONE, info.test_phone_password, ws_url(self.settings), "测试电话")


class AgentInterfaces:
    """Console username ↔ queue member interface: ``PJSIP/<extension>`` for an agent with a softphone
    extension (``[softphone.extensions]``), else the default ``PJSIP/<username>``."""

    def __init__(self, settings: Settings) -> None:
        self.extensions = dict(settings.softphone.extensions)
        self.usernames = {f"PJSIP/{ext}": user for user, ext in self.extensions.items()}

    def interface(self, username: str) -> str:
        extension = self.extensions.get(username)
        return f"PJSIP/{extension}" if extension else default_interface(username)

    def username(self, interface: str) -> str | None:
        """The console user answering on ``interface`` (None: not one of ours)."""
        if interface in self.usernames:
            return self.usernames[interface]
        tech, _, name = interface.partition("/")
        return name if tech == "PJSIP" and name and name not in self.extensions.values() else None


SOFTPHONES = web.AppKey("softphones", SoftphoneDirectory)
