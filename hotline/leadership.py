"""Jobs that must run once however many processes share the database (warning scans and notice delivery,
call-back scheduling, the voice-message sweep, pruning of the citizens' API records).

On PostgreSQL, :class:`RunOnce` runs a job only while it holds the job's session-level advisory lock
(``pg_try_advisory_lock``) on an asyncpg connection of its own; the other processes try again every
``retry_s``. When that connection is lost the server frees the lock: the holder stops its job at once and
tries again, and another process takes over. Between two checks of the connection (``check_s``) a holder cut
off from the server may still be running while another already took over; the jobs tolerate that (outbox
leases, call-backs claimed in the database). On SQLite there is one process: the job simply runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg

from agent_console.hub_pg import LOST, Connect, backoff_delays

log = logging.getLogger(__name__)

Job = Callable[[], Coroutine[Any, Any, None]]


def lock_key(name: str) -> int:
    """The advisory-lock key of job ``name``: a stable signed 64-bit number."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class RunOnce:
    """Runs jobs so that at most one process on the database runs each at a time."""

    def __init__(
        self, connect: Connect | None, *, retry_s: float = 5.0, check_s: float = 5.0
    ) -> None:
        self.connect = connect  # None: one process only (SQLite)
        self.retry_s = retry_s
        self.check_s = check_s

    async def run(self, name: str, job: Job) -> None:
        """Run ``job`` whenever this process holds the lock ``name``, until ``job`` returns."""
        if self.connect is None:
            await job()
            return
        delays = backoff_delays(most=self.retry_s)
        while True:
            try:
                if await self._lead(name, job):
                    return
                delays = backoff_delays(most=self.retry_s)
                await asyncio.sleep(self.retry_s)  # another process runs it
                continue
            except LOST as exc:
                log.warning("job %s: database connection lost (%s); trying again", name, exc)
            except Exception:  # the job itself failed: give the lock up, try again later
                log.exception("job %s failed; trying again", name)
            await asyncio.sleep(next(delays))

    async def _lead(self, name: str, job: Job) -> bool:
        """Run ``job`` if the lock is free; False if another process holds it. Raises a ``LOST`` error
        when the connection (and with it the lock) is lost, after stopping the job."""
        assert self.connect is not None
        conn = await self.connect()
        try:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key(name)):
                return False
            log.info("job %s: running in this process", name)
            await self._while_connected(conn, asyncio.create_task(job(), name=name))
            return True
        finally:
            conn.terminate()  # also frees the lock

    async def _while_connected(self, conn: asyncpg.Connection, task: asyncio.Task[None]) -> None:
        """Wait for ``task``; cancel it and raise once ``conn`` is lost."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        watch = asyncio.create_task(lost.wait())
        try:
            while not task.done():
                await asyncio.wait(
                    {task, watch}, timeout=self.check_s, return_when=asyncio.FIRST_COMPLETED
                )
                if lost.is_set():
                    raise ConnectionResetError("the server closed the connection")
                if not task.done():
                    async with asyncio.timeout(self.check_s):
                        await conn.fetchval("SELECT 1")
            task.result()
        finally:
            task.cancel()
            watch.cancel()
            await asyncio.gather(task, watch, return_exceptions=True)
