"""Service levels of caller paths recorded from the local Asterisk (tests/e2e/test_caller_paths.py, re-recorded
with ``HOTLINE_RECORD_AMI=1``): a caller who hangs up while an agent's phone rings, an agent who lets it ring
(AgentRingNoAnswer) before another answers, and an agent's wrap-up (话后整理) after a call. The figures are computed
by hand from the recordings' Timestamp headers (seconds below are those timestamps minus 1796617900)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from ivr.models import CallRecord
from ivr.service_levels import service_levels
from ivr.state import HotlineState
from tests.ivr.calllog_support import replay_into_log

SH = ZoneInfo("Asia/Shanghai")
DAY = datetime(2026, 12, 7, tzinfo=SH)  # the recordings start at 12:32:58 local time
PATHS = ("abandon_while_ringing.ami", "ring_no_answer.ami", "wrap_up.ami")


@pytest.fixture
async def recorded(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> async_sessionmaker[AsyncSession]:
    for name in PATHS:
        await replay_into_log(sessionmaker, name, HotlineState("hotline"))
    return sessionmaker


async def test_recorded_paths_are_logged_with_their_outcome(
    recorded: async_sessionmaker[AsyncSession],
) -> None:
    async with recorded() as session:
        rows = (await session.scalars(select(CallRecord).order_by(CallRecord.started_at))).all()
    assert [(r.outcome, r.abandoned_in, r.answered_by, r.agent_interface) for r in rows] == [
        ("abandoned", "ringing", None, None),  # hung up 4.6 ms into the ring: no AgentRingNoAnswer
        (
            "agent",
            None,
            "agent",
            "Local/6872@test-agent/n",
        ),  # 6873 rang 15 s unanswered, then 6872 answered
        ("agent", None, "agent", "Local/6872@test-agent/n"),
    ]
    # joined 78.406405, abandoned 78.411010; joined 78.793294, answered 95.797003; joined 98.156044, answered
    # 98.159598 (the log keeps milliseconds)
    assert [r.queue_wait_s for r in rows] == [0.005, 17.004, 0.004]
    # the wrap-up: paused 话后整理 at 100.180851 (after the talk ended at 100.172407), ready at 101.684837
    assert [r.wrap_up_s for r in rows] == [None, None, 1.504]


async def test_recorded_paths_give_the_hand_computed_figures(
    recorded: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    async with recorded() as session:
        result = await service_levels(
            session, DAY, DAY.replace(day=8), settings=settings, by="agent"
        )
    total = result["total"]
    assert (
        total["offered"],
        total["answered"],
        total["answered_agent"],
        total["abandoned"],
        total["abandoned_menu"],
        total["abandoned_queue"],
        total["abandoned_ringing"],
    ) == (3, 2, 2, 1, 0, 0, 1)
    assert (
        total["answered_in_time"] == 1
    )  # 17.004 s of ringing the silent agent and then the other is over 15 s
    assert (total["connection_rate"], total["service_level_rate"], total["abandon_rate"]) == (
        0.6667,
        0.3333,
        0.3333,
    )
    assert total["avg_wait_s"] == round((17.004 + 0.004) / 2, 3) == 8.504
    assert (
        total["p90_wait_s"] == 17.004 and total["max_wait_s"] == 17.004
    )  # nearest rank: ceil(0.9 × 2) = 2nd
    # talks: 95.797003 → 97.808110 (2.011107 s) and 98.159598 → 100.172407 (2.012809 s)
    assert total["avg_talk_s"] == round((2.011107 + 2.012809) / 2, 3) == 2.012
    assert total["avg_wrap_up_s"] == 1.504
    assert total["bot_sessions"] == 0
    agents = {g["key"]: g for g in result["groups"]}
    assert set(agents) == {"测试坐席", None}
    assert (agents["测试坐席"]["answered"], agents["测试坐席"]["avg_wrap_up_s"]) == (2, 1.504)
    assert (agents[None]["offered"], agents[None]["abandoned_ringing"]) == (1, 1)
