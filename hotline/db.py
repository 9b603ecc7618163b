"""Database engine, sessions and schema for every package's tables."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import MetaData, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

import agent_console.models
import ivr.models
import knowledge.models
import tickets.models


def all_metadata() -> list[MetaData]:
    """The metadata of every package that owns tables (Alembic's target)."""
    return [
        tickets.models.Base.metadata,
        knowledge.models.Base.metadata,
        ivr.models.Base.metadata,
        agent_console.models.Base.metadata,
    ]


def make_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> AsyncEngine:
    """An async engine; for SQLite the folder is created and foreign keys, WAL and a busy timeout are on."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_async_engine(url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


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
