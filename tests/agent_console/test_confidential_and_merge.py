"""保密 and 并单 in the console: every surface × every role for a confidential caller (lists, detail JSON and page,
search by number, the XLSX export, call-backs, the department list, the citizens' API, the screen pop), and the
merge and confidentiality routes (JSON and forms, CSRF, refusals)."""

from __future__ import annotations

from io import BytesIO
from typing import Any

import openpyxl
import pytest

from agent_console.calls import SCREENPOP_RULE, screen_pop_payload
from agent_console.desk.view_models import TICKET_READERS
from agent_console.masking import CONFIDENTIAL_MARK
from agent_console.roles import CONFIDENTIAL_ROLES, Role
from tests.agent_console.harness import Browser, Console
from tests.agent_console.tickets_support import DEPT_A, act, json_of, submit

SECRET_PHONE, SECRET_NAME = "13987654321", "周先生"
SEES = {Role.AGENT, Role.ADMIN}  # the roles that call back (回访)


async def confidential_ticket(desk: Console) -> dict[str, Any]:
    """A confidential ticket filed by the grid worker (so that every role's scope holds it), dispatched to the
    handler's department."""
    grid = await desk.logged_in("grid")
    body = {
        "channel": "grid",
        "caller_phone": SECRET_PHONE,
        "caller_name": SECRET_NAME,
        "district": "城东区",
        "kind": "举报",
        "content": "举报某餐馆后厨卫生很差，请保护举报人信息",
        "confidential": True,
    }
    t = await json_of(grid, "POST", "/api/v1/console/tickets", body, 201)
    dispatcher = await desk.logged_in("dispatcher")
    t = await act(dispatcher, t, "review")
    return await act(dispatcher, t, "dispatch", lead_department=DEPT_A, mode="direct")


def shown(row: dict[str, Any], role: Role) -> None:
    if role in SEES:
        assert (row["caller_phone"], row["caller_name"]) == (SECRET_PHONE, SECRET_NAME), role
    else:
        assert (row["caller_phone"], row["caller_name"]) == (CONFIDENTIAL_MARK,) * 2, role
    assert row["confidential"] is True


async def page_text(b: Browser, path: str) -> str:
    resp = await b.request("GET", path)
    assert resp.status == 200, path
    return await resp.text()


@pytest.mark.parametrize("role", sorted(TICKET_READERS), ids=str)
async def test_a_confidential_caller_is_shown_only_to_the_roles_that_call_back(
    desk: Console, role: Role
) -> None:
    t = await confidential_ticket(desk)
    no, b = t["ticket_no"], await desk.logged_in(role.value)
    listed = await json_of(b, "GET", "/api/v1/console/tickets")
    shown(next(r for r in listed["tickets"] if r["ticket_no"] == no), role)
    shown(await json_of(b, "GET", f"/api/v1/console/tickets/{no}"), role)
    page = await page_text(b, f"/tickets/{no}")
    list_page = await page_text(b, "/tickets")
    if role in SEES:
        assert SECRET_PHONE in page and SECRET_NAME in page and SECRET_PHONE in list_page
    else:
        assert not {SECRET_PHONE, SECRET_NAME} & {*page.split(">"), *list_page.split(">")}
        assert SECRET_PHONE not in page + list_page and SECRET_NAME not in page + list_page
    assert "保密" in page
    # a search by the number finds it only for the roles that may see who called
    found = await json_of(b, "GET", f"/api/v1/console/tickets?phone={SECRET_PHONE}")
    assert [r["ticket_no"] for r in found["tickets"]] == ([no] if role in SEES else [])
    # the export
    async with b.http.get(b.url("/reports/tickets.xlsx")) as resp:
        assert resp.status == 200
        rows = list(
            openpyxl.load_workbook(BytesIO(await resp.read())).active.iter_rows(values_only=True)
        )
    header, row = rows[0], next(r for r in rows if r[0] == no)
    caller = (row[header.index("来电号码")], row[header.index("来电人")])
    assert caller == ((SECRET_PHONE, SECRET_NAME) if role in SEES else (CONFIDENTIAL_MARK,) * 2)


async def test_the_other_lists_follow_the_same_rule(desk: Console) -> None:
    t = await confidential_ticket(desk)
    handler = await desk.logged_in("handler")
    department = await page_text(handler, "/department")
    assert t["ticket_no"] in department and SECRET_PHONE not in department
    assert SECRET_NAME not in department
    dispatcher = await desk.logged_in("dispatcher")
    desk_page = await page_text(dispatcher, "/dispatch")
    assert SECRET_PHONE not in desk_page and SECRET_NAME not in desk_page
    # on the call-back list the dispatcher (who does not ring) sees the mark, the agent the caller
    t = await act(handler, t, "sign")
    t = await act(handler, t, "reply", reply="已查处")
    t = await act(dispatcher, t, "verify")
    for role in (Role.DISPATCHER, Role.AGENT):
        b = await desk.logged_in(role.value)
        rows = (await json_of(b, "GET", "/api/v1/console/callbacks"))["tickets"]
        shown(next(r for r in rows if r["ticket_no"] == t["ticket_no"]), role)


async def test_the_screen_pop_goes_only_to_roles_that_see_confidential_callers(
    desk: Console,
) -> None:
    """The pop names the ringing caller (the agent hears them anyway) and lists earlier tickets without any
    caller's name or number."""
    await confidential_ticket(desk)
    assert SCREENPOP_RULE.roles <= CONFIDENTIAL_ROLES
    async with desk.sessionmaker() as session:
        pop = await screen_pop_payload(session, SECRET_PHONE)
    assert len(pop["earlier"]) == 1 and SECRET_NAME not in str(pop)
    assert SECRET_PHONE not in str(pop["earlier"])


async def test_the_citizens_api_never_answers_with_a_name_or_number(desk: Console) -> None:
    citizen = desk.browser()
    status, out = await submit(
        citizen,
        {
            "channel": "web",
            "caller_phone": SECRET_PHONE,
            "caller_name": SECRET_NAME,
            "content": "举报小区内违规群租",
            "confidential": True,
        },
    )
    assert status == 201
    resp = await citizen.request("GET", f"/api/v1/tickets/{out['ticket_no']}?phone={SECRET_PHONE}")
    text = await resp.text()
    assert resp.status == 200 and SECRET_PHONE not in text and SECRET_NAME not in text
    staff = await json_of(
        await desk.logged_in("leader"), "GET", f"/api/v1/console/tickets/{out['ticket_no']}"
    )
    assert staff["confidential"] is True and staff["caller_phone"] == CONFIDENTIAL_MARK


async def test_confidentiality_is_set_by_callers_roles_and_lifted_by_an_admin_only(
    desk: Console,
) -> None:
    agent = await desk.logged_in("agent")
    t = await json_of(
        agent,
        "POST",
        "/api/v1/console/tickets",
        {"caller_phone": "13811112222", "content": "咨询公积金提取"},
        201,
    )
    assert t["confidential"] is False
    path = f"/api/v1/console/tickets/{t['ticket_no']}/confidential"
    body = {"confidential": True, "expected_version": t["version"], "note": "来电人回电要求保密"}
    handler = await desk.logged_in("leader")
    assert (await handler.write("POST", path, body)).status == 403
    no_csrf = await agent.request("POST", path, json=body)
    assert no_csrf.status == 403
    t = await json_of(agent, "POST", path, body)
    assert t["confidential"] is True and t["events"][-1]["action"] == "confidential"
    assert t["events"][-1]["action_label"] == "保密设置"
    lift = {"confidential": False, "expected_version": t["version"]}
    refused = await json_of(agent, "POST", path, lift, 403)
    assert refused["error"]["code"] == "ticket.role_forbidden"
    stale = await json_of(
        await desk.logged_in("admin"), "POST", path, body | {"confidential": False}, 409
    )
    assert stale["error"]["code"] == "ticket.version_conflict"
    t = await json_of(await desk.logged_in("admin"), "POST", path, lift)
    assert t["confidential"] is False
    # the page's form
    admin = await desk.logged_in("admin")
    form = {
        "csrf_token": await admin.csrf(),
        "confidential": "on",
        "expected_version": str(t["version"]),
    }
    page = f"/tickets/{t['ticket_no']}/confidential"
    garbled = await admin.request("POST", page, data=form | {"note": "保密\x00\x1b"})
    assert garbled.status == 422  # a control character in the note: refused, not a server error
    resp = await admin.request("POST", page, data=form, allow_redirects=False)
    assert resp.status == 303
    assert (await json_of(admin, "GET", f"/api/v1/console/tickets/{t['ticket_no']}"))[
        "confidential"
    ]


async def filed(b: Browser, phone: str) -> dict[str, Any]:
    body = {
        "caller_phone": phone,
        "district": "城东区",
        "kind": "投诉",
        "content": "幸福小区门口垃圾堆积好几天没人清理，臭味很大",
    }
    return await json_of(b, "POST", "/api/v1/console/tickets", body, 201)


async def test_merge_through_the_api_lists_links_and_candidates(desk: Console) -> None:
    agent, dispatcher = await desk.logged_in("agent"), await desk.logged_in("dispatcher")
    main, dup, other = [
        await filed(agent, p) for p in ("13811110001", "13811110002", "13811110003")
    ]
    no = main["ticket_no"]
    candidates = await json_of(dispatcher, "GET", f"/api/v1/console/tickets/{no}/merge-candidates")
    assert {c["ticket_no"] for c in candidates["tickets"]} == {dup["ticket_no"], other["ticket_no"]}
    page = await page_text(dispatcher, f"/tickets/{no}")
    assert 'id="merge-form"' in page and dup["ticket_no"] in page
    body = {"tickets": [dup["ticket_no"]], "expected_version": main["version"], "note": "同一事项"}
    out = await json_of(dispatcher, "POST", f"/api/v1/console/tickets/{no}/merge", body)
    assert [m["ticket_no"] for m in out["merged"]] == [dup["ticket_no"]]
    assert (
        out["events"][-1]["action"] == "merge_in"
        and out["events"][-1]["action_label"] == "并入工单"
    )
    merged = await json_of(dispatcher, "GET", f"/api/v1/console/tickets/{dup['ticket_no']}")
    assert merged["state"] == "merged" and merged["merged_into"]["ticket_no"] == no
    assert merged["actions"] == []  # nothing to do on it: it waits on its main ticket
    # refusals carry the domain's code and write nothing
    again = body | {"expected_version": out["version"]}
    refused = await json_of(dispatcher, "POST", f"/api/v1/console/tickets/{no}/merge", again, 409)
    assert refused["error"]["code"] == "ticket.merge_already_merged"
    itself = again | {"tickets": [no]}
    refused = await json_of(dispatcher, "POST", f"/api/v1/console/tickets/{no}/merge", itself, 409)
    assert refused["error"]["code"] == "ticket.merge_self"
    missing = again | {"tickets": ["12345-20000101-00001"]}
    await json_of(dispatcher, "POST", f"/api/v1/console/tickets/{no}/merge", missing, 404)
    assert (await json_of(dispatcher, "GET", f"/api/v1/console/tickets/{no}"))["version"] == out[
        "version"
    ]
    # the page's form: numbers typed or preset from the candidates
    form = {
        "csrf_token": await dispatcher.csrf(),
        "tickets": f" {other['ticket_no']}，",
        "expected_version": str(out["version"]),
    }
    resp = await dispatcher.request(
        "POST", f"/tickets/{no}/merge", data=form, allow_redirects=False
    )
    assert resp.status == 303
    fresh = await json_of(dispatcher, "GET", f"/api/v1/console/tickets/{no}")
    form["expected_version"] = str(fresh["version"])
    resp = await dispatcher.request("POST", f"/tickets/{no}/merge", data=form)
    assert resp.status == 409 and "已并入本工单" in await resp.text()


async def test_merged_callers_follow_the_main_ticket_on_the_citizens_api(desk: Console) -> None:
    citizen = desk.browser()
    _, first = await submit(
        citizen, {"channel": "web", "caller_phone": "13700005555", "content": "东湖路路灯不亮"}
    )
    _, second = await submit(
        citizen, {"channel": "web", "caller_phone": "13700006666", "content": "东湖路路灯坏了"}
    )
    dispatcher = await desk.logged_in("dispatcher")
    main = await json_of(dispatcher, "GET", f"/api/v1/console/tickets/{first['ticket_no']}")
    body = {"tickets": [second["ticket_no"]], "expected_version": main["version"]}
    await json_of(dispatcher, "POST", f"/api/v1/console/tickets/{main['ticket_no']}/merge", body)
    main = await act(dispatcher, main | {"version": main["version"] + 1}, "review")
    await act(dispatcher, main, "dispatch", lead_department=DEPT_A, mode="direct")
    resp = await citizen.request("GET", f"/api/v1/tickets/{second['ticket_no']}?phone=13700006666")
    progress = await resp.json()
    assert progress["merged"] is True and progress["state_label"] == "派发"
    assert progress["ticket_no"] == second["ticket_no"] and "13700005555" not in await resp.text()
