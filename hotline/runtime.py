"""What every long-running command shares: the database at the right schema, and waiting for a signal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from config import Settings
from hotline.db import make_engine, make_sessionmaker
from hotline.migrate import engine_revision, head_revision, upgrade_engine

T = TypeVar("T")
log = logging.getLogger(__name__)


class SchemaOutdated(RuntimeError):
    """The PostgreSQL schema is not at this version's migration head."""


async def ensure_schema(engine: AsyncEngine) -> None:
    """SQLite (embedded, one process) is migrated in place when behind; a shared PostgreSQL must be upgraded on
    purpose (`hotline db upgrade`) so that several workers never race to migrate it."""
    current = await engine_revision(engine)
    if current == head_revision():
        return
    if engine.dialect.name == "sqlite":
        await upgrade_engine(engine)
        log.info("database schema upgraded from %s to %s", current, head_revision())
        return
    raise SchemaOutdated(
        f"数据库结构版本 {current} 不是 {head_revision()}：请先运行 hotline db upgrade"
    )


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A sessionmaker on the configured database at the current schema; the engine is disposed on exit."""
    db = settings.database
    engine = make_engine(db.url, echo=db.echo, pool_size=db.pool_size)
    try:
        await ensure_schema(engine)
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


async def in_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` with one session on the configured database (for short CLI commands)."""
    async with database(settings) as sessionmaker, sessionmaker() as session:
        return await work(session)


def with_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """:func:`in_session` from synchronous code."""
    return asyncio.run(in_session(settings, work))


async def until_signalled() -> None:
    """Return on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
