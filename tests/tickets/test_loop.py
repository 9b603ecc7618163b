"""The 接诉即办 loop through the services, on SQLite and PostgreSQL: every path writes its audit trail."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.settings_support import SETTINGS
from tests.tickets.loop_support import (
    AGENT,
    CALLER,
    DISPATCHER,
    HANDLER,
    LEADER,
    MONDAY_10AM,
    SYSTEM,
    step,
)
from tickets.services import (
    close_instant,
    create_ticket,
    get_ticket,
    record_callback,
    replay_ticket,
    ticket_events,
)


async def dispatched(session, draft):
    t = await create_ticket(session, draft(), AGENT, now=MONDAY_10AM, settings=SETTINGS)
    t = await step(session, t, "review", DISPATCHER)
    return await step(session, t, "dispatch", DISPATCHER, lead_department="zjj")


async def test_whole_loop_to_closed_with_audit_trail(session, draft) -> None:
    t = await create_ticket(session, draft(), AGENT, now=MONDAY_10AM, settings=SETTINGS)
    assert t.ticket_no == "12345-20250303-00001"
    assert (t.state, t.version, t.deadline_tier) == ("accepted", 1, "5wd")  # 投诉 → 5 个工作日
    assert t.due_at == MONDAY_10AM + timedelta(days=7)  # Monday + 5 working days = next Monday
    t = await step(session, t, "review", DISPATCHER)
    t = await step(
        session,
        t,
        "dispatch",
        DISPATCHER,
        lead_department="zjj",
        co_departments=["hbj"],
        mode="joint",
    )
    assert (t.lead_department, t.co_department_codes, t.dispatch_mode) == ("zjj", ["hbj"], "joint")
    assert t.sign_for_due == MONDAY_10AM + timedelta(hours=1)
    for action in ("sign", "start"):
        t = await step(session, t, action, HANDLER)
    t = await step(session, t, "reply", HANDLER, reply="已协调环卫清运完毕")
    t = await step(session, t, "verify", DISPATCHER)
    assert t.state == "verified"
    t = await record_callback(
        session, t.ticket_no, "basically_satisfied", SYSTEM, now=MONDAY_10AM, settings=SETTINGS
    )
    assert (t.state, t.satisfaction, t.callback_attempts, t.version) == (
        "closed",
        "basically_satisfied",
        1,
        8,
    )
    assert t.closed_at == MONDAY_10AM

    events = await ticket_events(session, t.ticket_no)
    assert [(e.action, e.from_state, e.to_state) for e in events] == [
        ("create", None, "accepted"),
        ("review", "accepted", "reviewed"),
        ("dispatch", "reviewed", "dispatched"),
        ("sign", "dispatched", "signed"),
        ("start", "signed", "in_progress"),
        ("reply", "in_progress", "replied"),
        ("verify", "replied", "verified"),
        ("callback_close", "verified", "closed"),
    ]
    assert [(e.actor, e.role) for e in events][:4] == [
        ("王话务", "agent"),
        ("李派单", "dispatcher"),
        ("李派单", "dispatcher"),
        ("张承办", "handler"),
    ]
    assert events[3].department == "zjj" and events[2].payload["co_departments"] == ["hbj"]
    assert all(e.at == MONDAY_10AM for e in events)
    assert await replay_ticket(session, t.ticket_no) == "closed"


async def test_instant_answer_closes_at_intake(session, draft) -> None:
    t = await close_instant(
        session,
        draft(kind="咨询"),
        "医保报销请携带身份证到区医保中心办理",
        AGENT,
        now=MONDAY_10AM,
        settings=SETTINGS,
    )
    assert (t.state, t.answer, t.closed_at) == (
        "closed",
        "医保报销请携带身份证到区医保中心办理",
        MONDAY_10AM,
    )
    events = await ticket_events(session, t.ticket_no)
    assert [(e.action, e.to_state) for e in events] == [
        ("create", "accepted"),
        ("close_instant", "closed"),
    ]
    assert events[1].payload == {"answer": "医保报销请携带身份证到区医保中心办理"}


async def test_return_goes_back_to_dispatcher_for_redispatch(session, draft) -> None:
    t = await dispatched(session, draft)
    t = await step(session, t, "return", HANDLER, note="不属于本单位职责，应由城管局处理")
    assert (t.state, t.lead_department, t.return_count, t.sign_for_due) == (
        "reviewed",
        None,
        1,
        None,
    )
    t = await step(session, t, "dispatch", DISPATCHER, lead_department="cgj")
    assert (t.state, t.lead_department) == ("dispatched", "cgj")
    ret = (await ticket_events(session, t.ticket_no))[-2]
    assert (ret.action, ret.note, ret.payload["department"]) == (
        "return",
        "不属于本单位职责，应由城管局处理",
        "zjj",
    )


async def test_extension_approved_moves_due_and_counts(session, draft) -> None:
    t = await step(session, await dispatched(session, draft), "sign", HANDLER)
    old_due, wanted = t.due_at, t.due_at + timedelta(days=7)
    t = await step(session, t, "request_extension", HANDLER, note="需协调产权单位", until=wanted)
    assert (t.due_at, t.extension_requested_until, t.is_extended) == (old_due, wanted, False)
    t = await step(session, t, "approve_extension", LEADER)
    assert (t.due_at, t.extension_count, t.is_extended, t.extension_requested_until) == (
        wanted,
        1,
        True,
        None,
    )
    assert t.state == "signed"
    last = (await ticket_events(session, t.ticket_no))[-1]
    assert (last.action, last.from_state, last.to_state) == (
        "approve_extension",
        "signed",
        "signed",
    )
    assert last.role == "leader"
    assert last.payload["new_due_at"] == wanted.isoformat()


async def test_extension_rejected_keeps_due(session, draft) -> None:
    t = await step(session, await dispatched(session, draft), "sign", HANDLER)
    old_due = t.due_at
    t = await step(
        session,
        t,
        "request_extension",
        HANDLER,
        note="需要更多时间",
        until=old_due + timedelta(days=3),
    )
    t = await step(session, t, "reject_extension", DISPATCHER, note="时限内可办结")
    assert (t.due_at, t.extension_count, t.extension_requested_until) == (old_due, 0, None)


async def test_unsatisfied_callback_redispatches_to_same_department(session, draft) -> None:
    t = await step(session, await dispatched(session, draft), "sign", HANDLER)
    t = await step(session, t, "reply", HANDLER, reply="已处理")
    t = await step(session, t, "verify", DISPATCHER)
    later = MONDAY_10AM + timedelta(days=1)
    t = await record_callback(
        session, t.ticket_no, "unsatisfied", SYSTEM, now=later, settings=SETTINGS
    )
    assert (t.state, t.lead_department, t.redispatch_count, t.reply, t.signed_at) == (
        "dispatched",
        "zjj",
        1,
        None,
        None,
    )
    assert t.sign_for_due == later + timedelta(hours=1) and t.due_at == later + timedelta(days=7)
    last = (await ticket_events(session, t.ticket_no))[-1]
    assert (last.action, last.from_state, last.to_state, last.payload["previous_reply"]) == (
        "callback_redispatch",
        "verified",
        "dispatched",
        "已处理",
    )
    # the same department works it again and the caller is satisfied this time
    t = await step(session, t, "sign", HANDLER)
    t = await step(session, t, "reply", HANDLER, reply="已彻底清理并加派保洁")
    t = await step(session, t, "verify", DISPATCHER)
    t = await record_callback(session, t.ticket_no, "satisfied", SYSTEM, settings=SETTINGS)
    assert (t.state, t.satisfaction, t.redispatch_count) == ("closed", "satisfied", 1)


async def test_failed_verification_redispatches(session, draft) -> None:
    t = await step(session, await dispatched(session, draft), "sign", HANDLER)
    t = await step(session, t, "reply", HANDLER, reply="已处理")
    t = await step(session, t, "reject_reply", DISPATCHER, note="反馈内容未回应诉求")
    assert (t.state, t.redispatch_count, t.lead_department) == ("dispatched", 1, "zjj")


async def test_unreachable_callback_retries_then_closes(session, draft, settings) -> None:
    t = await step(session, await dispatched(session, draft), "sign", HANDLER)
    t = await step(session, t, "reply", HANDLER, reply="已处理")
    t = await step(session, t, "verify", DISPATCHER)
    for attempt in range(1, settings.callback.max_attempts):
        t = await record_callback(session, t.ticket_no, "unreachable", SYSTEM, settings=settings)
        assert (t.state, t.callback_attempts) == ("callback", attempt)
    t = await record_callback(session, t.ticket_no, "unreachable", SYSTEM, settings=settings)
    assert (t.state, t.satisfaction, t.callback_attempts) == (
        "closed",
        "unreachable",
        settings.callback.max_attempts,
    )


async def test_caller_withdraws_open_ticket(session, draft) -> None:
    t = await dispatched(session, draft)
    t = await step(session, t, "withdraw", CALLER, note="问题已自行解决")
    assert t.state == "withdrawn"
    assert (await get_ticket(session, t.ticket_no)).state == "withdrawn"
    assert await replay_ticket(session, t.ticket_no) == "withdrawn"


async def test_audit_events_cannot_be_changed_or_deleted(session, draft) -> None:
    no = (
        await create_ticket(session, draft(), AGENT, now=MONDAY_10AM, settings=SETTINGS)
    ).ticket_no
    (created,) = await ticket_events(session, no)
    created.note = "篡改"
    with pytest.raises(RuntimeError, match="immutable"):
        await session.commit()
    await session.rollback()
    await session.delete((await ticket_events(session, no))[0])
    with pytest.raises(RuntimeError, match="immutable"):
        await session.commit()
    await session.rollback()
    assert [e.note for e in await ticket_events(session, no)] == [""]
