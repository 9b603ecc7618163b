"""Concurrent sessions: optimistic locking and ticket numbers, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event, text

from tests.settings_support import SETTINGS
from tests.tickets.loop_support import AGENT, DISPATCHER, MONDAY_10AM, event_count, step
from tickets.errors import VersionConflict
from tickets.services import Actor, apply, create_ticket, get_ticket, ticket_events


async def test_concurrent_edits_at_same_version_one_wins(db, draft) -> None:
    async with db() as s:
        t = await create_ticket(s, draft(), AGENT, now=MONDAY_10AM, settings=SETTINGS)
        t = await step(s, t, "review", DISPATCHER)
    dispatchers = [Actor(f"派单员{i}", "dispatcher") for i in range(4)]
    departments = ["zjj", "hbj", "cgj", "zjj"]

    async def dispatch(actor: Actor, dept: str) -> str:
        async with db() as s:
            await apply(
                s,
                t.ticket_no,
                "dispatch",
                actor,
                expected_version=2,
                lead_department=dept,
                now=MONDAY_10AM,
                settings=SETTINGS,
            )
            return actor.name

    results = await asyncio.gather(
        *(dispatch(a, d) for a, d in zip(dispatchers, departments, strict=True)),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, str)]
    losers = [r for r in results if not isinstance(r, str)]
    assert len(winners) == 1
    assert all(
        isinstance(e, VersionConflict) and e.code == "ticket.version_conflict" for e in losers
    ), losers
    async with db() as s:
        stored = await get_ticket(s, t.ticket_no)
        events = await ticket_events(s, t.ticket_no)
    assert (stored.version, stored.state) == (3, "dispatched")
    assert [e.actor for e in events if e.action == "dispatch"] == winners
    assert stored.lead_department == departments[[a.name for a in dispatchers].index(winners[0])]


async def test_stale_version_is_refused_and_ticket_stays_usable(db, draft) -> None:
    async with db() as first, db() as second:
        t1 = await create_ticket(first, draft(), AGENT, now=MONDAY_10AM, settings=SETTINGS)
        t2 = await get_ticket(second, t1.ticket_no)
        await step(first, t1, "review", DISPATCHER)
        with pytest.raises(VersionConflict, match="已被他人修改"):
            await step(second, t2, "withdraw", AGENT)
        assert (t2.version, t2.state) == (2, "reviewed")  # re-read after the refusal
        assert await event_count(second) == 2


async def test_race_lost_at_write_time_is_a_version_conflict(engine, db, draft) -> None:
    """Both contenders pass the version check before either writes; the database decides the winner."""
    async with db() as s:
        t = await create_ticket(s, draft(), AGENT, now=MONDAY_10AM, settings=SETTINGS)
    both_checked = asyncio.Event()
    checked: list[str] = []

    async def review(name: str) -> str:
        async with db() as s:

            def flushing(
                *_args: object,
            ) -> None:  # runs after apply's version check, before its UPDATE
                checked.append(name)
                if len(checked) == 2:
                    both_checked.set()

            event.listen(s.sync_session, "before_flush", flushing)
            await apply(
                s,
                t.ticket_no,
                "review",
                Actor(name, "dispatcher"),
                expected_version=1,
                now=MONDAY_10AM,
                settings=SETTINGS,
            )
            return name

    async with engine.connect() as blocker:  # holds the write lock until both have checked
        if engine.dialect.name == "sqlite":
            await blocker.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            await blocker.execute(
                text("SELECT id FROM tickets WHERE id = :id FOR UPDATE"), {"id": t.id}
            )
        contenders = asyncio.gather(review("甲"), review("乙"), return_exceptions=True)
        await asyncio.wait_for(both_checked.wait(), timeout=20)
        await blocker.rollback()
        results = await contenders
    assert sorted(type(r).__name__ for r in results) == ["VersionConflict", "str"], results
    async with db() as s:
        events = await ticket_events(s, t.ticket_no)
    assert [e.actor for e in events if e.action == "review"] == [
        r for r in results if isinstance(r, str)
    ]


@pytest.mark.slow
async def test_ticket_numbers_unique_under_concurrent_creation(db, draft) -> None:
    async def create(i: int) -> str:
        async with db() as s:
            t = await create_ticket(
                s,
                draft(caller_phone=f"139{i:08d}", district=f"区{i}"),
                AGENT,
                now=MONDAY_10AM,
                settings=SETTINGS,
            )
            return t.ticket_no

    numbers = await asyncio.gather(*(create(i) for i in range(50)))
    assert sorted(numbers) == [f"12345-20250303-{n:05d}" for n in range(1, 51)]


async def test_creation_failing_after_its_number_leaves_a_gap_only_on_postgresql(
    engine, db, draft
) -> None:
    """PostgreSQL commits the number on its own (creators never wait on each other's transactions), so a
    creation that fails later leaves a gap; on SQLite the number is part of the rolled-back transaction."""

    class DiskFull(RuntimeError):
        pass

    def fail(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "INSERT INTO tickets (" in statement:  # the ticket's row, after the number was taken
            raise DiskFull

    async with db() as s:
        event.listen(engine.sync_engine, "before_cursor_execute", fail)
        with pytest.raises(DiskFull):
            await create_ticket(s, draft(), AGENT, now=MONDAY_10AM, settings=SETTINGS)
        event.remove(engine.sync_engine, "before_cursor_execute", fail)
        assert await event_count(s) == 0
        t = await create_ticket(s, draft(), AGENT, now=MONDAY_10AM, settings=SETTINGS)
    expected = "00002" if engine.dialect.name == "postgresql" else "00001"
    assert t.ticket_no == f"12345-20250303-{expected}"
