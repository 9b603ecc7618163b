"""Intake (受理) as the callers use it: the new ticket is complete, stored once, and works on in the same session."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event, select

from tests.settings_support import SETTINGS
from tests.tickets.loop_support import (
    AGENT,
    DISPATCHER,
    GARBAGE,
    GARBAGE_AGAIN,
    MONDAY_10AM,
    count,
    step,
)
from tickets.models import Ticket, TicketEvent, TicketRepeat
from tickets.services import create_ticket, get_ticket, replay_ticket, ticket_events


async def test_new_ticket_is_stored_once_with_its_event_and_links_and_works_on(
    session, draft
) -> None:
    first = await create_ticket(
        session, draft(content=GARBAGE), AGENT, now=MONDAY_10AM, settings=SETTINGS
    )
    again = await create_ticket(
        session,
        draft(content=GARBAGE_AGAIN),
        AGENT,
        now=MONDAY_10AM + timedelta(hours=1),
        settings=SETTINGS,
    )
    # everything the console shows is there without another query
    assert (again.version, again.state, again.is_repeat, again.repeat_of) == (
        1,
        "accepted",
        True,
        [first.id],
    )
    assert (again.co_department_codes, again.closed_at, again.rolled_up) == ([], None, False)
    assert again.due_at is not None and again.created_at == MONDAY_10AM + timedelta(hours=1)
    reviewed = await step(session, again, "review", DISPATCHER)  # same session, same object
    assert (reviewed.version, reviewed.state) == (2, "reviewed")
    stored = await get_ticket(session, again.ticket_no)
    assert (stored.version, stored.state, stored.repeat_of) == (2, "reviewed", [first.id])
    assert [e.action for e in await ticket_events(session, again.ticket_no)] == ["create", "review"]
    assert (await ticket_events(session, again.ticket_no))[0].payload == {
        "channel": "phone",
        "repeat_of": [first.id],
    }
    assert await replay_ticket(session, again.ticket_no) == "reviewed"
    assert await count(session, Ticket) == 2 and await count(session, TicketEvent) == 3
    assert (
        await session.execute(select(TicketRepeat.ticket_id, TicketRepeat.earlier_id))
    ).all() == [(again.id, first.id)]


async def test_intake_on_postgresql_takes_two_statements(engine, session, draft) -> None:
    """PostgreSQL: the number with the repeat candidates, then the ticket with its event and links; SQLite: the
    in-transaction path (number, candidates, ticket, links, event)."""
    seen: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(statement.split()[0])

    first = await create_ticket(
        session, draft(content=GARBAGE), AGENT, now=MONDAY_10AM, settings=SETTINGS
    )
    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        await create_ticket(
            session,
            draft(content=GARBAGE_AGAIN),
            AGENT,
            now=MONDAY_10AM + timedelta(hours=1),
            settings=SETTINGS,
        )
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    if engine.dialect.name == "postgresql":
        assert seen == ["WITH", "WITH"]
    else:
        assert len(seen) >= 5
    assert (await get_ticket(session, first.ticket_no)).is_repeat is False
