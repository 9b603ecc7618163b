"""What the services refuse: illegal transitions, wrong roles, bad input — each with a stable code, nothing written."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.settings_support import SETTINGS
from tests.tickets.loop_support import (
    AGENT,
    CALLER,
    DISPATCHER,
    HANDLER,
    MONDAY_10AM,
    OTHER_HANDLER,
    SYSTEM,
    count,
    event_count,
    step,
)
from tickets.errors import Forbidden, IllegalTransition, InvalidInput, NotFound, TicketError
from tickets.models import Department, Ticket, TicketCounter
from tickets.services import (
    Actor,
    apply,
    close_instant,
    create_ticket,
    get_ticket,
    record_callback,
    upsert_departments,
)


async def assert_unchanged(session, ticket_no: str, version: int, state: str, events: int) -> None:
    t = await get_ticket(session, ticket_no)
    assert (t.version, t.state) == (version, state)
    assert await event_count(session) == events


@pytest.mark.parametrize(
    ("action", "actor", "code"),
    [
        ("sign", HANDLER, "ticket.illegal_transition"),  # not dispatched yet
        ("reply", HANDLER, "ticket.illegal_transition"),
        ("dispatch", DISPATCHER, "ticket.illegal_transition"),  # must be reviewed first
        ("verify", DISPATCHER, "ticket.illegal_transition"),
        ("close_instant", DISPATCHER, "ticket.role_forbidden"),
        ("review", HANDLER, "ticket.role_forbidden"),
        ("review", AGENT, "ticket.role_forbidden"),
        ("withdraw", HANDLER, "ticket.role_forbidden"),
        ("callback_close", CALLER, "ticket.role_forbidden"),
        ("fly_away", DISPATCHER, "ticket.unknown_action"),
    ],
)
async def test_refused_action_on_new_ticket_changes_nothing(
    session, draft, action, actor, code
) -> None:
    t = await create_ticket(session, draft(), AGENT, now=MONDAY_10AM, settings=SETTINGS)
    with pytest.raises(TicketError) as err:
        await step(session, t, action, actor, lead_department="zjj", reply="x", answer="x")
    assert err.value.code == code and err.value.message
    await assert_unchanged(session, t.ticket_no, 1, "accepted", 1)


async def test_handler_of_other_department_is_forbidden(session, draft) -> None:
    t = await create_ticket(session, draft(), AGENT, now=MONDAY_10AM, settings=SETTINGS)
    t = await step(session, t, "review", DISPATCHER)
    t = await step(session, t, "dispatch", DISPATCHER, lead_department="zjj")
    for action in ("sign", "return"):
        with pytest.raises(Forbidden) as err:
            await step(session, t, action, OTHER_HANDLER, note="不是我们的")
        assert err.value.code == "ticket.not_own_department"
        assert "本单位" in err.value.message
    with pytest.raises(Forbidden):
        await step(session, t, "sign", Actor("无单位", "handler"))
    await assert_unchanged(session, t.ticket_no, 3, "dispatched", 3)


async def test_closed_ticket_accepts_nothing(session, draft) -> None:
    t = await close_instant(
        session, draft(), "已当场答复", AGENT, now=MONDAY_10AM, settings=SETTINGS
    )
    for action, actor in (("withdraw", CALLER), ("review", DISPATCHER), ("callback_retry", SYSTEM)):
        with pytest.raises(IllegalTransition) as err:
            await step(session, t, action, actor)
        assert "办结" in err.value.message
    with pytest.raises(IllegalTransition):
        await record_callback(session, t.ticket_no, "satisfied", SYSTEM, settings=SETTINGS)
    await assert_unchanged(session, t.ticket_no, 2, "closed", 2)


async def test_action_fields_are_checked(session, draft) -> None:
    t = await create_ticket(session, draft(), AGENT, now=MONDAY_10AM, settings=SETTINGS)
    t = await step(session, t, "review", DISPATCHER)
    cases = [
        ({"lead_department": "nope"}, "ticket.unknown_department"),
        (
            {"lead_department": "zjj", "co_departments": ["ghost"], "mode": "joint"},
            "ticket.unknown_department",
        ),
        (
            {"lead_department": "zjj", "co_departments": ["hbj"]},
            "ticket.dispatch_mode",
        ),  # direct with co
        ({"lead_department": "zjj", "mode": "joint"}, "ticket.dispatch_mode"),  # joint without co
        (
            {"lead_department": "zjj", "co_departments": ["zjj"], "mode": "joint"},
            "ticket.duplicate_department",
        ),
        ({"lead_department": "zjj", "mode": "triple"}, "ticket.invalid_choice"),
        ({"lead_department": "zjj", "colour": "red"}, "ticket.unknown_field"),
        ({}, "ticket.missing_field"),
        ({"lead_department": "zjj", "note": "x" * 1001}, "ticket.too_long"),
    ]
    for fields, code in cases:
        with pytest.raises(InvalidInput) as err:
            await step(session, t, "dispatch", DISPATCHER, **fields)
        assert err.value.code == code, fields
    await assert_unchanged(session, t.ticket_no, 2, "reviewed", 2)

    t = await step(session, t, "dispatch", DISPATCHER, lead_department="zjj")
    with pytest.raises(InvalidInput, match="退回须填写原因"):
        await step(session, t, "return", HANDLER)
    t = await step(session, t, "sign", HANDLER)
    with pytest.raises(IllegalTransition) as err:
        await step(session, t, "approve_extension", DISPATCHER)
    assert err.value.code == "ticket.no_extension_request"
    with pytest.raises(InvalidInput) as err:
        await step(
            session,
            t,
            "request_extension",
            HANDLER,
            note="需要时间",
            until=t.due_at - timedelta(hours=1),
        )
    assert err.value.code == "ticket.invalid_extension"
    with pytest.raises(InvalidInput) as err:
        await step(session, t, "reply", HANDLER, reply="办" * 4001)
    assert err.value.code == "ticket.too_long" and "4000" in err.value.message
    await assert_unchanged(session, t.ticket_no, 4, "signed", 4)


async def test_deactivated_department_cannot_be_dispatched_to(session, draft) -> None:
    dept = await session.get(Department, "cgj")
    dept.active = False
    await session.commit()
    t = await create_ticket(session, draft(), AGENT, now=MONDAY_10AM, settings=SETTINGS)
    t = await step(session, t, "review", DISPATCHER)
    with pytest.raises(InvalidInput, match="cgj"):
        await step(session, t, "dispatch", DISPATCHER, lead_department="cgj")


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"content": "诉" * 4001}, "ticket.too_long", "content"),
        ({"caller_name": "名" * 51}, "ticket.too_long", "caller_name"),
        ({"address": "址" * 201}, "ticket.too_long", "address"),
        ({"district": "区" * 51}, "ticket.too_long", "district"),
        ({"transcript": "转" * 20001}, "ticket.too_long", "transcript"),
        ({"content": "   "}, "ticket.missing_field", "content"),
        ({"caller_phone": "12345"}, "ticket.invalid_phone", "caller_phone"),
        ({"category": "外星人入侵"}, "ticket.unknown_category", "category"),
        ({"category": "住房安居/外星人"}, "ticket.unknown_category", "category"),
        ({"kind": "闲聊"}, "ticket.invalid_choice", "kind"),
        ({"urgency": "asap"}, "ticket.invalid_choice", "urgency"),
        ({"channel": "fax"}, "ticket.invalid_choice", "channel"),
    ],
)
def test_bad_draft_is_refused_with_chinese_message(draft, overrides, code, field) -> None:
    with pytest.raises(InvalidInput) as err:
        draft(**overrides)
    assert (err.value.code, err.value.field) == (code, field)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in err.value.message)


async def test_refused_intake_writes_no_rows(session, draft) -> None:
    with pytest.raises(InvalidInput):
        await create_ticket(
            session, draft(), Actor("名" * 51, "agent"), now=MONDAY_10AM, settings=SETTINGS
        )
    with pytest.raises(Forbidden):
        await create_ticket(
            session, draft(), Actor("承办人", "handler", "zjj"), now=MONDAY_10AM, settings=SETTINGS
        )
    with pytest.raises(InvalidInput):
        await close_instant(
            session, draft(), "", AGENT, now=MONDAY_10AM, settings=SETTINGS
        )  # empty answer
    with pytest.raises(InvalidInput):
        await close_instant(
            session, draft(), "答" * 4001, AGENT, now=MONDAY_10AM, settings=SETTINGS
        )
    assert (
        await count(session, Ticket),
        await count(session, TicketCounter),
        await event_count(session),
    ) == (0, 0, 0)
    t = await create_ticket(session, draft(), AGENT, now=MONDAY_10AM, settings=SETTINGS)
    assert t.ticket_no.endswith("-00001")  # the refused attempts consumed no number


async def test_unknown_ticket_and_bad_callback_result(session) -> None:
    with pytest.raises(NotFound) as err:
        await apply(
            session,
            "12345-20250303-99999",
            "review",
            DISPATCHER,
            expected_version=1,
            settings=SETTINGS,
        )
    assert err.value.code == "ticket.not_found"
    with pytest.raises(InvalidInput):
        await record_callback(session, "12345-20250303-99999", "meh", SYSTEM, settings=SETTINGS)


async def test_bad_department_rows_are_refused(session) -> None:
    with pytest.raises(InvalidInput):
        await upsert_departments(session, [("x" * 33, "太长的编码")])
    assert await count(session, Department) == 3
