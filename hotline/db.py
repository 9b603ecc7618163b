"""Database engine, sessions and schema for every package's tables."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
from sqlalchemy import MetaData, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

import agent_console.models
import ivr.models
import knowledge.models
import tickets.models

# A pooled PostgreSQL connection idle longer than this (seconds) is pinged before use (see make_engine).
PING_AFTER_IDLE_SECONDS = 2.0


def all_metadata() -> list[MetaData]:
    """The metadata of every package that owns tables (Alembic's target)."""
    return [
        tickets.models.Base.metadata,
        knowledge.models.Base.metadata,
        ivr.models.Base.metadata,
        agent_console.models.Base.metadata,
    ]


def make_engine(
    url: str,
    *,
    echo: bool = False,
    pool_size: int = 10,
    ping_after_idle: float = PING_AFTER_IDLE_SECONDS,
) -> AsyncEngine:
    """An async engine; for SQLite the folder is created and foreign keys, WAL and a busy timeout are on.
    Statement parameters (callers' numbers and words) are never put into error messages or the echo log.

    A pooled server connection that sat idle for more than ``ping_after_idle`` seconds is pinged before use and
    replaced if the server dropped it (:func:`_ping_when_idle`)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url, echo=echo, hide_parameters=True, connect_args={"timeout": 30}
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    engine = create_async_engine(
        url, echo=echo, hide_parameters=True, pool_size=pool_size, max_overflow=pool_size
    )
    _ping_when_idle(engine, ping_after_idle)
    return engine


def _ping_when_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """Disconnect protection without a ping on every checkout (``pool_pre_ping``; the asyncpg dialect's ping is
    three round trips: BEGIN, ``;``, ROLLBACK). A connection idle longer than ``idle_seconds`` is pinged and, if
    the server dropped it, replaced before use. One returned moments ago is trusted: if the server went away
    since, its statement fails as a disconnect, SQLAlchemy then discards every pooled connection, and the
    ticket services retry such a failure once (``tickets.services``)."""
    dialect = engine.dialect

    @event.listens_for(engine.sync_engine.pool, "checkin")
    def _returned(_dbapi_conn, record) -> None:  # type: ignore[no-untyped-def]
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine.sync_engine.pool, "checkout")
    def _lent(dbapi_conn, record, _proxy) -> None:  # type: ignore[no-untyped-def]
        returned = record.info.get("returned_at")
        if returned is None or time.monotonic() - returned < idle_seconds:
            return
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(f"idle connection is gone: {exc}") from exc


def listen_connector(
    url: str, application_name: str
) -> Callable[[], Awaitable[asyncpg.Connection]] | None:
    """For a PostgreSQL ``url``: a function opening a new asyncpg connection outside the pool, for LISTEN or
    a session-level advisory lock (``application_name`` names it in ``pg_stat_activity``); None for SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return None
    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)

    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(dsn, server_settings={"application_name": application_name})

    return connect


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def create_schema(engine: AsyncEngine) -> None:
    """Create every table at once and mark the database as at the newest migration (tests, benchmarks);
    `hotline db upgrade` builds the same schema step by step (a test keeps the two equal)."""
    from alembic import command

    from hotline.migrate import alembic_config

    async with engine.begin() as conn:
        for md in all_metadata():
            await conn.run_sync(md.create_all)
        await conn.run_sync(lambda sync: command.stamp(alembic_config(sync), "head"))
