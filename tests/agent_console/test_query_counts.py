"""How many SQL statements the busiest ticket requests cost: the detail and the update (审核 through the action
API) read a ticket in a fixed number of queries, whatever its history — so an N+1 cannot come back unnoticed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from tests.agent_console.harness import Browser, Console
from tests.agent_console.tickets_support import DEPT_A, DEPT_B, PNG, act, draft, json_of, upload

# Whole requests, the login-session lookup and the view audit record included. Raise only with a reason.
# the 8th: the ticket's merge links (并单: its main ticket and the tickets merged into it)
DETAIL_QUERIES = 8
UPDATE_QUERIES = 10
SCOPE_CHECK_QUERIES = (
    2  # a department handler's ticket is read (with its co-departments) before acting
)


@contextmanager
def statements(console: Console) -> Iterator[list[str]]:
    """The SQL statements the console's database receives inside the block."""
    engine = console.sessionmaker.kw["bind"].sync_engine
    seen: list[str] = []

    def record(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        seen.append(sql)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def counted(
    console: Console, b: Browser, path: str, body: Any = None
) -> tuple[Any, list[str]]:
    """The JSON answer to a GET (or a POST of ``body``) and the statements it cost (the CSRF token is fetched
    before: a browser already holds it)."""
    headers = {"X-CSRF-Token": await b.csrf()} if body is not None else {}
    with statements(console) as seen:
        resp = await b.request(
            "POST" if body is not None else "GET", path, json=body, headers=headers
        )
    assert resp.status == 200, await resp.text()
    return await resp.json(), list(seen)


def listing(seen: list[str], limit: int) -> str:
    return f"{len(seen)} queries, expected {limit}:\n" + "\n".join(
        " ".join(s.split())[:160] for s in seen
    )


async def test_detail_and_update_cost_a_fixed_number_of_queries_whatever_the_history(
    desk: Console,
) -> None:
    agent, dispatcher = await desk.logged_in("agent"), await desk.logged_in("dispatcher")
    handler = await desk.logged_in("handler")
    fresh = await json_of(agent, "POST", "/api/v1/console/tickets", draft(), 201)
    # a ticket with a history: several events, a co-department (双派), an attachment
    busy = await json_of(
        agent, "POST", "/api/v1/console/tickets", draft(content="夜间施工噪音扰民"), 201
    )
    busy = await act(dispatcher, busy, "review")
    busy = await act(
        dispatcher, busy, "dispatch", lead_department=DEPT_A, co_departments=[DEPT_B], mode="joint"
    )
    busy = await act(handler, busy, "sign")
    assert (await upload(handler, busy["ticket_no"], "现场.png", PNG)).status == 201
    await json_of(
        dispatcher,
        "POST",
        f"/api/v1/console/tickets/{busy['ticket_no']}/supervise",
        {"note": "请加快办理"},
    )
    busy = await json_of(dispatcher, "GET", f"/api/v1/console/tickets/{busy['ticket_no']}")
    assert (
        len(busy["events"]) == 5
        and busy["co_departments"] == [DEPT_B]
        and len(busy["attachments"]) == 1
    )

    for t in (fresh, busy):
        out, seen = await counted(desk, dispatcher, f"/api/v1/console/tickets/{t['ticket_no']}")
        assert out["events"] == t["events"] and out["attachments"] == t["attachments"]
        assert len(seen) == DETAIL_QUERIES, listing(seen, DETAIL_QUERIES)

    out, seen = await counted(
        desk,
        dispatcher,
        f"/api/v1/console/tickets/{fresh['ticket_no']}/actions",
        {"action": "review", "expected_version": fresh["version"]},
    )
    assert out["state"] == "reviewed" and [e["action"] for e in out["events"]] == [
        "create",
        "review",
    ]
    assert len(seen) == UPDATE_QUERIES, listing(seen, UPDATE_QUERIES)
    # built from the ticket in memory, the answer is exactly what reading it back shows (times in UTC included)
    assert out == await json_of(dispatcher, "GET", f"/api/v1/console/tickets/{fresh['ticket_no']}")

    out, seen = await counted(
        desk,
        handler,
        f"/api/v1/console/tickets/{busy['ticket_no']}/actions",
        {"action": "start", "expected_version": busy["version"]},
    )
    assert (
        out["state"] == "in_progress" and len(out["events"]) == 6 and len(out["attachments"]) == 1
    )
    expected = UPDATE_QUERIES + SCOPE_CHECK_QUERIES
    assert len(seen) == expected, listing(seen, expected)
