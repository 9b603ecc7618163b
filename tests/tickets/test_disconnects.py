"""A database that drops every connection for a moment (restart, failover): the ticket services carry on."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hotline.db import make_engine
from tests.settings_support import SETTINGS
from tests.tickets.loop_support import AGENT, DISPATCHER, MONDAY_10AM, event_count, step
from tickets.services import create_ticket, get_ticket, ticket_events


def _url(engine: AsyncEngine) -> str:
    return engine.url.render_as_string(hide_password=False)


async def _drop_connections(engine: AsyncEngine) -> int:
    """Terminate every server connection to the engine's database (waiting until each is gone)."""
    admin = make_engine(_url(engine))
    try:
        async with admin.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            dropped = await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            return sum(bool(ok) for (ok,) in dropped)
    finally:
        await admin.dispose()


@pytest.fixture
def postgres_only(engine: AsyncEngine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no server connections to lose")


@pytest.mark.usefixtures("postgres_only")
async def test_intake_and_actions_survive_dropped_connections(engine, db, draft) -> None:
    """The pooled connections were used a moment ago (so not pinged): the first statement on each fails as a
    disconnect and the service retries once on a fresh connection — one ticket, one number, one event."""
    async with db() as s:
        first = await create_ticket(s, draft(), AGENT, now=MONDAY_10AM, settings=SETTINGS)
    assert await _drop_connections(engine) >= 1
    async with db() as s:
        second = await create_ticket(
            s, draft(caller_phone="13900000001"), AGENT, now=MONDAY_10AM, settings=SETTINGS
        )
    assert await _drop_connections(engine) >= 1
    async with db() as s:
        reviewed = await step(s, first, "review", DISPATCHER)
    async with db() as s:
        assert (await get_ticket(s, second.ticket_no)).state == "accepted"
        assert [e.action for e in await ticket_events(s, second.ticket_no)] == ["create"]
        assert (reviewed.version, reviewed.state) == (2, "reviewed")
        assert await event_count(s) == 3
    assert first.ticket_no < second.ticket_no


@pytest.mark.usefixtures("postgres_only")
async def test_idle_connection_is_pinged_and_replaced(engine) -> None:
    """Past ``ping_after_idle`` a pooled connection is checked before use; a dead one is replaced unseen."""
    pinged = make_engine(_url(engine), ping_after_idle=0)
    try:
        async with pinged.connect() as conn:
            before = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert await _drop_connections(pinged) >= 1
        async with pinged.connect() as conn:
            after = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert after != before
    finally:
        await pinged.dispose()
