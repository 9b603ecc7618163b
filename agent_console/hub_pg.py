"""The live-update hub across processes on PostgreSQL (several console workers, ``hotline ivr`` beside them).

``publish`` delivers to this process's subscribers at once, as the in-process :class:`~agent_console.hub.Hub`
does, and queues the event for the database: a writer task stores it in ``console_live_events`` and sends
``NOTIFY hotline_live`` with only its id and kind, in the same transaction. Every hub LISTENs on one asyncpg
connection of its own; a notification only wakes it, and it then reads the rows after the last id it has seen
and delivers those of other hubs to its subscribers. So an event is delivered once in each process: its
publisher skips its own rows, ids only grow, and after a lost connection the hub reconnects with backoff and
reads what it missed the same way.

Why a table rather than the data in the NOTIFY: one path for live delivery and for catching up after a
reconnect, no 8000-byte payload limit (a queue snapshot with many callers), and the order of ids is the order
of commits (the writers take one transaction-level advisory lock, so no event becomes visible behind one with
a higher id that a reader already passed). Rows older than ``console.live_events_keep_s`` are pruned.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import datetime, timedelta

import asyncpg
from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console.hub import DEFAULT_TOPICS, Event, Hub, Json, TopicRule, split_topic
from agent_console.models import LiveEvent

log = logging.getLogger(__name__)

CHANNEL = "hotline_live"
# pg_advisory_xact_lock(int, int) taken by every writer; its key space never meets the one-key form's.
WRITE_LOCK = (12345, 1)
PENDING_MAX = 10_000  # events waiting for the database; past it the newest are dropped (and logged)
BATCH_MAX = 200
READ_BATCH = 500
PING_EVERY_S = 10.0  # the LISTEN connection is checked when no notification came for this long
ROOM_WAIT_S = 2.0  # longest wait for a browser's queue to take the next caught-up event
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.2, 10.0
FLUSH_ON_CLOSE_S = 2.0

Connect = Callable[[], Awaitable[asyncpg.Connection]]
LOST = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def backoff_delays(first: float = BACKOFF_FIRST_S, most: float = BACKOFF_MAX_S) -> Iterator[float]:
    """Doubling waits between attempts, capped at ``most``."""
    delay = min(first, most)
    while True:
        yield delay
        delay = min(delay * 2, most)


class PostgresHub(Hub):
    """A :class:`Hub` whose events also reach the hubs of every other process on the same PostgreSQL."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        connect: Connect,
        clock: Callable[[], datetime],
        rules: Iterable[TopicRule] = DEFAULT_TOPICS,
        *,
        queue_size: int = 256,
        keep_s: float = 3600,
    ) -> None:
        super().__init__(rules, queue_size=queue_size)
        self.sessionmaker = sessionmaker
        self.connect = connect  # a connection for LISTEN, not from the pool: it is held
        self.clock = clock
        self.keep = timedelta(seconds=keep_s)
        self.origin = uuid.uuid4().hex
        self.listening = asyncio.Event()  # set while LISTEN is on and the backlog has been read
        self.last_id: int | None = None  # the newest event id seen (None: not connected yet)
        self._pending: asyncio.Queue[Event] = asyncio.Queue(PENDING_MAX)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # -- publishing ---------------------------------------------------------------------------------------------
    def publish(self, topic: str, data: Json) -> int:
        json.dumps(data)  # a producer's mistake fails here, not later in the writer
        delivered = super().publish(topic, data)
        try:
            self._pending.put_nowait(Event(topic, data))
        except asyncio.QueueFull:
            log.error(
                "live event %s not stored: %d events wait for the database", topic, PENDING_MAX
            )
        return delivered

    async def flushed(self) -> None:
        """Return once every event published so far is stored and notified."""
        await self._pending.join()

    async def _write(self) -> None:
        while True:
            batch = [await self._pending.get()]
            while len(batch) < BATCH_MAX and not self._pending.empty():
                batch.append(self._pending.get_nowait())
            await self._store_until_done(batch)
            for _ in batch:
                self._pending.task_done()

    async def _store_until_done(self, batch: list[Event]) -> None:
        for delay in backoff_delays():
            try:
                await self._store(batch)
                return
            except (SQLAlchemyError, *LOST) as exc:
                log.warning("live events not stored (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)

    async def _store(self, batch: list[Event]) -> None:
        async with self.sessionmaker.begin() as session:
            await session.execute(select(func.pg_advisory_xact_lock(*WRITE_LOCK)))
            for event in batch:
                kind = split_topic(event.topic)[0]
                event_id = await session.scalar(
                    insert(LiveEvent)
                    .values(
                        topic=event.topic,
                        kind=kind,
                        origin=self.origin,
                        payload=event.data,
                        created_at=self.clock(),
                    )
                    .returning(LiveEvent.id)
                )
                notice = json.dumps({"id": event_id, "kind": kind})
                await session.execute(select(func.pg_notify(CHANNEL, notice)))

    # -- listening ----------------------------------------------------------------------------------------------
    async def _listen(self) -> None:
        delays = backoff_delays()
        while True:
            try:
                conn = await self.connect()
            except LOST as exc:
                log.warning("live events: cannot connect to PostgreSQL (%s)", exc)
                await asyncio.sleep(next(delays))
                continue
            try:
                await self._follow(conn)
                delays = backoff_delays()  # it worked for a while: start again from a short wait
            except LOST as exc:
                log.warning("live events: LISTEN connection lost (%s); reconnecting", exc)
            finally:
                self.listening.clear()
                conn.terminate()
            await asyncio.sleep(next(delays))

    async def _follow(self, conn: asyncpg.Connection) -> None:
        """LISTEN on ``conn`` and deliver what other hubs publish, until the connection is lost."""
        lost = asyncio.Event()

        def on_lost(_conn: object) -> None:
            lost.set()
            self._wake.set()

        conn.add_termination_listener(on_lost)
        await conn.add_listener(CHANNEL, lambda *_notice: self._wake.set())
        if self.last_id is None:
            self.last_id = await conn.fetchval(
                "SELECT coalesce(max(id), 0) FROM console_live_events"
            )
        await self._read(conn)  # what came while not listening
        self.listening.set()
        log.info("live events: listening on PostgreSQL after event %s", self.last_id)
        while not lost.is_set():
            try:
                async with asyncio.timeout(PING_EVERY_S):
                    await self._wake.wait()
            except TimeoutError:
                async with asyncio.timeout(PING_EVERY_S):
                    await conn.fetchval("SELECT 1")
                continue
            if not lost.is_set():
                await self._read(conn)
        raise ConnectionResetError("the server closed the connection")

    async def _read(self, conn: asyncpg.Connection) -> None:
        """Deliver every stored event after :attr:`last_id` that another hub published."""
        while True:
            self._wake.clear()
            rows = await conn.fetch(
                "SELECT id, topic, origin, payload FROM console_live_events"
                " WHERE id > $1 ORDER BY id LIMIT $2",
                self.last_id,
                READ_BATCH,
            )
            for row in rows:
                self.last_id = row["id"]
                if row["origin"] != self.origin:
                    await self._room_for(row["topic"])
                    self.deliver(Event(row["topic"], json.loads(row["payload"])))
            if len(rows) < READ_BATCH:
                return

    async def _room_for(self, topic: str) -> None:
        """Wait, up to ``ROOM_WAIT_S``, until every subscriber of ``topic`` has room in its queue: a backlog
        caught up after a reconnect may be longer than a browser's queue without the browser being slow.
        One still full after that is dropped by :meth:`deliver` as too slow."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ROOM_WAIT_S):
                for sub in [s for s in self._subscribers if topic in s.topics]:
                    await sub.room()

    # -- pruning and lifecycle --------------------------------------------------------------------------------
    async def prune(self) -> None:
        """Delete the events older than ``keep_s`` (every hub does, now and then; the first one wins)."""
        async with self.sessionmaker.begin() as session:
            await session.execute(
                delete(LiveEvent).where(LiveEvent.created_at < self.clock() - self.keep)
            )

    async def _prune(self) -> None:
        every = max(self.keep.total_seconds() / 4, 1.0)
        while True:
            try:
                await self.prune()
            except (SQLAlchemyError, *LOST) as exc:
                log.warning("live events not pruned (%s)", exc)
            await asyncio.sleep(every)

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(work(), name=f"live-events-{work.__name__.strip('_')}")
            for work in (self._write, self._listen, self._prune)
        ]

    async def close(self) -> None:
        """Stop, after storing what was published (for at most ``FLUSH_ON_CLOSE_S``)."""
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FLUSH_ON_CLOSE_S):
                    await self.flushed()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)  # a cancel of close goes on up
        self._tasks = []
