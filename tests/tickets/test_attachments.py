"""Reply attachments (反馈附件): who may attach and when, and reading a ticket's files, audit trail and warnings
from the ticket already loaded (no second read of it)."""

from __future__ import annotations

import pytest
from sqlalchemy import event
from sqlalchemy.exc import InvalidRequestError

from tests.settings_support import SETTINGS
from tests.tickets.loop_support import AGENT, DISPATCHER, HANDLER, MONDAY_10AM, OTHER_HANDLER, step
from tickets.attachments import add_attachment, attachments_of, get_attachment
from tickets.errors import Forbidden, IllegalTransition, NotFound
from tickets.services import create_ticket, get_ticket, ticket_events
from tickets.warnings import warnings_of

SHA = "0" * 64


async def signed(session, draft):
    t = await create_ticket(session, draft(), AGENT, now=MONDAY_10AM, settings=SETTINGS)
    t = await step(session, t, "review", DISPATCHER)
    t = await step(session, t, "dispatch", DISPATCHER, lead_department="zjj")
    return t


async def attach(session, ticket_no, actor=HANDLER, name="现场.png"):
    return await add_attachment(
        session,
        ticket_no,
        actor,
        file_name=name,
        content_type="image/png",
        size=10,
        sha256=SHA,
        now=MONDAY_10AM,
    )


async def test_only_the_lead_department_attaches_and_only_while_working_on_it(
    session, draft
) -> None:
    no = (await signed(session, draft)).ticket_no
    with pytest.raises(IllegalTransition):  # dispatched, not yet signed for
        await attach(session, no)
    await step(session, await get_ticket(session, no), "sign", HANDLER)
    with pytest.raises(Forbidden):
        await attach(session, no, OTHER_HANDLER)
    first = await attach(session, no)
    second = await attach(session, no, name="整改后.png")
    assert [f.file_name for f in await attachments_of(session, no)] == ["现场.png", "整改后.png"]
    assert (await get_attachment(session, no, second.id)).id == second.id
    other = (
        await create_ticket(
            session, draft(caller_phone="13900000002"), AGENT, now=MONDAY_10AM, settings=SETTINGS
        )
    ).ticket_no
    with pytest.raises(NotFound):  # a file of another ticket is not reachable through this one
        await get_attachment(session, other, first.id)
    with pytest.raises(NotFound):
        await attachments_of(session, "12345-20250303-99999")


async def test_a_loaded_ticket_is_not_read_again_for_its_files_events_and_warnings(
    session, draft
) -> None:
    t = await step(session, await signed(session, draft), "sign", HANDLER)
    await attach(session, t.ticket_no)
    ticket = await get_ticket(session, t.ticket_no, repeat_links=False)
    statements: list[str] = []

    def record(conn, cursor, sql, *args) -> None:
        statements.append(sql)

    engine = session.bind.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        files = await attachments_of(session, ticket)
        events = await ticket_events(session, ticket)
        warnings = await warnings_of(session, ticket)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(statements) == 3 and not any("FROM tickets" in s for s in statements)
    assert files == await attachments_of(session, t.ticket_no) and len(files) == 1
    assert events == await ticket_events(session, t.ticket_no)
    assert [e.action for e in events] == ["create", "review", "dispatch", "sign"]
    assert warnings == await warnings_of(session, t.ticket_no) == []


async def test_a_ticket_read_without_its_repeat_links_refuses_to_show_them(session, draft) -> None:
    await create_ticket(session, draft(), AGENT, now=MONDAY_10AM, settings=SETTINGS)
    repeat = await create_ticket(
        session, draft(content="垃圾还是没人清理"), AGENT, now=MONDAY_10AM, settings=SETTINGS
    )
    light = await get_ticket(session, repeat.ticket_no, repeat_links=False)
    assert light.is_repeat
    with pytest.raises(InvalidRequestError):  # never silently empty
        _ = light.repeat_links
    full = await get_ticket(session, repeat.ticket_no)
    assert full is light and len(full.repeat_links) == 1
