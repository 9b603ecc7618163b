"""The agents' browser softphone (WebRTC): who has which extension, and the SIP account a browser registers with.

Credentials: no WebRTC extension has a password in any file. Every fetch of a logged-in agent's softphone settings
(and of the test phone's, by an administrator) issues a fresh random password through the switchboard
(:meth:`agent_console.switchboard.Switchboard.provision_softphone`: AstDB over AMI, see
:mod:`ivr.softphone_credentials`), valid for ``softphone.credential_ttl_s``; it replaces the previous one, and the
agent's next login or their logout revokes it. The page keeps it in memory only (``Cache-Control: no-store``) and
fetches a new one before it expires. Someone who reads it out of their browser can register the extension at
most until then.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from agent_console.calls import default_interface
from agent_console.errors import ConsoleError
from agent_console.switchboard import Switchboard
from config import Settings
from config.errors import HotlineError

log = logging.getLogger(__name__)

TEST_PHONE = "test-phone"  # the PBX's endpoint of the administrators' test phone (pjsip.conf)
SIP_DOMAIN = "hotline12345"  # the SIP domain of the accounts' addresses (Asterisk ignores it)


@dataclass(frozen=True)
class SipAccount:
    """What a browser needs to register one softphone."""

    extension: str
    password: str
    ws_url: str
    display_name: str
    expires_in_s: int  # the password stops working after this many seconds

    @property
    def uri(self) -> str:
        return f"sip:{self.extension}@{SIP_DOMAIN}"


class SoftphoneDirectory(Protocol):
    """The SIP accounts of the agents' softphones and of the test phone; None when there is none."""

    async def agent_account(self, username: str) -> SipAccount | None: ...

    async def test_phone_account(self) -> SipAccount | None: ...

    async def revoke(self, username: str) -> None:
        """The agent's softphone account stops working (their logout or new login)."""


def webrtc_extensions(settings: Settings) -> frozenset[str]:
    """The WebRTC extensions the PBX has (``softphone.extension_first``, ``extension_count``)."""
    first = settings.softphone.extension_first
    return frozenset(str(ext) for ext in range(first, first + settings.softphone.extension_count))


def ws_url(settings: Settings) -> str:
    """The SIP-over-WebSocket URL browsers connect to."""
    phone = settings.softphone
    return phone.ws_url or f"ws://{settings.pbx.host}:{phone.ws_port}/ws"


def ws_origin(settings: Settings) -> str:
    """``ws_url`` without its path: what the console's Content-Security-Policy lets pages connect to."""
    scheme, _, rest = ws_url(settings).partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


class IssuedSoftphones:
    """Accounts whose password is issued for this fetch and lives ``softphone.credential_ttl_s`` seconds."""

    def __init__(
        self,
        settings: Settings,
        switchboard: Switchboard,
        new_password: Callable[[], str] = lambda: secrets.token_urlsafe(18),
    ) -> None:
        self.settings = settings
        self.switchboard = switchboard
        self.new_password = new_password

    async def agent_account(self, username: str) -> SipAccount | None:
        extension = self._extension(username)
        return await self._issue(extension, f"坐席{extension}") if extension else None

    async def test_phone_account(self) -> SipAccount | None:
        return await self._issue(TEST_PHONE, "测试电话")

    async def revoke(self, username: str) -> None:
        """The agent's softphone password stops working (their logout or new login); a telephony outage is
        logged, not raised: the password still dies with its TTL."""
        extension = self._extension(username)
        if extension is None:
            return
        try:
            await self.switchboard.revoke_softphone(extension)
        except (
            HotlineError,
            ConsoleError,
        ) as exc:  # AMI away, no controller on the command channel
            log.warning("softphone password of %s not revoked: %s", extension, exc)

    def _extension(self, username: str) -> str | None:
        """The agent's WebRTC extension, if the PBX has it (``softphone.extension_first`` …)."""
        extension = self.settings.softphone.extensions.get(username)
        return extension if extension in webrtc_extensions(self.settings) else None

    async def _issue(self, extension: str, display_name: str) -> SipAccount:
        ttl = self.settings.softphone.credential_ttl_s
        password = self.new_password()
        await self.switchboard.provision_softphone(extension, password, ttl)
        return SipAccount(extension, password, ws_url(self.settings), display_name, ttl)


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
