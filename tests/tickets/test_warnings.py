"""Warnings (预警): yellow and red cards raised, upgraded and cleared by the scan, with controlled ``now``."""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy import func, select

from tests.settings_support import SETTINGS
from tests.tickets.loop_support import (
    AGENT,
    CALLER,
    DISPATCHER,
    HANDLER,
    MONDAY_10AM,
    SYSTEM,
    TZ,
    step,
)
from tickets.models import OutboxMessage, TicketEvent, TicketSupervision, TicketWarning
from tickets.services import create_ticket, record_callback, replay_ticket
from tickets.warnings import ScanCalendar, scan_warnings, warnings_of
from tickets.worktime import WorkCalendar

FRIDAY_10AM = MONDAY_10AM + timedelta(days=4)  # 7.5 of 37.5 working hours left: 20 % < 25 %
THURSDAY_10AM = MONDAY_10AM + timedelta(days=3)  # 15 of 37.5 left: 40 %
NEXT_MONDAY_10AM = MONDAY_10AM + timedelta(days=7)  # the 5-working-day deadline of a complaint


async def open_warnings(session) -> list[tuple[str, str, str]]:
    rows = await session.execute(
        select(TicketWarning).where(TicketWarning.cleared_at.is_(None)).order_by(TicketWarning.id)
    )
    return [(w.reason, w.level, str(w.ticket_id)) for w in rows.scalars()]


async def rows(session, model) -> int:
    return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def scan(session, now, catalogue):
    return await scan_warnings(session, now=now, catalogue=catalogue, settings=SETTINGS)


async def dispatched(session, draft, **kw):
    t = await create_ticket(session, draft(**kw), AGENT, now=MONDAY_10AM, settings=SETTINGS)
    t = await step(session, t, "review", DISPATCHER)
    return await step(session, t, "dispatch", DISPATCHER, lead_department="zjj")


async def test_handling_deadline_turns_yellow_then_red_and_rescans_change_nothing(
    session, draft, catalogue
) -> None:
    t = await create_ticket(session, draft(), AGENT, now=MONDAY_10AM, settings=SETTINGS)
    assert t.due_at == NEXT_MONDAY_10AM

    report = await scan(session, THURSDAY_10AM, catalogue)
    assert (report.open_tickets, report.raised, report.open_warnings) == (1, 0, 0)

    report = await scan(session, FRIDAY_10AM, catalogue)
    assert (report.raised, report.notices, report.supervisions) == (1, 1, 0)
    assert await open_warnings(session) == [("handling_deadline", "yellow", str(t.id))]
    sms = (await session.execute(select(OutboxMessage))).scalar_one()
    # Not dispatched yet: the dispatch desk answers for it.
    assert (sms.channel, sms.recipient, sms.status) == (
        "sms",
        "12345热线派单中心 12345热线派单中心",
        "pending",
    )
    assert t.ticket_no in sms.body and "办理即将超期" in sms.body

    again = await scan(session, FRIDAY_10AM + timedelta(minutes=5), catalogue)
    assert (again.raised, again.changed, again.cleared, again.notices) == (0, 0, 0, 0)
    assert await rows(session, TicketWarning) == 1 and await rows(session, OutboxMessage) == 1

    late = NEXT_MONDAY_10AM + timedelta(minutes=1)
    report = await scan(session, late, catalogue)
    assert (report.raised, report.changed, report.notices, report.supervisions) == (0, 1, 1, 1)
    assert await open_warnings(session) == [("handling_deadline", "red", str(t.id))]
    assert await rows(session, TicketWarning) == 1  # the same warning, upgraded
    letter = (await session.execute(select(TicketSupervision))).scalar_one()
    assert (
        letter.reason == "handling_deadline"
        and letter.leader == "12345热线派单中心 12345热线中心主任"
    )
    assert "已超期 1 分钟" in letter.letter

    again = await scan(session, late + timedelta(hours=1), catalogue)
    assert (again.raised, again.changed, again.notices, again.supervisions) == (0, 0, 0, 0)
    assert await rows(session, OutboxMessage) == 3  # yellow notice, red notice, letter
    events = (
        (await session.execute(select(TicketEvent.action).where(TicketEvent.ticket_id == t.id)))
        .scalars()
        .all()
    )
    assert list(events) == ["create", "supervise"]
    assert (
        await replay_ticket(session, t.ticket_no) == "accepted"
    )  # the supervision note changes no state


async def test_sign_for_deadline_yellow_red_then_cleared_by_signing(
    session, draft, catalogue
) -> None:
    t = await dispatched(session, draft)
    assert t.sign_for_due == MONDAY_10AM + timedelta(hours=1)
    assert (await scan(session, MONDAY_10AM + timedelta(minutes=30), catalogue)).open_warnings == 0
    await scan(session, MONDAY_10AM + timedelta(minutes=50), catalogue)
    assert await open_warnings(session) == [("sign_for_deadline", "yellow", str(t.id))]
    sms = (await session.execute(select(OutboxMessage))).scalar_one()
    assert (
        sms.recipient == "区住房和城乡建设局 吴环卫（环卫科科长）"
    )  # catalogue person of the ticket's category
    await scan(session, MONDAY_10AM + timedelta(minutes=61), catalogue)
    assert await open_warnings(session) == [("sign_for_deadline", "red", str(t.id))]

    await step(session, t, "sign", HANDLER, now=MONDAY_10AM + timedelta(minutes=70))
    report = await scan(session, MONDAY_10AM + timedelta(minutes=70), catalogue)
    assert (report.cleared, report.open_warnings) == (1, 0)
    (warning,) = await warnings_of(session, t.ticket_no, include_cleared=True)
    assert await warnings_of(session, t, include_cleared=True) == [
        warning
    ]  # or given the ticket already loaded
    assert warning.cleared_at == MONDAY_10AM + timedelta(minutes=70)
    assert await warnings_of(session, t.ticket_no) == []


async def test_repeat_complaint_is_red_but_a_repeated_enquiry_is_not(
    session, draft, catalogue
) -> None:
    first = await create_ticket(
        session, draft(content="小区垃圾没人清理"), AGENT, now=MONDAY_10AM, settings=SETTINGS
    )
    repeat = await create_ticket(
        session, draft(content="垃圾还是没人清理"), AGENT, now=MONDAY_10AM, settings=SETTINGS
    )
    enquiry = await create_ticket(
        session,
        draft(caller_phone="13900000001", kind="咨询", content="垃圾分类怎么分"),
        AGENT,
        now=MONDAY_10AM,
        settings=SETTINGS,
    )
    enquiry2 = await create_ticket(
        session,
        draft(caller_phone="13900000001", kind="咨询", content="垃圾分类时间"),
        AGENT,
        now=MONDAY_10AM,
        settings=SETTINGS,
    )
    assert (first.is_repeat, repeat.is_repeat, enquiry2.is_repeat) == (False, True, True)
    report = await scan(session, MONDAY_10AM, catalogue)
    assert await open_warnings(session) == [("repeat_complaint", "red", str(repeat.id))]
    assert (report.notices, report.supervisions) == (1, 1)
    assert enquiry.id not in {int(w[2]) for w in await open_warnings(session)}


async def test_unsatisfied_callback_is_red(session, draft, catalogue) -> None:
    t = await dispatched(session, draft)
    for action, kw in (("sign", {}), ("reply", {"reply": "已清运"})):
        t = await step(session, t, action, HANDLER, **kw)
    t = await step(session, t, "verify", DISPATCHER)
    t = await record_callback(
        session, t.ticket_no, "unsatisfied", SYSTEM, now=MONDAY_10AM, settings=SETTINGS
    )
    assert (t.state, t.redispatch_count) == ("dispatched", 1)
    await scan(session, MONDAY_10AM + timedelta(minutes=5), catalogue)
    assert await open_warnings(session) == [("unsatisfied", "red", str(t.id))]
    letter = (await session.execute(select(TicketSupervision))).scalar_one()
    assert "回访不满意" in letter.letter and letter.leader == "区住房和城乡建设局 周环卫（副局长）"


async def test_extension_is_red_and_moves_the_handling_deadline(session, draft, catalogue) -> None:
    t = await dispatched(session, draft)
    t = await step(session, t, "sign", HANDLER)
    await scan(session, FRIDAY_10AM, catalogue)
    assert await open_warnings(session) == [("handling_deadline", "yellow", str(t.id))]
    t = await step(
        session,
        t,
        "request_extension",
        HANDLER,
        note="需协调多个部门",
        until=t.due_at + timedelta(days=7),
        now=FRIDAY_10AM,
    )
    t = await step(session, t, "approve_extension", DISPATCHER, now=FRIDAY_10AM)
    report = await scan(session, FRIDAY_10AM + timedelta(minutes=1), catalogue)
    assert await open_warnings(session) == [("extended", "red", str(t.id))]
    assert (report.raised, report.cleared) == (1, 1)


async def test_closed_and_withdrawn_tickets_lose_their_warnings(session, draft, catalogue) -> None:
    t = await create_ticket(session, draft(), AGENT, now=MONDAY_10AM, settings=SETTINGS)
    await scan(session, NEXT_MONDAY_10AM + timedelta(hours=1), catalogue)
    assert len(await open_warnings(session)) == 1
    await step(session, t, "withdraw", CALLER, now=NEXT_MONDAY_10AM + timedelta(hours=2))
    report = await scan(session, NEXT_MONDAY_10AM + timedelta(hours=2), catalogue)
    assert (report.open_tickets, report.cleared, report.open_warnings) == (0, 1, 0)


async def test_hour_tier_uses_wall_clock_time(session, draft, catalogue) -> None:
    t = await create_ticket(
        session, draft(urgency="urgent"), AGENT, now=MONDAY_10AM, settings=SETTINGS
    )  # 24 小时
    assert t.due_at == MONDAY_10AM + timedelta(hours=24)
    assert (await scan(session, MONDAY_10AM + timedelta(hours=17), catalogue)).open_warnings == 0
    await scan(
        session, MONDAY_10AM + timedelta(hours=19), catalogue
    )  # 5 of 24 hours left (the night counts)
    assert await open_warnings(session) == [("handling_deadline", "yellow", str(t.id))]


def test_scan_calendar_counts_like_the_work_calendar(settings) -> None:
    slow, fast = WorkCalendar.from_settings(settings), ScanCalendar.from_settings(settings)
    rng = random.Random(12345)
    start = MONDAY_10AM.replace(month=1, day=1, hour=0)  # crosses 春节 2025 and its 调休 Sundays
    for _ in range(300):
        a = start + timedelta(minutes=rng.randrange(0, 60 * 24 * 120))
        b = a + timedelta(minutes=rng.randrange(-60 * 24 * 20, 60 * 24 * 20))
        assert (
            abs(fast.working_seconds_between(a, b) - slow.working_seconds_between(a, b)) < 1e-6
        ), (a, b)
    assert fast.working_seconds_between(start, start.astimezone(TZ)) == 0
