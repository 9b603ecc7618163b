"""Which tickets are due for a satisfaction call-back (回访), and when."""

from __future__ import annotations

from datetime import timedelta

from tests.settings_support import SETTINGS
from tests.tickets.loop_support import AGENT, DISPATCHER, HANDLER, MONDAY_10AM, SYSTEM, step
from tickets.services import create_ticket, due_for_callback, record_callback


async def verified(session, draft, phone: str):
    t = await create_ticket(
        session, draft(caller_phone=phone), AGENT, now=MONDAY_10AM, settings=SETTINGS
    )
    t = await step(session, t, "review", DISPATCHER)
    t = await step(session, t, "dispatch", DISPATCHER, lead_department="zjj")
    t = await step(session, t, "sign", HANDLER)
    t = await step(session, t, "reply", HANDLER, reply="已处理")
    return await step(session, t, "verify", DISPATCHER)


async def test_verified_tickets_are_due_only_in_allowed_hours(session, draft, settings) -> None:
    a = await verified(session, draft, "13800000001")
    await create_ticket(
        session, draft(caller_phone="13800000002"), AGENT, now=MONDAY_10AM, settings=settings
    )  # not verified yet
    assert [
        t.ticket_no for t in await due_for_callback(session, MONDAY_10AM, settings=settings)
    ] == [a.ticket_no]
    night = MONDAY_10AM.replace(hour=settings.callback.allowed_end.hour, minute=30)
    assert await due_for_callback(session, night, settings=settings) == []


async def test_unanswered_ticket_is_due_again_after_retry_interval(
    session, draft, settings
) -> None:
    a = await verified(session, draft, "13800000001")
    await record_callback(
        session, a.ticket_no, "unreachable", SYSTEM, now=MONDAY_10AM, settings=settings
    )
    soon = MONDAY_10AM + timedelta(minutes=settings.callback.retry_interval_minutes - 1)
    later = MONDAY_10AM + timedelta(minutes=settings.callback.retry_interval_minutes)
    assert await due_for_callback(session, soon, settings=settings) == []
    assert [t.ticket_no for t in await due_for_callback(session, later, settings=settings)] == [
        a.ticket_no
    ]
    await record_callback(session, a.ticket_no, "satisfied", SYSTEM, now=later, settings=settings)
    assert await due_for_callback(session, later, settings=settings) == []
