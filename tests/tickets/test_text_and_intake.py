"""Control characters are refused by the ticket domain's schemas on every database, and self-service intake
(tickets.intake) recognises retries only among the submitting phone's own tickets."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.settings_support import SETTINGS
from tests.tickets.loop_support import AGENT, DISPATCHER, MONDAY_10AM, count, event_count, step
from tickets.errors import InvalidInput
from tickets.intake import file_submission
from tickets.models import Ticket
from tickets.schemas import Actor
from tickets.services import create_ticket, ticket_events

CITIZEN = Actor("市民自助提交", "caller")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("content", "垃圾\x00堆积"),
        ("transcript", "喂\x07"),
        ("caller_name", "孙\n女士"),
        ("address", "幸福路\t12号"),
        ("district", "城关区\x7f"),
    ],
)
def test_drafts_refuse_control_characters(draft, field: str, value: str) -> None:
    with pytest.raises(InvalidInput) as err:
        draft(**{field: value})
    assert (err.value.code, err.value.field) == ("ticket.control_character", field)
    assert "控制字符" in err.value.message


async def test_multi_line_fields_keep_line_breaks_and_nothing_else(session, draft) -> None:
    t = await create_ticket(
        session, draft(content="垃圾堆积\r\n\t三天了"), AGENT, now=MONDAY_10AM, settings=SETTINGS
    )
    assert t.content == "垃圾堆积\r\n\t三天了"
    with pytest.raises(InvalidInput) as err:
        await step(session, t, "review", DISPATCHER, note="已\x00审核")
    assert (err.value.code, err.value.field) == ("ticket.control_character", "note")
    t = await step(session, t, "review", DISPATCHER)
    with pytest.raises(InvalidInput) as err:
        await step(session, t, "dispatch", DISPATCHER, lead_department="zjj\x00")
    assert err.value.code == "ticket.control_character"
    assert (await count(session, Ticket), await event_count(session)) == (1, 2)


async def test_a_key_belongs_to_the_phone_that_used_it(session, draft) -> None:
    a = await file_submission(
        session, draft(channel="web"), CITIZEN, key="k", now=MONDAY_10AM, settings=SETTINGS
    )
    b = await file_submission(
        session,
        draft(channel="web", caller_phone="13600001111", content="另一件事"),
        CITIZEN,
        key="k",
        now=MONDAY_10AM,
        settings=SETTINGS,
    )
    assert not a.duplicate and not b.duplicate and a.ticket_no != b.ticket_no
    again = await file_submission(
        session,
        draft(channel="web", caller_phone="136-0000-1111", content="重发"),
        CITIZEN,
        key="k",
        now=MONDAY_10AM + timedelta(hours=1),
        settings=SETTINGS,
    )
    assert (again.ticket_no, again.duplicate) == (b.ticket_no, True)
    created = (await ticket_events(session, a.ticket_no))[0]
    assert (
        created.payload["submission_key"] != "k" and len(created.payload["submission_key"]) == 64
    )  # SHA-256


async def test_the_same_content_lately_is_a_retry_of_that_phone_only(session, draft) -> None:
    a = await file_submission(
        session, draft(channel="web"), CITIZEN, key=None, now=MONDAY_10AM, settings=SETTINGS
    )
    same = await file_submission(
        session,
        draft(channel="web"),
        CITIZEN,
        key=None,
        now=MONDAY_10AM + timedelta(minutes=9),
        settings=SETTINGS,
    )
    other = await file_submission(
        session,
        draft(channel="web", caller_phone="13600001111"),
        CITIZEN,
        key=None,
        now=MONDAY_10AM + timedelta(minutes=9),
        settings=SETTINGS,
    )
    later = await file_submission(
        session,
        draft(channel="web"),
        CITIZEN,
        key=None,
        now=MONDAY_10AM + timedelta(minutes=11),
        settings=SETTINGS,
    )
    assert same.ticket_no == a.ticket_no and same.duplicate
    assert (
        not other.duplicate
        and not later.duplicate
        and len({a.ticket_no, other.ticket_no, later.ticket_no}) == 3
    )


async def test_an_overlong_key_is_refused(session, draft) -> None:
    with pytest.raises(InvalidInput) as err:
        await file_submission(
            session,
            draft(channel="web"),
            CITIZEN,
            key="k" * 129,
            now=MONDAY_10AM,
            settings=SETTINGS,
        )
    assert err.value.code == "ticket.key_too_long"
