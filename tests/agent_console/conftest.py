"""Fixtures: a running console on the `sessionmaker` database (SQLite and PostgreSQL), one account per role."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from tests.agent_console.harness import Console, console_settings, start_console, stop_console
from tests.agent_console.tickets_support import desk  # noqa: F401 - the ticket screens' console fixture


@pytest.fixture
async def console(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Console]:
    """The console with one account per role (username = role name, e.g. ``agent``)."""
    c = await start_console(console_settings(settings), sessionmaker)
    yield c
    await stop_console(c)
