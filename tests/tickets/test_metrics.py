"""Metrics (考核指标) against a hand-computed fixture driven through the real services with controlled time."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import date, datetime, timedelta

import pytest

from hotline.db import create_schema, make_engine, make_sessionmaker
from tests.tickets.loop_support import AGENT, CALLER, DEPARTMENTS, DISPATCHER, HANDLER, MONDAY_10AM, SYSTEM, TZ, step
from tickets.errors import InvalidInput
from tickets.metrics import day_range, metrics
from tickets.services import Actor, close_instant, create_ticket, record_callback, upsert_departments

MARCH = day_range(date(2025, 3, 1), date(2025, 3, 31), TZ)
NOW = datetime(2025, 3, 20, 10, 0, tzinfo=TZ)
HBJ_HANDLER = Actor("钱承办", "handler", department="hbj")


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 3, day, hour, minute, tzinfo=TZ)


async def through_to_verified(session, t, handler, *, dispatch_at, sign_at, lead):
    t = await step(session, t, "review", DISPATCHER, now=dispatch_at)
    t = await step(session, t, "dispatch", DISPATCHER, lead_department=lead, now=dispatch_at)
    return await finish(session, t, handler, sign_at=sign_at)


async def finish(session, t, handler, *, sign_at):
    t = await step(session, t, "sign", handler, now=sign_at)
    t = await step(session, t, "reply", handler, reply="已处理", now=sign_at)
    return await step(session, t, "verify", DISPATCHER, now=sign_at)


async def build_march(session, draft) -> None:
    """Six tickets received in March 2025 and two outside it; the expected figures are in the tests below.

    A 投诉 zjj: signed in time, closed satisfied after 24 h, on time.
    B 咨询: 即办 (instant) — closed, on time, not in the handling-time average.
    C 投诉 hbj, same caller as A (重复件): signed late; 回访不满意 → 二次派单, signed in time, closed 基本满意
      after 214 h, past its new deadline.
    D 求助 zjj: never signed — open and overdue at NOW.
    E 建议: withdrawn.
    F 咨询 zjj: closed as 未接通 after three unanswered call-backs, 2 h after intake, on time.
    """
    base = {"district": None, "street": None, "address": None}
    a = await create_ticket(session, draft(content="物业公司私自提高停车费", category="住房安居/物业服务",
                                           district="城关区"), AGENT, now=at(3, 10))
    a = await through_to_verified(session, a, HANDLER, dispatch_at=at(3, 10), sign_at=at(3, 10, 30), lead="zjj")
    await record_callback(session, a.ticket_no, "satisfied", SYSTEM, now=at(4, 10))

    b = draft(caller_phone="13900000002", content="公积金提取需要哪些材料", kind="咨询", category=None, **base)
    await close_instant(session, b, "携带身份证和购房合同到公积金中心办理", AGENT, now=at(3, 11))

    c = await create_ticket(session, draft(content="楼上渗水到我家天花板", category="住房安居/房屋质量",
                                           district="城关区"), AGENT, now=at(3, 12))
    c = await through_to_verified(session, c, HBJ_HANDLER, dispatch_at=at(3, 12), sign_at=at(3, 15), lead="hbj")
    c = await record_callback(session, c.ticket_no, "unsatisfied", SYSTEM, now=at(4, 10))
    assert (c.sign_for_due, c.due_at) == (at(4, 11), at(11, 10))
    await finish(session, c, HBJ_HANDLER, sign_at=at(4, 10, 30))
    await record_callback(session, c.ticket_no, "basically_satisfied", SYSTEM, now=at(12, 10))

    d = await create_ticket(session, draft(caller_phone="13900000004", content="河道里漂浮大量死鱼", kind="求助",
                                           category="生态环境", district="七里河区"), AGENT, now=at(5, 10))
    d = await step(session, d, "review", DISPATCHER, now=at(5, 10))
    await step(session, d, "dispatch", DISPATCHER, lead_department="zjj", now=at(5, 10))

    e = await create_ticket(session, draft(caller_phone="13900000005", content="建议增加公交线路", kind="建议",
                                           category=None, **base), AGENT, now=at(6, 10))
    await step(session, e, "withdraw", CALLER, now=at(6, 11))

    f = await create_ticket(session, draft(caller_phone="13900000006", content="医院挂号难怎么办", kind="咨询",
                                           category="健康医疗/医疗服务", district="七里河区"), AGENT, now=at(7, 10))
    f = await through_to_verified(session, f, HANDLER, dispatch_at=at(7, 10), sign_at=at(7, 10, 15), lead="zjj")
    for when in (at(7, 11, 58), at(7, 11, 59), at(7, 12)):
        f = await record_callback(session, f.ticket_no, "unreachable", SYSTEM, now=when)
    assert (f.state, f.satisfaction, f.closed_at) == ("closed", "unreachable", at(7, 12))

    await create_ticket(session, draft(caller_phone="13900000009", content="窗外工地夜间施工噪音"), AGENT,
                        now=MONDAY_10AM - timedelta(days=4))  # Feb 27
    await create_ticket(session, draft(caller_phone="13900000010", content="路灯坏了好几天"), AGENT,
                        now=datetime(2025, 4, 1, 0, 0, tzinfo=TZ))


EXPECTED_TOTAL = {
    "received": 6, "withdrawn": 1, "closed": 4, "open": 1, "overdue": 1, "dispatched": 4, "sign_for_decided": 4,
    "signed_in_time": 3, "closed_on_time": 3, "instant": 1, "satisfied": 2, "unsatisfied": 1, "surveyed": 3,
    "repeats": 1, "handled_closed": 3,
    "response_rate": 0.75, "closure_rate": 0.6667, "on_time_rate": 0.75, "satisfaction_rate": 0.6667,
    "instant_rate": 0.1667, "repeat_rate": 0.1667, "avg_handling_hours": 80.0,  # (24 + 214 + 2) / 3
}


async def test_totals_match_the_hand_computed_fixture(session, draft) -> None:
    await build_march(session, draft)
    result = await metrics(session, *MARCH, now=NOW)
    assert result["total"] == EXPECTED_TOTAL
    assert "groups" not in result and result["from"] == "2025-03-01T00:00:00+08:00"


async def test_overdue_and_sign_for_depend_on_now(session, draft) -> None:
    await build_march(session, draft)
    early = await metrics(session, *MARCH, now=at(5, 10, 30))  # D's sign-for and handling deadlines not yet passed
    assert (early["total"]["overdue"], early["total"]["sign_for_decided"], early["total"]["response_rate"]) == (
        0, 3, 1.0)


async def test_by_department(session, draft) -> None:
    await build_march(session, draft)
    groups = {g["key"]: g for g in (await metrics(session, *MARCH, by="department", now=NOW))["groups"]}
    assert set(groups) == {"zjj", "hbj", None}
    zjj, hbj, none = groups["zjj"], groups["hbj"], groups[None]
    assert (zjj["label"], none["label"]) == (dict(DEPARTMENTS)["zjj"], "（未派发）")
    assert (zjj["received"], zjj["closed"], zjj["overdue"], zjj["response_rate"], zjj["on_time_rate"]) == (
        3, 2, 1, 0.6667, 1.0)
    assert (zjj["satisfaction_rate"], zjj["avg_handling_hours"]) == (1.0, 13.0)
    assert (hbj["received"], hbj["on_time_rate"], hbj["satisfaction_rate"], hbj["repeat_rate"]) == (1, 0.0, 0.5, 1.0)
    assert hbj["avg_handling_hours"] == 214.0
    assert (none["received"], none["withdrawn"], none["instant_rate"], none["response_rate"]) == (2, 1, 0.5, None)


async def test_by_category_and_area(session, draft) -> None:
    await build_march(session, draft)
    by_cat = {g["key"]: g["received"] for g in (await metrics(session, *MARCH, by="category", now=NOW))["groups"]}
    assert by_cat == {"住房安居": 2, "生态环境": 1, "健康医疗": 1, None: 2}
    by_area = {g["key"]: (g["received"], g["closed"])
               for g in (await metrics(session, *MARCH, by="area", now=NOW))["groups"]}
    assert by_area == {"城关区": (2, 2), "七里河区": (2, 1), None: (2, 1)}


async def test_empty_window_has_no_rates_and_bad_input_is_refused(session) -> None:
    result = await metrics(session, *MARCH, by="department", now=NOW)
    assert result["total"]["received"] == 0 and result["total"]["closure_rate"] is None and result["groups"] == []
    with pytest.raises(InvalidInput) as err:
        await metrics(session, *MARCH, by="street")
    assert err.value.code == "metrics.bad_group"
    with pytest.raises(InvalidInput):
        await metrics(session, MARCH[1], MARCH[0])


async def run_cli(url: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "HOTLINE_DATABASE_URL": url}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "hotline.cli", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.slow
async def test_cli_metrics_and_warnings_scan_print_json(tmp_path, draft) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}"
    engine = make_engine(url)
    await create_schema(engine)
    async with make_sessionmaker(engine)() as session:
        await upsert_departments(session, DEPARTMENTS)
        await build_march(session, draft)
    await engine.dispose()

    code, out, err = await run_cli(url, "metrics", "--from", "2025-03-01", "--to", "2025-03-31", "--by",
                                   "department", "--json", "--now", "2025-03-20T10:00:00")
    assert code == 0, err
    result = json.loads(out)
    assert {k: result["total"][k] for k in EXPECTED_TOTAL} == EXPECTED_TOTAL
    assert {g["key"] for g in result["groups"]} == {"zjj", "hbj", None}

    code, out, err = await run_cli(url, "warnings", "scan", "--now", "2025-03-20T10:00:00+08:00")
    assert code == 0, err
    first = json.loads(out)
    # D: handling and sign-for deadlines both passed; the Feb 27 and Apr 1 complaints: accepted, overdue / fresh.
    assert (first["open_tickets"], first["raised"], first["open_warnings"]) == (3, 3, 3)
    code, out, err = await run_cli(url, "warnings", "scan", "--now", "2025-03-20T10:05:00+08:00", "--deliver")
    second = json.loads(out)
    assert (second["raised"], second["changed"], second["cleared"], second["notices"]) == (0, 0, 0, 0)
    assert second["delivery"] == {"sent": first["notices"] + first["supervisions"], "retry": 0, "failed": 0}

    code, _out, err = await run_cli(url, "metrics", "--from", "2025-03-31", "--to", "2025-03-01")
    assert code == 2 and "metrics.bad_range" in err
