"""Shared fixtures: settings, the shared data folder, and a fresh database on SQLite and on PostgreSQL."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from config import Settings, load_settings
from hotline.db import create_schema, make_engine, make_sessionmaker
from hotline.local_postgres import LocalPostgres

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"


def missing(reason: str) -> None:
    """Skip on a user's machine, fail under CI=true: a part CI must always have."""
    if IN_CI:
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def shared_dir(settings: Settings) -> Path:
    """../shared (or HOTLINE_SHARED_DIR): real speech and dispatch history."""
    path = Path(settings.shared_dir)
    path = path if path.is_absolute() else (ROOT / path).resolve()
    if not (path / "speech").is_dir() or not (path / "dispatch").is_dir():
        missing(f"shared data folder not found at {path} (set HOTLINE_SHARED_DIR)")
    return path


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres | str]:
    """A private PostgreSQL server for the session, or the one HOTLINE_TEST_POSTGRES_URL names."""
    external = os.environ.get("HOTLINE_TEST_POSTGRES_URL")
    if external:
        yield external
        return
    try:
        server = LocalPostgres.start()
    except Exception as exc:
        missing(f"cannot start PostgreSQL: {exc}")
    yield server
    server.stop()


_db_counter = itertools.count()


async def _fresh_pg_database(postgres: LocalPostgres | str) -> str:
    admin_url = postgres if isinstance(postgres, str) else postgres.url()
    name = f"t{os.getpid()}_{next(_db_counter)}"
    admin = make_engine(admin_url)
    try:
        async with admin.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A fresh, empty database with every table, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}"
    else:
        url = await _fresh_pg_database(request.getfixturevalue("postgres"))
    eng = make_engine(url)
    await create_schema(eng)
    yield eng
    await eng.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)
