"""The fast metrics (daily rollup of settled tickets + live tickets) equal the reference (direct SQL over the
cohort): for random ticket lives driven through the services, under concurrent transitions, and after a rebuild."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from sqlalchemy import func, insert, select

from tests.settings_support import SETTINGS
from tests.tickets.loop_support import (
    AGENT,
    CALLER,
    DISPATCHER,
    HANDLER,
    OTHER_HANDLER,
    SYSTEM,
    TZ,
    step,
)
from tests.tickets.metrics_support import MARCH, NOW, build_march
from tickets.metrics import GROUPINGS, metrics, reference_metrics
from tickets.metrics_rollup import is_settled, rebuild
from tickets.models import Ticket, TicketMetricsDaily
from tickets.services import close_instant, create_ticket, get_ticket, record_callback

BASE = datetime(2025, 3, 3, 9, 0, tzinfo=TZ)  # a Monday
HANDLERS = {"zjj": HANDLER, "hbj": OTHER_HANDLER}
# Lives a ticket can lead, as steps after intake ("instant" closes it at intake).
FATES = (
    "open",
    "instant",
    "withdraw",
    "dispatched",
    "withdraw_unsigned",
    "signed",
    "returned",
    "closed",
    "unsatisfied_then_closed",
    "unreachable",
)


def same(fast: dict[str, Any], ref: dict[str, Any]) -> None:
    """Equal figures (the mean handling time to rounding: floating sums taken in another order)."""
    assert fast.keys() == ref.keys()
    rows = list(
        zip(
            [fast["total"], *fast.get("groups", [])],
            [ref["total"], *ref.get("groups", [])],
            strict=True,
        )
    )
    for a, b in rows:
        assert {k: v for k, v in a.items() if k != "avg_handling_hours"} == {
            k: v for k, v in b.items() if k != "avg_handling_hours"
        }
        assert (a["avg_handling_hours"] is None) == (b["avg_handling_hours"] is None)
        if a["avg_handling_hours"] is not None:
            assert a["avg_handling_hours"] == pytest.approx(b["avg_handling_hours"], abs=0.011)


async def assert_fast_equals_reference(
    session, start: datetime, end: datetime, now: datetime
) -> None:
    for by in (None, *GROUPINGS):
        same(
            await metrics(session, start, end, by=by, now=now, settings=SETTINGS),
            await reference_metrics(session, start, end, by=by, now=now, settings=SETTINGS),
        )


async def rollup_is_the_settled_tickets(session) -> None:
    """Each ticket is rolled up exactly when settled, and the rollup counts each rolled-up ticket once per
    grouping."""
    tickets = list((await session.execute(select(Ticket))).scalars())
    assert all(t.rolled_up == is_settled(t) for t in tickets)
    for grouping in GROUPINGS:
        summed = (
            await session.execute(
                select(func.coalesce(func.sum(TicketMetricsDaily.received), 0)).where(
                    TicketMetricsDaily.grouping == grouping
                )
            )
        ).scalar_one()
        assert summed == sum(t.rolled_up for t in tickets)
    await session.commit()


async def live(session, t: Ticket, fate: str, dept: str, at: datetime, gap: timedelta) -> None:
    """Drive ``t`` through the steps of ``fate``, ``gap`` apart."""
    handler = HANDLERS[dept]
    clock = iter(at + gap * i for i in range(1, 40))
    if fate == "withdraw":
        await step(session, t, "withdraw", CALLER, now=next(clock))
        return
    if fate == "open":
        return
    t = await step(session, t, "review", DISPATCHER, now=next(clock))
    t = await step(session, t, "dispatch", DISPATCHER, lead_department=dept, now=next(clock))
    if fate == "dispatched":
        return
    if fate == "withdraw_unsigned":
        await step(session, t, "withdraw", CALLER, now=next(clock))
        return
    t = await step(session, t, "sign", handler, now=next(clock))
    if fate == "signed":
        return
    if fate == "returned":
        await step(session, t, "return", handler, note="不属于本单位职责", now=next(clock))
        return
    t = await step(session, t, "reply", handler, reply="已处理", now=next(clock))
    t = await step(session, t, "verify", DISPATCHER, now=next(clock))
    if fate == "unsatisfied_then_closed":
        t = await record_callback(
            session, t.ticket_no, "unsatisfied", SYSTEM, now=next(clock), settings=SETTINGS
        )
        t = await step(session, t, "sign", handler, now=next(clock))
        t = await step(session, t, "reply", handler, reply="已再次处理", now=next(clock))
        t = await step(session, t, "verify", DISPATCHER, now=next(clock))
    results = ["unreachable"] * 3 if fate == "unreachable" else ["basically_satisfied"]
    for result in results:
        t = await record_callback(
            session, t.ticket_no, result, SYSTEM, now=next(clock), settings=SETTINGS
        )


TICKET = st.fixed_dictionaries(
    {
        "fate": st.sampled_from(FATES),
        "hours": st.integers(0, 24 * 9),  # intake within 9 days of BASE, any hour
        "gap_minutes": st.integers(5, 60 * 30),
        "dept": st.sampled_from(sorted(HANDLERS)),
        "caller": st.sampled_from(["13900000001", "13900000002", "13900000003"]),
        "category": st.sampled_from([None, "住房安居/物业服务", "生态环境", "健康医疗/医疗服务"]),
        "district": st.sampled_from([None, "城关区", "七里河区"]),
    }
)


@examples(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lives=st.lists(TICKET, min_size=1, max_size=6),
    cut=st.integers(1, 23),
    probe_hours=st.integers(0, 24 * 12),
)
async def test_fast_path_equals_reference_for_random_lives(
    db, draft, lives, cut, probe_hours
) -> None:
    async with db() as s:
        for life in lives:
            at = BASE + timedelta(hours=life["hours"])
            d = draft(
                caller_phone=life["caller"], category=life["category"], district=life["district"]
            )
            if life["fate"] == "instant":
                await close_instant(s, d, "已当场答复", AGENT, now=at, settings=SETTINGS)
                continue
            t = await create_ticket(s, d, AGENT, now=at, settings=SETTINGS)
            await live(s, t, life["fate"], life["dept"], at, timedelta(minutes=life["gap_minutes"]))
        await rollup_is_the_settled_tickets(s)
        now = BASE + timedelta(hours=probe_hours)
        await assert_fast_equals_reference(
            s, *MARCH, now
        )  # whole local days: rollup + live tickets
        # a window cut inside days at both ends: the edges come from the tickets table
        await assert_fast_equals_reference(
            s, BASE + timedelta(hours=cut), BASE + timedelta(days=5, hours=cut), now
        )
        await assert_fast_equals_reference(
            s, BASE + timedelta(hours=cut), BASE + timedelta(hours=cut + 5), now
        )


async def test_the_march_fixture_is_read_from_the_rollup(session, draft) -> None:
    await build_march(session, draft)
    r = TicketMetricsDaily
    rolled = dict(
        (
            await session.execute(
                select(r.key, func.sum(r.received))
                .where(r.grouping == "department")
                .group_by(r.key)
            )
        ).all()
    )
    await session.commit()
    # settled: A and F (zjj), C (hbj), B instant and E withdrawn (no department); D is open, the two outside
    # March are accepted: live
    assert rolled == {"zjj": 2, "hbj": 1, "": 2}
    await assert_fast_equals_reference(session, *MARCH, NOW)


async def test_concurrent_transitions_on_postgresql_lose_no_count(
    engine, db, draft, settings
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("row-lock contention on the rollup: PostgreSQL (SQLite serialises all writers)")
    at = BASE + timedelta(hours=1)
    async with db() as s:
        verified = []
        for i in range(12):
            t = await create_ticket(
                s, draft(caller_phone=f"1390000{i:04d}"), AGENT, now=at, settings=settings
            )
            t = await step(s, t, "review", DISPATCHER, now=at)
            t = await step(s, t, "dispatch", DISPATCHER, lead_department="zjj", now=at)
            t = await step(s, t, "sign", HANDLER, now=at)
            t = await step(s, t, "reply", HANDLER, reply="已处理", now=at)
            verified.append(await step(s, t, "verify", DISPATCHER, now=at))
        to_withdraw = [
            await create_ticket(
                s, draft(caller_phone=f"1380000{i:04d}"), AGENT, now=at, settings=settings
            )
            for i in range(4)
        ]

    async def close(no: str) -> None:
        async with db() as s:
            await record_callback(
                s, no, "satisfied", SYSTEM, now=at + timedelta(hours=2), settings=SETTINGS
            )

    async def instant(i: int) -> None:
        async with db() as s:
            await close_instant(
                s, draft(caller_phone=f"1370000{i:04d}"), "已答复", AGENT, now=at, settings=SETTINGS
            )

    async def withdraw(t: Ticket) -> None:
        async with db() as s:
            await step(s, t, "withdraw", CALLER, now=at + timedelta(hours=2))

    # all in the same day and groups: every transaction upserts the same rollup rows at once
    await asyncio.gather(
        *(close(t.ticket_no) for t in verified),
        *(instant(i) for i in range(8)),
        *(withdraw(t) for t in to_withdraw),
    )
    async with db() as s:
        await rollup_is_the_settled_tickets(s)
        before = await rollup_rows(s)
        assert sum(r[2] for r in before if r[1] == "department") == 12 + 8 + 4
        await assert_fast_equals_reference(s, *MARCH, NOW)
        assert (await rebuild(s, settings))["newly_settled"] == 0
        assert await rollup_rows(s) == before  # the incremental rows are what a rebuild computes


async def rollup_rows(session) -> list[tuple[Any, ...]]:
    r = TicketMetricsDaily
    rows = await session.execute(
        select(
            r.day, r.grouping, r.received, r.closed, r.satisfied, r.instant, r.withdrawn, r.key
        ).order_by(r.day, r.grouping, r.key)
    )
    out = [tuple(row) for row in rows]
    await session.commit()
    return out


async def test_rebuild_equals_incremental_and_settles_imported_tickets(
    session, draft, settings
) -> None:
    await build_march(session, draft)
    incremental = await rollup_rows(session)
    assert (await rebuild(session, settings))["newly_settled"] == 0
    assert await rollup_rows(session) == incremental

    template = await get_ticket(
        session,
        (
            await session.execute(
                select(Ticket.ticket_no).where(Ticket.state == "closed", Ticket.answer.is_(None))
            )
        )
        .scalars()
        .first(),
    )
    columns = {  # content_vector is deferred: not loaded with the ticket
        c.key: getattr(template, c.key)
        for c in Ticket.__table__.columns
        if c.key not in ("id", "content_vector")
    }
    imported = [
        columns
        | {
            "ticket_no": f"IMPORT-{i}",
            "created_at": datetime(2025, 3, 10 + i, 9, tzinfo=TZ),
            "closed_at": datetime(2025, 3, 11 + i, 9, tzinfo=TZ),
            "rolled_up": False,
        }
        for i in range(3)
    ]
    await session.execute(
        insert(Ticket), imported
    )  # a bulk import around the services: not settled
    await session.commit()
    await assert_fast_equals_reference(
        session, *MARCH, NOW
    )  # still right: unsettled tickets are read live

    assert (await rebuild(session, settings))["newly_settled"] == 3
    await rollup_is_the_settled_tickets(session)
    await assert_fast_equals_reference(session, *MARCH, NOW)
    days = {row[0] for row in await rollup_rows(session)}
    assert {datetime(2025, 3, 10 + i, tzinfo=TZ).date() for i in range(3)} <= days
