"""The call log: idempotent upserts by Uniqueid and the close-out of calls that ended unseen."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivr.calllog import close_unseen, get_call, link_bot_ticket, link_ticket, upsert_calls
from ivr.models import CallRecord
from ivr.state import Call

T0 = datetime(2025, 3, 4, 2, 0, tzinfo=UTC)


def call(uniqueid: str = "1741053600.10", **changes: object) -> Call:
    base = Call(uniqueid, uniqueid, "PJSIP/citizen-1", "13800138000", "", T0)
    return replace(base, **changes)  # type: ignore[arg-type]


async def count(s: AsyncSession) -> int:
    return int(await s.scalar(select(func.count()).select_from(CallRecord)) or 0)


async def test_the_life_of_a_call_in_the_log(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    stages = [
        call(),
        call(dialled_number="12345", queue_joined_at=T0 + timedelta(seconds=5), menu="none"),
        call(
            dialled_number="12345",
            bot_uuid="u-1",
            redirected_at=T0 + timedelta(seconds=20),
            queue_wait_s=15,
            menu="consult",
        ),
        call(
            dialled_number="12345",
            bot_uuid="u-1",
            redirected_at=T0 + timedelta(seconds=20),
            queue_wait_s=18,
            menu="consult",
            answered_at=T0 + timedelta(seconds=60),
            answered_by="agent",
            agent_interface="PJSIP/6001",
            agent_name="王芳",
            recording="1741053600.10.wav",
            ended_at=T0 + timedelta(seconds=200),
        ),
    ]
    async with sessionmaker() as s:
        for stage in stages:
            await upsert_calls(s, [stage])
        for stage in stages:  # a resync replays everything: nothing changes, nothing doubles
            await upsert_calls(s, [stage])
        await upsert_calls(s, [call()])  # an old, poorer view never erases what is known
        assert await count(s) == 1
    async with sessionmaker() as s:
        row = await get_call(s, "1741053600.10")
        assert row is not None
        assert (row.outcome, row.answered_by, row.agent_name, row.bot_uuid, row.dialled_number) == (
            "agent",
            "agent",
            "王芳",
            "u-1",
            "12345",
        )
        assert (
            row.redirected_to_bot
            and row.queue_wait_s == 18
            and row.recording == "1741053600.10.wav"
        )
        assert row.menu == "consult"  # the caller's menu choice (按键菜单)
        assert (
            row.started_at == T0
            and row.ended_at == T0 + timedelta(seconds=200)
            and not row.closed_by_resync
        )


async def test_a_resync_of_one_pbx_leaves_the_calls_of_another_pbx_open(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Two Asterisks, one controller each, one log: controller a reconnects with no live call of its own; the
    call in progress on Asterisk b (its Uniqueid prefixed by b's system name) stays open and unmixed."""
    now = T0 + timedelta(minutes=5)
    async with sessionmaker() as s:
        await upsert_calls(s, [call("1741053600.1")], pbx="a")
        await upsert_calls(s, [call("hotline-b-1741053600.1", caller_number="139")], pbx="b")
        assert await close_unseen(s, live=set(), now=now, pbx="a") == ["1741053600.1"]
        await upsert_calls(s, [call("1741053600.1", ended_at=now)])  # a later write keeps the PBX
    async with sessionmaker() as s:
        rows = {r.uniqueid: r for r in (await s.scalars(select(CallRecord))).all()}
    assert {u: (r.pbx, r.ended_at) for u, r in rows.items()} == {
        "1741053600.1": ("a", now),
        "hotline-b-1741053600.1": ("b", None),
    }


async def test_close_unseen_ends_open_calls_missing_from_asterisk(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    now = T0 + timedelta(minutes=5)
    async with sessionmaker() as s:
        await upsert_calls(
            s,
            [
                call("1.1"),
                call("1.2", bot_uuid="u-2"),
                call("1.3"),
                call("1.4", ended_at=T0 + timedelta(seconds=30)),
            ],
        )
        closed = await close_unseen(s, live={"1.3"}, now=now)
        assert sorted(closed) == ["1.1", "1.2"]
        assert (
            await close_unseen(s, live={"1.3"}, now=now + timedelta(minutes=1)) == []
        )  # idempotent
    async with sessionmaker() as s:
        rows = {r.uniqueid: r for r in (await s.scalars(select(CallRecord))).all()}
        assert (rows["1.1"].outcome, rows["1.1"].ended_at, rows["1.1"].closed_by_resync) == (
            "abandoned",
            now,
            True,
        )
        assert rows["1.2"].outcome == "bot"  # best known outcome kept
        assert rows["1.3"].ended_at is None
        assert (
            rows["1.4"].ended_at == T0 + timedelta(seconds=30) and not rows["1.4"].closed_by_resync
        )
        # the live end of a call arriving after the close-out does not move the recorded end
        await upsert_calls(s, [call("1.1", ended_at=now + timedelta(seconds=9))])
        row = await get_call(s, "1.1")
        assert row is not None and row.ended_at == now and row.closed_by_resync


async def test_link_ticket(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as s:
        await upsert_calls(s, [call()])
        assert await link_ticket(s, "1741053600.10", "20250304-0001")
        assert not await link_ticket(s, "nope", "20250304-0002")
        row = await get_call(s, "1741053600.10")
        assert row is not None and row.ticket_no == "20250304-0001"
        await upsert_calls(s, [call()])  # later call updates keep the ticket
        await s.refresh(row)
        assert row.ticket_no == "20250304-0001"


async def test_the_bots_ticket_is_written_with_the_call_and_kept(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    t0 = T0
    bot_call = Call(
        "9.1", "9.1", "PJSIP/c", "13800138000", "12345", t0, bot_uuid="b-9", ticket_no="T-1"
    )
    async with sessionmaker() as s:
        await upsert_calls(s, [bot_call], now=t0)
        await upsert_calls(
            s, [replace(bot_call, ticket_no=None, ended_at=t0)], now=t0
        )  # a later row without it
        assert (await get_call(s, "9.1")).ticket_no == "T-1"  # type: ignore[union-attr]
        assert await link_bot_ticket(s, "b-9", "T-2") and not await link_bot_ticket(s, "b-x", "T-3")
        assert (await get_call(s, "9.1")).ticket_no == "T-2"  # type: ignore[union-attr]
