"""Short-lived softphone passwords on the real Asterisk: the password the console issues for an agent's fetch
registers their WebRTC extension (SIP REGISTER with digest authentication, over UDP), a wrong one does not, and
neither does the issued one after the agent's logout (revocation) or after its TTL (expiry). Asterisk reads the
extensions' auth objects from AstDB through sorcery (config/asterisk/sorcery.conf); they are written over the AMI
account that may only do that (manager.conf), logged in on a connection of its own."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from agent_console.softphone import IssuedSoftphones
from config import Settings
from ivr.callcontrol import CallControl
from ivr.softphone_credentials import AUTH_FAMILY
from tests.e2e.controller_support import e2e_settings, running

pytestmark = [pytest.mark.pbx, pytest.mark.slow]
EXTENSION = "6110"  # the last WebRTC extension (6101…6110): no browser test uses it
OK = 200


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # SIP digest (RFC 2617) is MD5


class SipRegistrar(asyncio.DatagramProtocol):
    """A minimal SIP UDP client: one REGISTER of ``extension`` at a time, answering a digest challenge."""

    def __init__(self, host: str, port: int, extension: str) -> None:
        self.host, self.port, self.extension = host, port, extension
        self.replies: asyncio.Queue[str] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None
        self.cseq = 0
        self.call_id = f"{secrets.token_hex(8)}@hotline-test"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.replies.put_nowait(data.decode(errors="replace"))

    async def register(self, password: str) -> int:
        """The final status of a REGISTER with ``password`` (answering one 401/407 challenge)."""
        status, reply = await self._send(None)
        if status in (401, 407):
            status, _ = await self._send(self._authorization(reply, password))
        return status

    async def unregister(self, password: str) -> None:
        status, reply = await self._send(None, expires=0)
        if status in (401, 407):
            await self._send(self._authorization(reply, password), expires=0)

    @property
    def uri(self) -> str:
        return f"sip:{self.host}:{self.port}"

    def _authorization(self, challenge: str, password: str) -> str:
        fields = dict(re.findall(r'(\w+)="?([^",\r\n]*)"?', challenge.split("Digest", 1)[1]))
        realm, nonce = fields["realm"], fields["nonce"]
        ha1 = _md5(f"{self.extension}:{realm}:{password}")
        ha2 = _md5(f"REGISTER:{self.uri}")
        cnonce, nc = secrets.token_hex(8), "00000001"
        response = _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        opaque = f', opaque="{fields["opaque"]}"' if "opaque" in fields else ""
        return (
            f'Authorization: Digest username="{self.extension}", realm="{realm}", nonce="{nonce}", '
            f'uri="{self.uri}", response="{response}", algorithm=MD5, qop=auth, nc={nc}, '
            f'cnonce="{cnonce}"{opaque}\r\n'
        )

    async def _send(self, authorization: str | None, expires: int = 60) -> tuple[int, str]:
        assert self.transport is not None
        local_host, local_port = self.transport.get_extra_info("sockname")[:2]
        self.cseq += 1
        user = f"sip:{self.extension}@{self.host}"
        request = (
            f"REGISTER {self.uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {local_host}:{local_port};rport;branch=z9hG4bK{secrets.token_hex(8)}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <{user}>;tag={secrets.token_hex(4)}\r\n"
            f"To: <{user}>\r\n"
            f"Call-ID: {self.call_id}\r\n"
            f"CSeq: {self.cseq} REGISTER\r\n"
            f"Contact: <sip:{self.extension}@{local_host}:{local_port}>\r\n"
            f"Expires: {expires}\r\n"
            f"{authorization or ''}"
            "Content-Length: 0\r\n\r\n"
        )
        self.transport.sendto(request.encode())
        while True:  # provisional answers and Asterisk's own requests (qualify OPTIONS) are skipped
            reply = await asyncio.wait_for(self.replies.get(), 10)
            if not reply.startswith("SIP/2.0 ") or f"CSeq: {self.cseq} REGISTER" not in reply:
                continue
            status = int(reply.split(" ", 2)[1])
            if status >= 200:
                return status, reply


@pytest.fixture
async def registrar(pbx: Any) -> AsyncIterator[SipRegistrar]:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        lambda: SipRegistrar(pbx.ami_host, pbx.sip_port, EXTENSION),
        remote_addr=(pbx.ami_host, pbx.sip_port),
    )
    yield client
    transport.close()


def agent_settings(settings: Settings, pbx: Any) -> Settings:
    own = e2e_settings(settings, pbx)
    phone = own.softphone.model_copy(update={"extensions": {"agent9": EXTENSION}})
    return own.model_copy(update={"softphone": phone})


async def test_the_issued_password_registers_until_it_is_revoked_or_expires(
    settings: Settings, pbx: Any, local_pbx: Any, database: Any, registrar: SipRegistrar
) -> None:
    cfg = agent_settings(settings, pbx)
    async with running(cfg, database, local_pbx, pbx) as ctrl:
        switchboard = CallControl(ctrl, cfg.callcontrol, database, lambda: datetime.now(UTC))
        softphones = IssuedSoftphones(cfg, switchboard)
        switchboard.credentials.start()  # its own AMI login: the account that may only write AstDB
        try:
            await asyncio.wait_for(switchboard.credentials.ami.connected.wait(), 20)
            account = await softphones.agent_account("agent9")  # the agent's page fetches it
            assert account is not None and account.extension == EXTENSION
            assert await registrar.register("not-the-password") != OK
            assert await registrar.register(account.password) == OK
            await registrar.unregister(account.password)

            await softphones.revoke("agent9")  # the agent logs out
            assert await registrar.register(account.password) != OK
            assert await ctrl.astdb_get(AUTH_FAMILY, EXTENSION) is None

            renewed = await softphones.agent_account("agent9")
            assert renewed is not None and renewed.password != account.password
            assert await registrar.register(account.password) != OK  # the earlier one stays dead
            assert await registrar.register(renewed.password) == OK
            await registrar.unregister(renewed.password)
            await switchboard.credentials._expire(EXTENSION, renewed.password)  # its TTL is over
            assert await registrar.register(renewed.password) != OK
        finally:
            await switchboard.revoke_softphone(EXTENSION)
            await switchboard.credentials.stop()
