"""Service levels from the call log: recorded Asterisk calls replayed into the log give hand-computed figures;
hand-made calls pin the edges (a 15.0 s wait, midnight, call-backs, abandon stages, bot containment, wrap-up)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from hotline.db import create_schema, make_engine, make_sessionmaker
from ivr import events as ev
from ivr.calllog import close_unseen, get_call, link_ticket, upsert_calls
from ivr.service_levels import nearest_rank, service_levels
from ivr.state import WRAP_UP_REASON, Call, HotlineState
from tests.cli_support import run_cli
from tests.ivr.calllog_support import replay_into_log
from tickets.errors import InvalidInput

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(
    2025, 3, 4, 2, 0, tzinfo=UTC
)  # 10:00 in Shanghai: the Timestamp origin of the first fixtures
AGENT = "PJSIP/6001"


async def figures(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    start: datetime,
    end: datetime,
    by: str | None = None,
) -> dict:  # type: ignore[type-arg]
    async with sessionmaker() as session:
        return await service_levels(session, start, end, settings=settings, by=by)


@pytest.fixture
async def recorded(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> async_sessionmaker[AsyncSession]:
    """The three recorded calls of the local Asterisk plus the abandon of leader_and_abandon.ami, in the log."""
    await replay_into_log(sessionmaker, "bot_then_agent.ami", HotlineState("hotline"))
    leaders = HotlineState("hotline")
    leaders.set_leaders([("PJSIP/6009", "李明", "liming")])
    await replay_into_log(sessionmaker, "leader_and_abandon.ami", leaders)
    await replay_into_log(sessionmaker, "real_agent_call.ami", HotlineState("hotline"))
    return sessionmaker


async def test_recorded_calls_give_the_hand_computed_figures(
    recorded: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    # bot_then_agent: queued 5→7 s, bot, back in the queue 30→33 s (wait 5 s), 王芳 talks 33→123 s
    # leader_and_abandon: 李明 answers after 6 s, talks 180 s; the other caller gives up after 20 s in the queue
    # real_agent_call (2026-11-23 19:01 local): waits 0.0015 s (logged 0.002), talks 4.017210 s
    result = await figures(
        recorded, settings, datetime(2025, 3, 4, tzinfo=SH), datetime(2026, 11, 24, tzinfo=SH)
    )
    total = result["total"]
    assert (
        total["offered"],
        total["answered"],
        total["answered_agent"],
        total["answered_leader"],
        total["answered_bot"],
    ) == (4, 3, 2, 1, 0)
    assert (
        total["abandoned"],
        total["abandoned_menu"],
        total["abandoned_queue"],
        total["abandoned_ringing"],
    ) == (1, 0, 1, 0)
    assert total["answered_in_time"] == 3
    assert total["connection_rate"] == 0.75 and total["service_level_rate"] == 0.75
    assert total["abandon_rate"] == 0.25
    assert total["avg_wait_s"] == round((5 + 6 + 0.002) / 3, 3) == 3.667
    assert total["p90_wait_s"] == 6 and total["max_wait_s"] == 6
    assert total["avg_talk_s"] == round((90 + 180 + 4.01721) / 3, 3) == 91.339
    assert total["avg_wrap_up_s"] is None
    assert (
        total["bot_sessions"],
        total["bot_contained"],
        total["bot_transfers"],
        total["bot_transfers_answered"],
    ) == (1, 0, 1, 1)
    assert total["bot_containment_rate"] == 0.0
    assert result["service_level_s"] == 15.0 and result["by"] is None


async def test_groups_by_hour_day_queue_and_agent(
    recorded: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    start, end = datetime(2025, 3, 4, tzinfo=SH), datetime(2026, 11, 24, tzinfo=SH)
    hours = (await figures(recorded, settings, start, end, "hour"))["groups"]
    assert [(g["key"], g["label"], g["offered"], g["answered"]) for g in hours] == [
        ("2025-03-04T10:00", "2025-03-04 10:00", 3, 2),
        ("2026-11-23T19:00", "2026-11-23 19:00", 1, 1),
    ]
    days = (await figures(recorded, settings, start, end, "day"))["groups"]
    assert [(g["key"], g["offered"]) for g in days] == [("2025-03-04", 3), ("2026-11-23", 1)]
    queues = (await figures(recorded, settings, start, end, "queue"))["groups"]
    assert [(g["key"], g["offered"], g["abandoned_queue"]) for g in queues] == [("hotline", 4, 1)]
    agents = {
        g["key"]: g for g in (await figures(recorded, settings, start, end, "agent"))["groups"]
    }
    assert set(agents) == {"emulated Local/6001@test-agent/n", "李明（区长）", "王芳", None}
    assert agents["王芳"]["avg_talk_s"] == 90.0 and agents["王芳"]["avg_wait_s"] == 5.0
    assert (
        agents["李明（区长）"]["answered_leader"] == 1
        and agents["李明（区长）"]["avg_talk_s"] == 180.0
    )
    assert agents[None]["label"] == "（无人工接听）" and agents[None]["abandoned"] == 1
    only_first_day = await figures(recorded, settings, start, datetime(2025, 3, 5, tzinfo=SH))
    assert only_first_day["total"]["offered"] == 3


def call(uniqueid: str, started: datetime, **changes: object) -> Call:
    base = Call(
        uniqueid,
        uniqueid,
        f"PJSIP/citizen-{uniqueid}",
        "13800138000",
        "12345",
        started,
        queue="hotline",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def answered(
    uniqueid: str, started: datetime, wait_s: float, talk_s: float = 60.0, **changes: object
) -> Call:
    at = started + timedelta(seconds=10 + wait_s)
    return call(
        uniqueid,
        started,
        queue_wait_s=wait_s,
        answered_at=at,
        answered_by="agent",
        agent_interface=AGENT,
        agent_name="王芳",
        talk_ended_at=at + timedelta(seconds=talk_s),
        ended_at=at + timedelta(seconds=talk_s + 1),
        **changes,
    )


async def test_edges_of_the_definitions(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    day = datetime(2025, 3, 4, tzinfo=SH)
    late = datetime(2025, 3, 4, 23, 59, 50, tzinfo=SH)
    calls = [
        answered("1", day + timedelta(hours=9), 15.0),  # exactly 15 s: in time
        answered("2", day + timedelta(hours=9), 15.001),  # just over
        # starts before midnight, answered after it: counted on the day it started
        answered("3", late, 12.0, talk_s=100.0, wrap_up_s=30.0),
        call(
            "4",
            day + timedelta(hours=10),
            is_callback=True,
            answered_at=day + timedelta(hours=10, seconds=5),
            ended_at=day + timedelta(hours=10, minutes=2),
        ),  # an outbound 回访: not offered
        call(
            "5",
            day + timedelta(hours=10),
            queue=None,
            ended_at=day + timedelta(hours=10, seconds=8),
        ),  # menu
        call(
            "6",
            day + timedelta(hours=10),
            queue=None,
            bot_uuid="b-6",  # the bot settled it
            ended_at=day + timedelta(hours=10, minutes=1),
        ),
        call(
            "7",
            day + timedelta(hours=10),
            queue=None,
            bot_uuid="b-7",  # the bot filed a ticket
            ended_at=day + timedelta(hours=10, minutes=1),
        ),
        call(
            "8",
            day + timedelta(hours=10),
            queue_wait_s=40.0,
            bot_uuid="b-8",
            from_bot=True,  # asked for a
            ended_at=day + timedelta(hours=10, minutes=2),
        ),  # person, hung up in the queue: the bot answered
        call(
            "9", day + timedelta(hours=11), queue_joined_at=day + timedelta(hours=11)
        ),  # waiting now: not yet
        call(
            "10", day - timedelta(seconds=1), queue=None, ended_at=day + timedelta(seconds=5)
        ),  # the day before
        call(
            "11",
            day + timedelta(hours=12),
            queue=None,
            blocked=True,
            ended_at=day + timedelta(hours=12, seconds=9),
        ),  # refused by the blocklist: never offered
    ]
    async with sessionmaker() as session:
        await upsert_calls(session, calls, now=late)
        assert await link_ticket(session, "7", "12345-20250304-00001")
    result = await figures(sessionmaker, settings, day, day + timedelta(days=1), "day")
    total = result["total"]
    assert [(g["key"], g["offered"]) for g in result["groups"]] == [("2025-03-04", 7)]
    assert (
        total["offered"],
        total["answered"],
        total["answered_agent"],
        total["answered_bot"],
    ) == (7, 6, 3, 3)
    assert (total["abandoned"], total["abandoned_menu"]) == (1, 1)
    assert (
        total["answered_in_time"] == 4
    )  # 15.0 s, 12 s and two bot calls that never queued; not 15.001 or 40
    assert total["service_level_rate"] == round(4 / 7, 4) and total["connection_rate"] == round(
        6 / 7, 4
    )
    assert total["avg_talk_s"] == round((60 + 60 + 100) / 3, 3) and total["avg_wrap_up_s"] == 30.0
    assert (
        total["bot_sessions"],
        total["bot_contained"],
        total["bot_transfers"],
        total["bot_transfers_answered"],
    ) == (3, 1, 1, 0)
    assert total["bot_containment_rate"] == round(1 / 3, 4)
    assert (
        total["p90_wait_s"] == 40.0
    )  # answered waits 0, 0, 12, 15, 15.001, 40: rank ceil(5.4) = 6


def test_nearest_rank_percentile() -> None:
    assert nearest_rank([], 0.9) is None
    assert nearest_rank([3.0], 0.9) == 3.0
    assert nearest_rank([float(v) for v in range(1, 11)], 0.9) == 9.0  # 9 of 10 do not exceed 9
    assert nearest_rank([float(v) for v in range(1, 12)], 0.9) == 10.0  # ceil(9.9) = 10th


def apply_all(state: HotlineState, events: list[ev.DomainEvent]) -> list[Call]:
    """Apply events in order; the calls each update wrote, last view of each call."""
    written: dict[str, Call] = {}
    for seq, event in enumerate(events, start=1):
        for c in state.apply(event, seq).calls:
            written[c.uniqueid] = c
    return list(written.values())


def chan(uniqueid: str) -> ev.ChannelInfo:
    return ev.ChannelInfo(
        uniqueid, uniqueid, f"PJSIP/citizen-{uniqueid}", "13700137000", "hotline-inbound", "12345"
    )


def member(at: datetime, *, paused: bool, reason: str = "") -> ev.MemberState:
    return ev.MemberState(
        at, "hotline", AGENT, "王芳", AGENT, 1, paused, ev.DEVICE_NOT_INUSE, False, reason
    )


def test_abandon_stages_follow_the_ringing_agent() -> None:
    t = T0
    ringing, rang_before = chan("r.1"), chan("r.2")
    calls = apply_all(
        HotlineState("hotline"),
        [
            ev.CallerJoined(t, ringing, "hotline", 1),
            ev.AgentRinging(t + timedelta(seconds=3), ringing, "hotline", AGENT),
            ev.CallerAbandoned(t + timedelta(seconds=7), ringing, "hotline", 7.0),
            ev.ChannelHungUp(t + timedelta(seconds=7), ringing, "Normal Clearing"),
            ev.CallerJoined(t, rang_before, "hotline", 1),
            ev.AgentRinging(t + timedelta(seconds=1), rang_before, "hotline", AGENT),
            ev.AgentNoAnswer(
                t + timedelta(seconds=16), rang_before, "hotline", AGENT
            ),  # rang out: waits on
            ev.CallerAbandoned(t + timedelta(seconds=30), rang_before, "hotline", 30.0),
            ev.ChannelHungUp(t + timedelta(seconds=30), rang_before, "Normal Clearing"),
        ],
    )
    stages = {c.uniqueid: (c.outcome, c.abandoned_in, c.queue_wait_s) for c in calls}
    assert stages == {"r.1": ("abandoned", "ringing", 7.0), "r.2": ("abandoned", "queue", 30.0)}


async def test_wrap_up_after_a_call_is_logged_on_that_call(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    t = T0
    c = chan("w.1")
    state = HotlineState("hotline")
    calls = apply_all(
        state,
        [
            member(t, paused=False),
            ev.CallerJoined(t, c, "hotline", 1),
            ev.AgentConnected(t + timedelta(seconds=4), c, "hotline", AGENT, "王芳", 4.0),
            ev.AgentCompleted(
                t + timedelta(seconds=64), c, "hotline", AGENT, "王芳", 60.0, "caller"
            ),
            ev.ChannelHungUp(t + timedelta(seconds=64.5), c, "Normal Clearing"),
            member(
                t + timedelta(seconds=66), paused=True, reason=WRAP_UP_REASON
            ),  # 话后整理 button
            member(
                t + timedelta(seconds=80), paused=True, reason=WRAP_UP_REASON
            ),  # a status change meanwhile
            member(t + timedelta(seconds=111.5), paused=False),  # 示闲: 45.5 s of wrap-up
            member(t + timedelta(seconds=200), paused=True, reason="示忙"),  # a break is no wrap-up
            member(t + timedelta(seconds=300), paused=False),
        ],
    )
    [logged] = calls
    assert logged.talk_ended_at == t + timedelta(seconds=64) and logged.wrap_up_s == 45.5
    assert state.members[AGENT].free
    async with sessionmaker() as session:
        await upsert_calls(session, [logged], now=t)
        row = await get_call(session, "w.1")
    assert (
        row is not None and row.wrap_up_s == 45.5 and row.talk_ended_at == t + timedelta(seconds=64)
    )


def test_an_agent_complete_after_the_callers_hang_up_still_ends_the_talk_and_counts_the_wrap_up() -> (
    None
):
    """Asterisk may send the caller's Hangup before the AgentComplete (seen on the real PBX): the talk ends at
    the hang-up, and the agent's wrap-up is still that call's."""
    t = T0
    c = chan("h.1")
    calls = apply_all(
        HotlineState("hotline"),
        [
            member(t, paused=False),
            ev.CallerJoined(t, c, "hotline", 1),
            ev.AgentConnected(t + timedelta(seconds=4), c, "hotline", AGENT, "王芳", 4.0),
            ev.ChannelHungUp(t + timedelta(seconds=64), c, "Normal Clearing"),
            ev.AgentCompleted(
                t + timedelta(seconds=64.2), c, "hotline", AGENT, "王芳", 60.0, "caller"
            ),
            member(t + timedelta(seconds=65), paused=True, reason=WRAP_UP_REASON),
            member(t + timedelta(seconds=95), paused=False),
        ],
    )
    [logged] = calls
    assert logged.ended_at == logged.talk_ended_at == t + timedelta(seconds=64)
    assert logged.wrap_up_s == 30.0


async def test_calls_closed_by_a_resync_are_abandoned_where_they_were(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        await upsert_calls(
            session,
            [
                call("m.1", T0, queue=None),
                call("q.1", T0, queue_joined_at=T0),
                call("a.1", T0, answered_by="agent", answered_at=T0),
            ],
            now=T0,
        )
        await close_unseen(session, frozenset(), T0 + timedelta(minutes=1))
        rows = {u: await get_call(session, u) for u in ("m.1", "q.1", "a.1")}
    assert {u: (r.outcome, r.abandoned_in) for u, r in rows.items() if r is not None} == {
        "m.1": ("abandoned", "menu"),
        "q.1": ("abandoned", "queue"),
        "a.1": ("agent", None),
    }


async def test_bad_period_and_grouping_are_refused(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    with pytest.raises(InvalidInput) as bad_group:
        await figures(sessionmaker, settings, T0, T0 + timedelta(days=1), "department")
    assert bad_group.value.code == "service_levels.bad_group"
    with pytest.raises(InvalidInput) as bad_range:
        await figures(sessionmaker, settings, T0, T0 - timedelta(seconds=1))
    assert bad_range.value.code == "service_levels.bad_range"
    empty = (await figures(sessionmaker, settings, T0, T0))[
        "total"
    ]  # midnight exactly: today has no call yet
    assert (
        empty["offered"] == 0 and empty["connection_rate"] is None and empty["p90_wait_s"] is None
    )


@pytest.mark.slow
async def test_cli_prints_the_figures_as_json_and_as_a_table(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}"
    engine = make_engine(url)
    await create_schema(engine)
    await replay_into_log(
        make_sessionmaker(engine), "leader_and_abandon.ami", HotlineState("hotline")
    )
    await engine.dispose()
    span = ("--from", "2025-03-04", "--to", "2025-03-04")

    code, out, err = await run_cli(url, "metrics", "--calls", *span, "--by", "agent", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert (
        result["total"]["offered"],
        result["total"]["answered_agent"],
        result["total"]["abandoned_queue"],
    ) == (2, 1, 1)  # no leader window set here: 李明's call counts as an agent's
    assert (
        result["from"] == "2025-03-04T00:00:00+08:00"
        and result["to"] == "2025-03-05T00:00:00+08:00"
    )
    assert [(g["key"], g["offered"]) for g in result["groups"]] == [("李明（区长）", 1), (None, 1)]

    code, out, err = await run_cli(url, "metrics", "--calls", *span, "--by", "hour")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "服务水平时限 15 秒" and lines[1].split("\t")[1:4] == [
        "呼入",
        "接通",
        "人工接听",
    ]
    assert lines[2].split("\t")[:3] == ["合计", "2", "1"] and "50.0%" in lines[2]
    assert lines[3].startswith("2025-03-04 10:00\t2\t1")

    code, _out, err = await run_cli(url, "metrics", "--calls", *span, "--by", "department")
    assert code == 2 and "cli.bad_group" in err


async def test_a_bot_ticket_that_goes_on_is_not_contained_an_instant_one_is(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    from tickets.services import Actor, TicketDraft, close_instant, create_ticket

    day = datetime(2025, 3, 4, 10, tzinfo=SH)
    bot = Actor("语音机器人", "bot")
    async with sessionmaker() as session:
        draft = TicketDraft(
            channel="bot", caller_phone="13800138000", content="路灯坏了", kind="求助"
        )
        open_no = (await create_ticket(session, draft, bot, now=day, settings=settings)).ticket_no
        instant_no = (
            await close_instant(session, draft, "按规定办理即可", bot, now=day, settings=settings)
        ).ticket_no
        await upsert_calls(
            session,
            [
                call(
                    "1",
                    day,
                    queue=None,
                    bot_uuid="b-1",
                    ticket_no=open_no,
                    ended_at=day + timedelta(minutes=1),
                ),
                call(
                    "2",
                    day,
                    queue=None,
                    bot_uuid="b-2",
                    ticket_no=instant_no,
                    ended_at=day + timedelta(minutes=1),
                ),
                call("3", day, queue=None, bot_uuid="b-3", ended_at=day + timedelta(minutes=1)),
            ],
            now=day,
        )
        assert (await get_call(session, "1")).ticket_no == open_no  # type: ignore[union-attr]
    total = (await figures(sessionmaker, settings, day, day + timedelta(hours=1)))["total"]
    assert (total["bot_sessions"], total["bot_contained"]) == (3, 2)
