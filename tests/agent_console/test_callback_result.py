"""A call-back result entered by hand (录入回访结果) applies to the ticket the form showed: a stale form gets 409,
also when the ticket changes between the console's read and the write."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from agent_console.views import callbacks as callback_views
from tests.agent_console.harness import Console
from tests.agent_console.tickets_support import act, desk, dispatched_ticket, json_of  # noqa: F401 - fixture
from tickets.models import Ticket
from tickets.services import Actor, get_ticket, record_callback

SYSTEM = Actor("自动回访", "system")


async def verified(desk: Console) -> dict[str, Any]:  # noqa: F811 - the fixture's name
    t = await dispatched_ticket(desk)
    handler, dispatcher = [await desk.logged_in(u) for u in ("handler", "dispatcher")]
    t = await act(handler, t, "sign")
    t = await act(handler, t, "reply", reply="已处理")
    return await act(dispatcher, t, "verify")


async def test_a_stale_form_is_refused_with_409(desk: Console) -> None:  # noqa: F811
    t = await verified(desk)
    agent = await desk.logged_in("agent")
    path = f"/api/v1/console/callbacks/{t['ticket_no']}/result"
    await json_of(agent, "POST", path, {"result": "unreachable", "expected_version": t["version"]})
    stale = await json_of(
        agent, "POST", path, {"result": "satisfied", "expected_version": t["version"]}, 409
    )
    assert stale["error"]["code"] == "ticket.version_conflict"


async def test_a_change_between_the_read_and_the_write_is_refused_with_409(
    desk: Console,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t = await verified(desk)
    seen = callback_views.visible_ticket

    async def seen_then_changed(call: Any, db: AsyncSession, ticket_no: str) -> Ticket:
        ticket = await seen(
            call, db, ticket_no
        )  # the console has read the ticket at the form's version …
        async with (
            desk.sessionmaker() as other
        ):  # … and the automatic call-back records a result right then
            await record_callback(other, ticket_no, "unreachable", SYSTEM, settings=desk.settings)
        return ticket

    monkeypatch.setattr(callback_views, "visible_ticket", seen_then_changed)
    agent = await desk.logged_in("agent")
    refused = await json_of(
        agent,
        "POST",
        f"/api/v1/console/callbacks/{t['ticket_no']}/result",
        {"result": "satisfied", "expected_version": t["version"]},
        409,
    )
    assert refused["error"]["code"] == "ticket.version_conflict"
    async with desk.sessionmaker() as session:
        ticket = await get_ticket(session, t["ticket_no"])
    assert (ticket.state, ticket.satisfaction, ticket.callback_attempts) == ("callback", None, 1)
