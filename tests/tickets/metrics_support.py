"""The March 2025 cohort the metrics tests compute by hand (tests/tickets/test_metrics.py holds the figures)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from tests.settings_support import SETTINGS
from tests.tickets.loop_support import (
    AGENT,
    CALLER,
    DISPATCHER,
    HANDLER,
    MONDAY_10AM,
    OTHER_HANDLER,
    SYSTEM,
    TZ,
    step,
)
from tickets.metrics import day_range
from tickets.services import close_instant, create_ticket, record_callback

MARCH = day_range(date(2025, 3, 1), date(2025, 3, 31), TZ)
NOW = datetime(2025, 3, 20, 10, 0, tzinfo=TZ)


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
    a = await create_ticket(
        session,
        draft(content="物业公司私自提高停车费", category="住房安居/物业服务", district="城关区"),
        AGENT,
        now=at(3, 10),
        settings=SETTINGS,
    )
    a = await through_to_verified(
        session, a, HANDLER, dispatch_at=at(3, 10), sign_at=at(3, 10, 30), lead="zjj"
    )
    await record_callback(
        session, a.ticket_no, "satisfied", SYSTEM, now=at(4, 10), settings=SETTINGS
    )

    b = draft(
        caller_phone="13900000002",
        content="公积金提取需要哪些材料",
        kind="咨询",
        category=None,
        **base,
    )
    await close_instant(
        session, b, "携带身份证和购房合同到公积金中心办理", AGENT, now=at(3, 11), settings=SETTINGS
    )

    c = await create_ticket(
        session,
        draft(content="楼上渗水到我家天花板", category="住房安居/房屋质量", district="城关区"),
        AGENT,
        now=at(3, 12),
        settings=SETTINGS,
    )
    c = await through_to_verified(
        session, c, OTHER_HANDLER, dispatch_at=at(3, 12), sign_at=at(3, 15), lead="hbj"
    )
    c = await record_callback(
        session, c.ticket_no, "unsatisfied", SYSTEM, now=at(4, 10), settings=SETTINGS
    )
    assert (c.sign_for_due, c.due_at) == (at(4, 11), at(11, 10))
    await finish(session, c, OTHER_HANDLER, sign_at=at(4, 10, 30))
    await record_callback(
        session, c.ticket_no, "basically_satisfied", SYSTEM, now=at(12, 10), settings=SETTINGS
    )

    d = await create_ticket(
        session,
        draft(
            caller_phone="13900000004",
            content="河道里漂浮大量死鱼",
            kind="求助",
            category="生态环境",
            district="七里河区",
        ),
        AGENT,
        now=at(5, 10),
        settings=SETTINGS,
    )
    d = await step(session, d, "review", DISPATCHER, now=at(5, 10))
    await step(session, d, "dispatch", DISPATCHER, lead_department="zjj", now=at(5, 10))

    e = await create_ticket(
        session,
        draft(
            caller_phone="13900000005",
            content="建议增加公交线路",
            kind="建议",
            category=None,
            **base,
        ),
        AGENT,
        now=at(6, 10),
        settings=SETTINGS,
    )
    await step(session, e, "withdraw", CALLER, now=at(6, 11))

    f = await create_ticket(
        session,
        draft(
            caller_phone="13900000006",
            content="医院挂号难怎么办",
            kind="咨询",
            category="健康医疗/医疗服务",
            district="七里河区",
        ),
        AGENT,
        now=at(7, 10),
        settings=SETTINGS,
    )
    f = await through_to_verified(
        session, f, HANDLER, dispatch_at=at(7, 10), sign_at=at(7, 10, 15), lead="zjj"
    )
    for when in (at(7, 11, 58), at(7, 11, 59), at(7, 12)):
        f = await record_callback(
            session, f.ticket_no, "unreachable", SYSTEM, now=when, settings=SETTINGS
        )
    assert (f.state, f.satisfaction, f.closed_at) == ("closed", "unreachable", at(7, 12))

    await create_ticket(
        session,
        draft(caller_phone="13900000009", content="窗外工地夜间施工噪音"),
        AGENT,
        now=MONDAY_10AM - timedelta(days=4),
        settings=SETTINGS,
    )  # Feb 27
    await create_ticket(
        session,
        draft(caller_phone="13900000010", content="路灯坏了好几天"),
        AGENT,
        now=datetime(2025, 4, 1, 0, 0, tzinfo=TZ),
        settings=SETTINGS,
    )
