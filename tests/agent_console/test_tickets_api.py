"""The staff ticket API: the whole loop by role, optimistic locking, bad input, department scope, masking, audit."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from agent_console.app import FEATURES
from agent_console.models import AuditEntry
from agent_console.roles import Role
from agent_console.routing import RouteRegistry
from tests.agent_console.harness import Console
from tests.agent_console.tickets_support import (
    DEPT_A,
    DEPT_B,
    PHONE,
    act,
    dispatched_ticket,
    draft,
    json_of,
)
from tickets.models import Ticket, TicketEvent


async def count(console: Console, model: type) -> int:
    async with console.sessionmaker() as db:
        return (await db.execute(select(func.count()).select_from(model))).scalar_one()


async def test_the_loop_from_intake_to_close_by_each_role(desk: Console) -> None:
    agent, dispatcher = await desk.logged_in("agent"), await desk.logged_in("dispatcher")
    handler = await desk.logged_in("handler")
    t = await json_of(agent, "POST", "/api/v1/console/tickets", draft(), 201)
    assert re.fullmatch(r"12345-\d{8}-\d{5}", t["ticket_no"]) and t["state"] == "accepted"
    assert t["caller_phone"] == PHONE  # an agent calls back: full number
    t = await act(dispatcher, t, "review")
    t = await act(dispatcher, t, "dispatch", lead_department=DEPT_A, mode="direct")
    assert t["state"] == "dispatched" and t["sign_for_due"] is not None
    t = await json_of(handler, "GET", f"/api/v1/console/tickets/{t['ticket_no']}")
    assert t["caller_phone"] == "138****5678"  # a department sees the number masked
    assert [a["action"] for a in t["actions"]] == ["return", "sign"]
    t = await act(handler, t, "sign")
    t = await act(handler, t, "start")
    t = await act(handler, t, "reply", reply="已安排环卫人员清运，并增加清运频次。")
    t = await act(dispatcher, t, "verify")
    assert t["state"] == "verified"
    t = await json_of(
        agent,
        "POST",
        f"/api/v1/console/callbacks/{t['ticket_no']}/result",
        {"result": "satisfied", "expected_version": t["version"]},
    )
    assert t["state"] == "closed" and t["satisfaction"] == "satisfied"
    assert [e["action"] for e in t["events"]] == [
        "create",
        "review",
        "dispatch",
        "sign",
        "start",
        "reply",
        "verify",
        "callback_close",
    ]
    assert t["events"][3]["actor"] == "承办人handler" and t["events"][3]["role_label"] == "承办人"


async def test_instant_answer_closes_at_intake(desk: Console) -> None:
    agent = await desk.logged_in("agent")
    t = await json_of(
        agent,
        "POST",
        "/api/v1/console/tickets",
        draft(kind="咨询", answer="社保卡补办请携带身份证到就近社保网点办理。"),
        201,
    )
    assert t["state"] == "closed" and t["answer"].startswith("社保卡补办")
    assert [e["action"] for e in t["events"]] == ["create", "close_instant"]


async def test_stale_version_is_a_conflict_and_changes_nothing(desk: Console) -> None:
    agent, dispatcher = await desk.logged_in("agent"), await desk.logged_in("dispatcher")
    t = await json_of(agent, "POST", "/api/v1/console/tickets", draft(), 201)
    fresh = await act(dispatcher, t, "review")
    events = await count(desk, TicketEvent)
    body = await act(
        dispatcher, t, "withdraw", status=409, note="重复"
    )  # t still holds the old version
    assert body["error"]["code"] == "ticket.version_conflict" and "刷新" in body["error"]["message"]
    now = await json_of(dispatcher, "GET", f"/api/v1/console/tickets/{t['ticket_no']}")
    assert now["state"] == "reviewed" and now["version"] == fresh["version"]
    assert await count(desk, TicketEvent) == events


async def test_over_long_or_bad_fields_are_422_naming_the_field_and_write_nothing(
    desk: Console,
) -> None:
    agent, dispatcher = await desk.logged_in("agent"), await desk.logged_in("dispatcher")
    for body, field in (
        (draft(content="长" * 4001), "content"),
        (draft(address="址" * 201), "address"),
        (draft(caller_phone="12345abc"), "caller_phone"),
        (draft(category="不存在的分类"), "category"),
    ):
        resp = await agent.write("POST", "/api/v1/console/tickets", body)
        assert resp.status == 422, await resp.text()
        assert field in {d["field"] for d in (await resp.json())["error"]["details"]}
    assert await count(desk, Ticket) == 0
    t = await json_of(agent, "POST", "/api/v1/console/tickets", draft(), 201)
    t = await act(dispatcher, t, "review")
    body = await act(
        dispatcher, t, "dispatch", status=422, lead_department=DEPT_A, note="注" * 1001
    )
    assert body["error"]["details"][0]["field"] == "note"
    body = await act(dispatcher, t, "dispatch", status=422, lead_department="不存在的单位")
    assert body["error"]["details"][0]["field"] == "lead_department"
    now = await json_of(dispatcher, "GET", f"/api/v1/console/tickets/{t['ticket_no']}")
    assert now["state"] == "reviewed" and now["version"] == t["version"]


async def test_a_handler_never_sees_another_departments_ticket_on_any_route(desk: Console) -> None:
    theirs = await dispatched_ticket(desk, DEPT_A)
    mine = await dispatched_ticket(desk, DEPT_B, content="小区电梯经常停运，物业不维修")
    other = await desk.logged_in("handler_b")
    routes = [
        r
        for r in RouteRegistry.of(FEATURES).routes
        if "{ticket_no}" in r.path and not r.public and r.allows(Role.HANDLER)
    ]
    assert len(routes) >= 6
    for route in routes:
        path = route.path.replace("{ticket_no}", theirs["ticket_no"]).replace(
            "{attachment_id}", "1"
        )
        kw: dict = {}
        if route.method != "GET":
            kw = {"headers": {"X-CSRF-Token": await other.csrf()}}
            kw["json" if route.kind == "api" else "data"] = {
                "action": "sign",
                "expected_version": theirs["version"],
            }
        resp = await other.request(route.method, path, **kw)
        assert resp.status == 404, f"{route.method} {path}: {resp.status}"
        text = await resp.text()
        assert "幸福小区" not in text and "5678" not in text  # nothing of the ticket leaks
    listed = await json_of(other, "GET", "/api/v1/console/tickets")
    assert [t["ticket_no"] for t in listed["tickets"]] == [mine["ticket_no"]]
    asked = await json_of(other, "GET", f"/api/v1/console/tickets?department={DEPT_A}")
    assert [t["ticket_no"] for t in asked["tickets"]] == [mine["ticket_no"]]  # own scope wins
    dispatcher = await desk.logged_in("dispatcher")
    unchanged = await json_of(dispatcher, "GET", f"/api/v1/console/tickets/{theirs['ticket_no']}")
    assert unchanged["state"] == "dispatched" and unchanged["version"] == theirs["version"]


async def test_a_grid_worker_files_and_follows_only_its_own_grids_tickets(desk: Console) -> None:
    """网格员: the ticket it files records its grid; it lists and opens that grid's tickets and nothing else (404
    on every ticket route, as for a ticket that does not exist); the loop's actions are not its."""
    await desk.add_user("grid_b", Role.GRID, grid="拱星墩街道第一网格")
    grid, grid_b, agent = [await desk.logged_in(u) for u in ("grid", "grid_b", "agent")]
    mine = await json_of(
        grid,
        "POST",
        "/api/v1/console/tickets",
        draft(channel="grid", content="东岗街道幸福小区井盖缺失"),
        status=201,
    )
    theirs = await json_of(
        grid_b, "POST", "/api/v1/console/tickets", draft(channel="grid"), status=201
    )
    by_phone = await json_of(agent, "POST", "/api/v1/console/tickets", draft(), status=201)
    assert mine["grid"] == "东岗街道第三网格"  # the worker's own grid
    assert (theirs["grid"], by_phone["grid"]) == ("拱星墩街道第一网格", None)
    listed = await json_of(grid, "GET", "/api/v1/console/tickets")
    assert [t["ticket_no"] for t in listed["tickets"]] == [mine["ticket_no"]]
    assert listed["tickets"][0]["caller_phone"] == "138****5678"
    assert (await json_of(grid, "GET", f"/api/v1/console/tickets/{mine['ticket_no']}"))[
        "state"
    ] == "accepted"
    routes = [
        r
        for r in RouteRegistry.of(FEATURES).routes
        if "{ticket_no}" in r.path and not r.public and r.allows(Role.GRID)
    ]
    assert len(routes) >= 4
    for other in (theirs, by_phone):
        for route in routes:
            path = route.path.replace("{ticket_no}", other["ticket_no"]).replace(
                "{attachment_id}", "1"
            )
            kw: dict = {}
            if route.method != "GET":
                kw = {"headers": {"X-CSRF-Token": await grid.csrf()}}
                kw["json" if route.kind == "api" else "data"] = {
                    "action": "review",
                    "expected_version": other["version"],
                }
            resp = await grid.request(route.method, path, **kw)
            assert resp.status == 404, f"{route.method} {path}: {resp.status}"
            assert "幸福小区" not in await resp.text()
    await act(grid, mine, "review", status=403)
    dispatcher = await desk.logged_in("dispatcher")
    assert (await json_of(dispatcher, "GET", f"/api/v1/console/tickets/{mine['ticket_no']}"))[
        "version"
    ] == 1


async def test_views_of_a_ticket_are_audited(desk: Console) -> None:
    t = await dispatched_ticket(desk)
    leader = await desk.logged_in("leader")
    await json_of(leader, "GET", f"/api/v1/console/tickets/{t['ticket_no']}")
    page = await leader.request("GET", f"/tickets/{t['ticket_no']}")
    assert page.status == 200
    async with desk.sessionmaker() as db:
        rows = (
            (await db.execute(select(AuditEntry).where(AuditEntry.action == "ticket.view")))
            .scalars()
            .all()
        )
    assert [(r.actor, r.target) for r in rows] == [("leader", t["ticket_no"])] * 2


async def test_search_filters_and_warning_free_lists(desk: Console) -> None:
    agent = await desk.logged_in("agent")
    await json_of(agent, "POST", "/api/v1/console/tickets", draft(), 201)
    await json_of(
        agent,
        "POST",
        "/api/v1/console/tickets",
        draft(caller_phone="13900001111", content="路灯不亮"),
        201,
    )
    by_text = await json_of(agent, "GET", "/api/v1/console/tickets?text=路灯")
    assert [t["summary"] for t in by_text["tickets"]] == ["路灯不亮"]
    by_phone = await json_of(agent, "GET", f"/api/v1/console/tickets?phone={PHONE}&state=accepted")
    assert len(by_phone["tickets"]) == 1 and by_phone["tickets"][0]["warning"] is None
    bad = await agent.request("GET", "/api/v1/console/tickets?limit=1000")
    assert bad.status == 422


async def test_extension_return_and_supervision(desk: Console) -> None:
    t = await dispatched_ticket(desk)
    handler, dispatcher = await desk.logged_in("handler"), await desk.logged_in("dispatcher")
    t = await act(handler, t, "sign")
    body = await act(handler, t, "request_extension", status=422, until="2099-01-01T18:00:00+08:00")
    assert body["error"]["details"][0]["field"] == "note"  # a reason is required
    t = await act(
        handler, t, "request_extension", until="2099-01-01T18:00:00+08:00", note="需协调多个部门"
    )
    assert t["extension_requested_until"] is not None
    seen = await json_of(dispatcher, "GET", f"/api/v1/console/tickets/{t['ticket_no']}")
    assert {"approve_extension", "reject_extension"} <= {a["action"] for a in seen["actions"]}
    t = await act(dispatcher, seen, "approve_extension")
    assert t["due_at"].startswith("2099-01-01")
    t = await json_of(
        dispatcher,
        "POST",
        f"/api/v1/console/tickets/{t['ticket_no']}/supervise",
        {"note": "请加快办理"},
    )
    assert t["events"][-1]["action"] == "supervise" and t["events"][-1]["note"] == "请加快办理"
    t = await act(handler, t, "return", note="不属于本单位职责")
    assert t["state"] == "reviewed" and t["return_count"] == 1
    page = await dispatcher.request("GET", "/dispatch")
    html = await page.text()
    assert t["ticket_no"] in html and "退回" in html
