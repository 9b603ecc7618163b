"""Service levels in the console: the cockpit's wallboard (today's figures from the call log, the live queue
with wrap-up), the XLSX report (audited) and the Prometheus gauges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import BytesIO
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from sqlalchemy import select

from agent_console.models import AuditEntry
from agent_console.views.cockpit import snapshot_of
from ivr.state import WRAP_UP_REASON, Call, HotlineState, Member
from tests.agent_console.harness import Browser, Console
from tests.agent_console.seed_cockpit import move_console_to
from tests.ivr.calllog_support import replay_into_log

SH = ZoneInfo("Asia/Shanghai")
NOON = datetime(2025, 3, 4, 12, 0, tzinfo=SH)  # the day of the recorded calls


@pytest.fixture
async def logged(console: Console) -> Console:
    """bot_then_agent.ami and leader_and_abandon.ami (no leader window: both answers are agents') in the log:
    3 offered, 2 answered after 5 s and 6 s, 1 abandoned in the queue after 20 s, 1 bot session handed over."""
    await replay_into_log(console.sessionmaker, "bot_then_agent.ami", HotlineState("hotline"))
    await replay_into_log(console.sessionmaker, "leader_and_abandon.ami", HotlineState("hotline"))
    move_console_to(console, NOON)
    return console


async def get_json(b: Browser, path: str) -> dict:  # type: ignore[type-arg]
    resp = await b.request("GET", path)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_wallboard_shows_todays_service_levels(logged: Console) -> None:
    calls = await get_json(await logged.logged_in("leader"), "/api/v1/cockpit/calls")
    assert calls == {
        "day": "2025-03-04",
        "service_level_s": 15.0,
        "offered": 3,
        "answered": 2,
        "abandoned": 1,
        "abandoned_menu": 0,
        "abandoned_queue": 1,
        "abandoned_ringing": 0,
        "connection_rate": 0.6667,
        "service_level_rate": 0.6667,
        "avg_wait_s": 5.5,
        "p90_wait_s": 6.0,
        "bot_sessions": 1,
        "bot_transfers": 1,
    }
    move_console_to(logged, NOON + timedelta(days=1))  # a new day starts empty
    empty = await get_json(await logged.logged_in("dispatcher"), "/api/v1/cockpit/calls")
    assert (empty["day"], empty["offered"], empty["connection_rate"]) == ("2025-03-05", 0, None)
    refused = await (await logged.logged_in("agent")).request("GET", "/api/v1/cockpit/calls")
    assert refused.status == 403


def test_live_queue_counts_agents_in_wrap_up_and_the_longest_wait() -> None:
    now = datetime(2025, 3, 4, 4, 0, tzinfo=UTC)
    state = HotlineState("hotline")
    state.calls = {
        u: Call(
            u,
            u,
            f"PJSIP/trunk-{u}",
            "13812345678",
            "12345",
            now - timedelta(seconds=90),
            queue="hotline",
            queue_joined_at=now - timedelta(seconds=s),
        )
        for u, s in (("1.1", 42.0), ("1.2", 75.5))
    }
    state.members = {
        "PJSIP/6001": Member("PJSIP/6001", "坐席1", "PJSIP/6001", 1, False, 1, False),
        "PJSIP/6002": Member(
            "PJSIP/6002", "坐席2", "PJSIP/6002", 1, True, 1, False, paused_reason=WRAP_UP_REASON
        ),
        "PJSIP/6003": Member(
            "PJSIP/6003", "坐席3", "PJSIP/6003", 1, True, 1, False, paused_reason="示忙"
        ),
    }
    snapshot = snapshot_of(state, now)
    assert (snapshot.agents.available, snapshot.agents.wrap_up, snapshot.agents.paused) == (1, 1, 1)
    assert snapshot.longest_wait_s == 75.5 and len(snapshot.waiting) == 2


async def test_xlsx_report_of_any_period_is_audited(logged: Console) -> None:
    leader = await logged.logged_in("leader")
    async with leader.http.get(
        leader.url("/reports/calls.xlsx?date_from=2025-03-04&date_to=2025-03-04&by=hour")
    ) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("application/vnd.openxmlformats")
        body = await resp.read()
    rows = [
        list(r) for r in openpyxl.load_workbook(BytesIO(body)).active.iter_rows(values_only=True)
    ]
    assert "2025-03-04 至 2025-03-04" in rows[0][0] and "15 秒" in rows[0][0]
    header = rows[1]
    total, hour = dict(zip(header, rows[2], strict=True)), dict(zip(header, rows[3], strict=True))
    assert (
        total["分组"],
        total["呼入"],
        total["接通"],
        total["排队放弃"],
        total["机器人转人工"],
    ) == ("合计", 3, 2, 1, 1)
    assert (
        total["接通率"] == 0.6667
        and total["平均等待(秒)"] == 5.5
        and total["平均通话(秒)"] == 135.0
    )
    assert (hour["分组"], hour["呼入"]) == ("2025-03-04 10:00", 3) and len(rows) == 4
    async with logged.sessionmaker() as db:
        [audit] = (
            await db.scalars(select(AuditEntry).where(AuditEntry.action == "export.calls"))
        ).all()
    assert (audit.actor, audit.target) == ("leader", "话务服务水平-20250304-20250304.xlsx")
    assert audit.detail == {
        "role": "leader",
        "rows": 2,
        "filters": {"from": "2025-03-04", "to": "2025-03-04", "by": "hour"},
    }
    backwards = await leader.request(
        "GET", "/reports/calls.xlsx?date_from=2025-03-05&date_to=2025-03-04"
    )
    assert backwards.status == 422


async def test_prometheus_gauges_carry_todays_figures_and_the_queue(logged: Console) -> None:
    text = await (await logged.browser().request("GET", "/metrics")).text()
    assert 'hotline_calls_today{figure="offered"} 3.0' in text
    assert 'hotline_calls_today{figure="connection_rate"} 0.6667' in text
    assert 'hotline_calls_today{figure="abandoned_queue"} 1.0' in text
    assert 'hotline_queue_now{figure="waiting"} 0.0' in text
    assert 'hotline_queue_now{figure="agents_wrap_up"} 0.0' in text
