"""Alembic, driven from Python: upgrade a database and read its revision."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from hotline.db import make_engine

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


async def upgrade_engine(engine: AsyncEngine, revision: str = "head") -> None:
    """Apply migrations through an open engine (used by `hotline run` and the tests)."""
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), revision))


def upgrade(url: str, revision: str = "head") -> int:
    async def _run() -> None:
        engine = make_engine(url)
        try:
            await upgrade_engine(engine, revision)
        finally:
            await engine.dispose()

    asyncio.run(_run())
    return 0


async def engine_revision(engine: AsyncEngine) -> str | None:
    """The migration revision the database behind ``engine`` is at (None: not migrated)."""
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


def current_revision(url: str) -> str | None:
    async def _run() -> str | None:
        engine = make_engine(url)
        try:
            return await engine_revision(engine)
        finally:
            await engine.dispose()

    return asyncio.run(_run())


def head_revision() -> str | None:
    """The newest migration revision shipped with this version."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
