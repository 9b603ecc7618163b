"""Shared fixtures: settings, the shared data folder, and a fresh database on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import hypothesis
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from config import Settings
from hotline.db import create_schema, make_engine, make_sessionmaker
from hotline.local_postgres import LocalPostgres
from tests.settings_support import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
# Property tests judge behaviour, not speed: on a shared 2-core machine an example may take long.
hypothesis.settings.register_profile(
    "hotline", deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow]
)
hypothesis.settings.load_profile("hotline")
IN_CI = os.environ.get("CI", "").lower() == "true"
LONG_TIMEOUT_S = 900
"""Timeout of a test marked pbx, slow or browser: the first start of the local PBX builds its Debian root,
and the SIP load and `hotline run` tests wait up to 300 s for calls on a busy 2-core machine."""
LONG_MARKERS = ("pbx", "slow", "browser")
SERIAL_FOLDERS = (ROOT / "tests" / "e2e", ROOT / "tests" / "browser")
"""Tests that share the one local PBX and its fixed ports, or the browser: `make test` runs them alone."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A long test gets LONG_TIMEOUT_S unless it names its own; every other test keeps the default. Every test
    in SERIAL_FOLDERS is marked serial."""
    for item in items:
        if item.get_closest_marker("timeout") is None and any(
            item.get_closest_marker(m) for m in LONG_MARKERS
        ):
            item.add_marker(pytest.mark.timeout(LONG_TIMEOUT_S))
        if any(item.path.is_relative_to(folder) for folder in SERIAL_FOLDERS):
            item.add_marker(pytest.mark.serial)


def missing(reason: str) -> None:
    """Skip on a user's machine, fail under CI=true: a part CI must always have."""
    if IN_CI:
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return SETTINGS


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


async def _fresh_pg_database(postgres: LocalPostgres | str, template: str | None = None) -> str:
    """A new database on the test server (a copy of ``template`` when given); returns its URL."""
    admin_url = postgres if isinstance(postgres, str) else postgres.url()
    name = f"t{os.getpid()}_{next(_db_counter)}"
    copy_of = f' TEMPLATE "{template}"' if template else ""
    admin = make_engine(admin_url)
    try:
        async with admin.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'CREATE DATABASE "{name}"{copy_of}'))
    finally:
        await admin.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


async def _with_schema(url: str) -> str:
    eng = make_engine(url)
    try:
        await create_schema(eng)
    finally:
        await eng.dispose()  # no connection may stay open on a template
    return url


def _run_apart(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to the end on an event loop of its own (a session fixture asked for from inside a test's
    running loop cannot await)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file with every table, built once; each test gets a copy."""
    path = tmp_path_factory.mktemp("schema") / "hotline.db"
    _run_apart(_with_schema(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def postgres_template(postgres: LocalPostgres | str) -> str:
    """The name of a PostgreSQL database with every table, built once; each test gets a copy."""

    async def build() -> str:
        return await _with_schema(await _fresh_pg_database(postgres))

    return _run_apart(build()).rsplit("/", 1)[1]


SQLITE_ONLY = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
"""For a module whose behaviour does not depend on the database (e.g. role checks): its tests run on SQLite only."""


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A fresh database with every table, once on SQLite and once on PostgreSQL (copies of a schema built
    once per session)."""
    if request.param == "sqlite":
        path = tmp_path / "hotline.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite+aiosqlite:///{path}"
    else:
        url = await _fresh_pg_database(
            request.getfixturevalue("postgres"), request.getfixturevalue("postgres_template")
        )
    eng = make_engine(url)
    yield eng
    await eng.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)
