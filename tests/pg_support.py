"""For the tests of what keeps a PostgreSQL connection of its own (the live-event hub's LISTEN, the advisory
locks of run-once jobs): a connector the test can hold back, and the kill of a connection that a network fault
or a server restart would cause."""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hotline.db import listen_connector


class Dialer:
    """Opens connections under the application name ``name`` (:func:`hotline.db.listen_connector`), each
    noted in ``made``; :meth:`hold` keeps the next ones waiting (the database unreachable; ``waiting`` is set
    once one is asked for) until :meth:`release`."""

    def __init__(self, engine: AsyncEngine, name: str) -> None:
        connect = listen_connector(engine.url.render_as_string(hide_password=False), name)
        assert connect is not None, "a PostgreSQL engine"
        self.connect = connect
        self.made: asyncio.Queue[None] = asyncio.Queue()
        self.open = asyncio.Event()
        self.open.set()
        self.waiting = asyncio.Event()

    async def __call__(self) -> asyncpg.Connection:
        if not self.open.is_set():
            self.waiting.set()
            await self.open.wait()
        self.made.put_nowait(None)
        return await self.connect()

    def hold(self) -> None:
        self.open.clear()
        self.waiting.clear()

    def release(self) -> None:
        self.open.set()


async def kill_connections(engine: AsyncEngine, application_name: str) -> int:
    """Terminate the server processes of the connections named ``application_name`` to the engine's database
    (another test may use the same name on its own database of a shared server); returns how many."""
    async with engine.connect() as conn:
        killed = await conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = :n AND datname = current_database()"
            ),
            {"n": application_name},
        )
        return len(killed.all())
