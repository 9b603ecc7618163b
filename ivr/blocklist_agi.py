"""The blocklist's FastAGI server: the dialplan asks it about every inbound caller before the menu.

``AGI(agi://<host>:<port>/blocklist,<caller digits>)`` in ``[hotline-inbound]`` connects here; the answer is
``SET VARIABLE HOTLINE_BLOCKED 1`` (the call goes to ``[hotline-blocked]``: a polite prompt, hang-up) or ``0``.
Any fault lets the call through (fail open: a citizen is never refused because of a fault): a lookup slower
than ``blocklist.lookup_timeout_s`` or failing answers ``0``; a server that is down makes ``AGI()`` set
AGISTATUS=FAILURE and the dialplan goes on.

Commands are sent with :class:`panoramisk.fast_agi.Request`. The request headers are read here rather than by
``panoramisk.fast_agi.Application.handler``, which loops without end on a connection closed before its headers
(``read()`` keeps returning ``b""``) and would stall the controller's event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from panoramisk.fast_agi import Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.pii import mask_phone
from config.settings import BlocklistSettings
from ivr.blocklist import is_blocked

log = logging.getLogger(__name__)

SCRIPT = "blocklist"  # the path of the AGI URL (agi_network_script)
VARIABLE = "HOTLINE_BLOCKED"  # the channel variable the dialplan tests
PEER_TIMEOUT_S = 2.0  # Asterisk sends its headers and answers at once; a silent peer is dropped
HEADERS_MAX_BYTES = 8192


def parse_headers(raw: bytes) -> dict[str, str]:
    """``agi_name: value`` lines (up to the blank line) → a mapping."""
    headers: dict[str, str] = {}
    for line in raw.decode("utf-8", errors="replace").splitlines():
        name, sep, value = line.partition(": ")
        if sep:
            headers[name.strip()] = value.strip()
    return headers


class BlocklistAgi:
    """A FastAGI server on ``settings.agi_host:agi_port`` answering ``/blocklist`` from the database."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: BlocklistSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.clock = clock
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.settings.agi_host, self.settings.agi_port, limit=HEADERS_MAX_BYTES
        )
        log.info("blocklist FastAGI on %s:%d", self.settings.agi_host, self.settings.agi_port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def lookup(self, raw_number: str) -> bool:
        """Whether the caller is blocked now; False on any fault or after the lookup timeout (fail open)."""
        try:
            async with asyncio.timeout(self.settings.lookup_timeout_s), self.sessionmaker() as db:
                return await is_blocked(db, raw_number, self.clock())
        except Exception:  # a fault must never refuse a citizen
            log.warning(
                "blocklist lookup failed for %s: call let through",
                mask_phone(raw_number),
                exc_info=True,
            )
            return False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(PEER_TIMEOUT_S):
                raw = await reader.readuntil(b"\n\n")
            headers = parse_headers(raw)
            if headers.get("agi_network_script") != SCRIPT:
                log.warning("FastAGI request for an unknown script refused")
                return
            blocked = await self.lookup(headers.get("agi_arg_1", ""))
            request = Request(None, headers, reader, writer)
            async with asyncio.timeout(PEER_TIMEOUT_S):
                await request.send_command(f"SET VARIABLE {VARIABLE} {int(blocked)}")
            if blocked:
                log.info("blocked caller %s refused", mask_phone(headers.get("agi_arg_1", "")))
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
            ConnectionError,
        ):
            log.debug("FastAGI connection dropped", exc_info=True)
        finally:
            writer.close()
