"""Fixtures of the speech bot's tests: the bot's own SQLite database file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hotline.db import create_schema, make_engine, make_sessionmaker


@pytest.fixture
def database_file(tmp_path: Path) -> Path:
    return tmp_path / "bot.db"


@pytest.fixture
async def db(database_file: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A fresh SQLite database for one bot test (a file, so another connection can lock it)."""
    engine = make_engine(f"sqlite+aiosqlite:///{database_file}")
    await create_schema(engine)
    yield make_sessionmaker(engine)
    await engine.dispose()
