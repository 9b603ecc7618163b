"""Ticket state changes on the live hub: every committed change reaches the browsers of the users allowed to see
the ticket (the roles that see all, the handlers of its departments, the grid workers of its grid), whoever
made it; a refused or rolled-back change and a new ticket are not published; a user may subscribe only to the
topic of their own scope; the ticket pages follow it."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import aiohttp

from agent_console.hub import Event, Owner, Subscription
from agent_console.ticket_feed import ticket_topic
from tests.agent_console.harness import Browser, Console
from tests.agent_console.tickets_support import (
    DEPT_A,
    DEPT_B,
    act,
    dispatched_ticket,
    draft,
    json_of,
)
from tests.conftest import SQLITE_ONLY
from tickets.models import TicketEvent
from tickets.services import Actor, apply, get_ticket

ALL, HANDLER_A, HANDLER_B = "tickets:all", f"tickets:dept:{DEPT_A}", f"tickets:dept:{DEPT_B}"


def audit_event(ticket_id: int, from_state: str, to_state: str) -> TicketEvent:
    return TicketEvent(
        ticket_id=ticket_id,
        at=datetime.now(UTC),
        actor="dispatcher",
        role="dispatcher",
        department=None,
        action="review",
        from_state=from_state,
        to_state=to_state,
    )


def listening(console: Console, *topics: str) -> Subscription:
    sub = console.hub.subscribe(Owner(user_id=0, session_id=0))
    sub.topics.update(topics)
    return sub


def changes(sub: Subscription) -> list[dict[str, Any]]:
    """What ``sub`` has heard so far (without waiting: a change is published when its commit returns)."""
    heard: list[Event] = []
    while not sub.queue.empty():
        event = sub.queue.get_nowait()
        assert event is not None
        heard.append(event)
    return [e.data | {"topic": e.topic} for e in heard]


async def test_each_change_reaches_the_scopes_that_see_the_ticket_and_no_other(
    desk: Console,
) -> None:
    everyone, dept_a, dept_b = (listening(desk, t) for t in (ALL, HANDLER_A, HANDLER_B))
    ticket = await dispatched_ticket(desk)  # filed (not a change), reviewed, dispatched to 城管局
    assert [(c["state"], c["by"]) for c in changes(everyone)] == [
        ("reviewed", "派单员dispatcher"),
        ("dispatched", "派单员dispatcher"),
    ]
    [dispatched] = changes(dept_a)
    assert dispatched == {
        "kind": "ticket",
        "ticket_no": ticket["ticket_no"],
        "state": "dispatched",
        "state_label": "派发",
        "from_state": "reviewed",
        "action": "dispatch",
        "by": "派单员dispatcher",
        "at": dispatched["at"],
        "topic": HANDLER_A,
    }
    handler = await desk.logged_in("handler")
    await act(handler, ticket, "sign")
    assert [c["state_label"] for c in changes(dept_a)] == ["签收"]
    assert changes(dept_b) == []  # another department never hears of it


async def test_a_refused_change_is_not_published_and_one_made_outside_the_console_is(
    desk: Console,
) -> None:
    everyone = listening(desk, ALL)
    agent = await desk.logged_in("agent")
    ticket = await json_of(agent, "POST", "/api/v1/console/tickets", draft(), 201)
    await act(agent, ticket, "sign", status=403)  # refused
    await act(await desk.logged_in("dispatcher"), ticket | {"version": 99}, "review", status=409)
    async with desk.sessionmaker() as db:  # flushed, then rolled back
        row = await get_ticket(db, ticket["ticket_no"])
        db.add(audit_event(row.id, "accepted", "reviewed"))
        await db.flush()
        await db.rollback()
        await get_ticket(db, ticket["ticket_no"])
        await db.commit()  # the session's next transaction does not carry it
    assert changes(everyone) == []
    async with desk.sessionmaker() as db:  # e.g. the call-back bot, with the process's sessionmaker
        row = await get_ticket(db, ticket["ticket_no"])
        await apply(
            db,
            ticket["ticket_no"],
            "review",
            Actor("dispatcher", "dispatcher"),
            expected_version=row.version,
            settings=desk.settings,
        )
    assert [c["state"] for c in changes(everyone)] == ["reviewed"]


@SQLITE_ONLY
async def test_a_user_may_subscribe_only_to_the_ticket_topic_of_their_own_scope(
    desk: Console,
) -> None:
    for role in ("agent", "dispatcher", "leader", "supervisor", "admin"):
        assert ticket_topic(SimpleNamespace(role=role, department=None, grid=None)) == ALL
    handler = SimpleNamespace(role="handler", department=DEPT_A, grid=None)
    grid = SimpleNamespace(role="grid", department=None, grid="东岗街道第三网格")
    orphan = SimpleNamespace(role="handler", department=None, grid=None)
    assert (ticket_topic(handler), ticket_topic(grid), ticket_topic(orphan)) == (
        HANDLER_A,
        "tickets:grid:东岗街道第三网格",
        "",
    )
    hub = desk.hub
    assert hub.may_subscribe(handler, HANDLER_A)  # type: ignore[arg-type]
    for topic in (ALL, HANDLER_B, "tickets:grid:东岗街道第三网格", "tickets"):
        assert not hub.may_subscribe(handler, topic), topic  # type: ignore[arg-type]
    assert not hub.may_subscribe(grid, ALL)  # type: ignore[arg-type]
    ws = await connect(await desk.logged_in("handler_b"))
    await ws.send_json({"type": "subscribe", "topics": [HANDLER_A]})
    assert (await ws.receive_json(timeout=5))["code"] == "console.forbidden_topic"
    await ws.send_json({"type": "subscribe", "topics": [HANDLER_B]})
    assert (await ws.receive_json(timeout=5))["type"] == "subscribed"
    await ws.close()


@SQLITE_ONLY
async def test_the_ticket_pages_follow_the_users_scope(desk: Console) -> None:
    ticket = await dispatched_ticket(desk)
    for name, topic in (("dispatcher", ALL), ("handler", HANDLER_A)):
        b = await desk.logged_in(name)
        for path in (f"/tickets/{ticket['ticket_no']}", "/tickets"):
            page = await (await b.request("GET", path)).text()
            assert f'data-ticket-topic="{topic}"' in page, (name, path)
            assert re.search(r"js/tickets\.js", page), (name, path)
    detail = await (await b.request("GET", f"/tickets/{ticket['ticket_no']}")).text()
    assert f'id="ticket-state" data-ticket="{ticket["ticket_no"]}"' in detail
    assert 'id="ticket-live"' in detail


async def connect(b: Browser) -> aiohttp.ClientWebSocketResponse:
    ws = await b.http.ws_connect(b.url("/ws"))
    assert (await ws.receive_json(timeout=5))["type"] == "hello"
    return ws
