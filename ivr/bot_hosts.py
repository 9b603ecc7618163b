"""Several speech-bot hosts (语音机器人): their load reports and the order the dialplan tries them in for a call.

Each bot writes its row of ``bot_hosts`` (:class:`BotHeartbeat`: active sessions, capacity, heartbeat time) every
``[bot] heartbeat_s`` and at every call's start and end. The controller reads the table as often
(:class:`BotHostBoard`) and, when it sends a caller to the bot, sets ``BOT_HOSTS`` on the channel: the hosts least
loaded first, those without a fresh report last (:func:`order_hosts`). The dialplan ([hotline-bot]) tries them in
that order, then the configured order, and moves on from a host that refuses, is unreachable or breaks off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.settings import BotHostsSettings
from ivr.models import BotHost

log = logging.getLogger(__name__)

HOST_SEPARATOR = "&"  # between the hosts of BOT_HOSTS / BOT_SERVICES (Asterisk's SHIFT() takes it)


@dataclass(frozen=True, slots=True)
class BotLoad:
    """A bot's last load report."""

    address: str
    active_sessions: int
    capacity: int
    heartbeat_at: datetime

    @property
    def free(self) -> int:
        return self.capacity - self.active_sessions


def order_hosts(
    hosts: Sequence[str], loads: Mapping[str, BotLoad], now: datetime, stale_after_s: float
) -> tuple[str, ...]:
    """``hosts`` least loaded first: live ones by free sessions (most first), then the full ones, then those
    without a report younger than ``stale_after_s`` (down, or never started); ties keep the configured order."""

    def rank(position: int, host: str) -> tuple[int, int, int]:
        load = loads.get(host)
        if load is None or (now - load.heartbeat_at).total_seconds() > stale_after_s:
            return (2, 0, position)
        return (0 if load.free > 0 else 1, -load.free, position)

    return tuple(host for _, host in sorted(enumerate(hosts), key=lambda item: rank(*item)))


async def read_loads(session: AsyncSession) -> dict[str, BotLoad]:
    """Every bot's last report, by address."""
    rows = (await session.scalars(select(BotHost))).all()
    return {
        r.address: BotLoad(r.address, r.active_sessions, r.capacity, r.heartbeat_at) for r in rows
    }


class BotHostBoard:
    """The controller's view of the bots' load, refreshed every ``heartbeat_s`` (a database read never delays
    an overflow decision). Callers it sent count on their host until the next refresh shows them."""

    def __init__(
        self,
        config: BotHostsSettings,
        sessionmaker: async_sessionmaker[AsyncSession],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.sessionmaker = sessionmaker
        self.clock = clock
        self.loads: dict[str, BotLoad] = {}
        self._sent: Counter[str] = Counter()  # callers sent to each host since the last refresh
        self._refreshed = asyncio.Condition()

    async def refresh(self) -> None:
        async with self.sessionmaker() as session:
            loads = await read_loads(session)
        async with self._refreshed:
            self.loads = loads
            self._sent.clear()
            self._refreshed.notify_all()

    async def until(self, predicate: Callable[[Mapping[str, BotLoad]], bool]) -> None:
        """Wait until a refresh shows loads that ``predicate`` accepts."""
        async with self._refreshed:
            await self._refreshed.wait_for(lambda: predicate(self.loads))

    async def run(self) -> None:
        """Refresh until cancelled; a database away keeps the last view (logged)."""
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # the database may be briefly unavailable: next beat
                log.warning("bot load reports not read: %s", exc)
            await asyncio.sleep(self.config.heartbeat_s)

    def choose(self) -> str:
        """``BOT_HOSTS`` for one caller sent to the bot now (the hosts joined by ``&``); counts the caller on
        the first host."""
        loads = {
            a: replace(load, active_sessions=load.active_sessions + self._sent[a])
            for a, load in self.loads.items()
        }
        order = order_hosts(self.config.hosts, loads, self.clock(), self.config.stale_after_s)
        self._sent[order[0]] += 1
        return HOST_SEPARATOR.join(order)


class BotHeartbeat:
    """A bot's load report: its ``bot_hosts`` row written every ``heartbeat_s`` and soon after each
    :meth:`report` (a call started or ended; several reports in a burst make one write), one UPDATE each."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        address: str,
        capacity: int,
        every_s: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sessionmaker = sessionmaker
        self.address = address
        self.capacity = capacity
        self.every_s = every_s
        self.clock = clock
        self.active_sessions = 0
        self.beats = 0  # rows written
        self._due = asyncio.Event()
        self._healthy = True

    def report(self, active_sessions: int) -> None:
        """The bot serves ``active_sessions`` calls now (called by the AudioSocket server)."""
        self.active_sessions = active_sessions
        self._due.set()

    async def beat(self) -> None:
        """Write the row now: one UPDATE, an INSERT the first time."""
        values = {
            "active_sessions": self.active_sessions,
            "capacity": self.capacity,
            "heartbeat_at": self.clock(),
        }
        async with self.sessionmaker() as session:
            result = await session.execute(
                update(BotHost).where(BotHost.address == self.address).values(**values)
            )
            if not getattr(result, "rowcount", 0):
                session.add(BotHost(address=self.address, **values))
            with contextlib.suppress(IntegrityError):  # another writer of this address: next beat
                await session.commit()
        self.beats += 1

    async def run(self) -> None:
        """Beat until cancelled; while the database is away the bot keeps serving (logged once per outage)."""
        while True:
            self._due.clear()
            try:
                await self.beat()
                self._healthy = True
            except Exception as exc:
                if self._healthy:
                    log.warning("bot %s: load report not written: %s", self.address, exc)
                self._healthy = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.every_s):
                    await self._due.wait()

    async def withdraw(self) -> None:
        """The bot stops: its row goes, so controllers count it as down at once."""
        async with self.sessionmaker() as session:
            await session.execute(delete(BotHost).where(BotHost.address == self.address))
            await session.commit()
