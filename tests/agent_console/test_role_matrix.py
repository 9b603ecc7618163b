"""Every registered route × every role (and no login): allowed exactly for the roles it declares.

The parameters come from the app's route registry, so routes added later are covered automatically.
"""

from __future__ import annotations

import re

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agent_console.app import FEATURES, create_app
from agent_console.roles import ROLE_LABELS, Role
from agent_console.routing import PUBLIC, Route, RouteRegistry
from agent_console.security import LOGIN_CSRF_COOKIE
from tests.agent_console.harness import Browser, Console, console_settings
from tests.agent_console.tickets_support import PHONE, act, draft, json_of
from tests.conftest import SQLITE_ONLY
from tickets import states

ROUTES = RouteRegistry.of(FEATURES).routes
PUBLIC_ROUTES = {
    "login",
    "login_submit",
    "healthz",
    "metrics",
    "openapi",
    "public_create",
    "public_progress",
}


def concrete(path: str) -> str:
    return re.sub(r"{[^}]+}", "no-such-thing", path)


async def attempt(b: Browser, route: Route, *, logged_in: bool) -> tuple[int, str]:
    """Call the route the way its own UI would (with a valid CSRF token for writes); status and body."""
    kw: dict = {}
    if route.method != "GET":
        if route.csrf == "login":
            kw = {"cookies": {LOGIN_CSRF_COOKIE: "t0ken"}, "headers": {"X-CSRF-Token": "t0ken"}}
        elif logged_in:
            kw = {"headers": {"X-CSRF-Token": await b.csrf()}}
        kw["json" if route.kind == "api" else "data"] = {}
    resp = await b.request(route.method, concrete(route.path), **kw)
    return resp.status, (
        resp.headers.get("Location", "")
        if resp.status == 303
        else await resp.text(errors="replace")
    )


def refused(status: int, body: str, *, anonymous: bool) -> bool:
    if anonymous:
        return status == 401 or (status == 303 and body.startswith("/login?next="))
    return status == 403 and ('"console.forbidden"' in body or "无权访问" in body)


@SQLITE_ONLY  # who may call a route is decided before any query
@pytest.mark.parametrize("route", ROUTES, ids=[f"{r.method} {r.path}" for r in ROUTES])
async def test_route_allows_exactly_its_roles(console: Console, route: Route) -> None:
    wrong: list[str] = []
    for role in Role:
        b = await console.logged_in(role.value)
        status, body = await attempt(b, route, logged_in=True)
        if route.allows(role) == refused(status, body, anonymous=False) or status >= 500:
            wrong.append(f"{role.value}: {status}")
    status, body = await attempt(console.browser(), route, logged_in=False)
    if route.public == refused(status, body, anonymous=True) or status >= 500:
        wrong.append(f"anonymous: {status}")
    assert not wrong, (
        f"{route.method} {route.path} declared for {sorted(route.roles) or 'everyone'}: {wrong}"
    )


def test_only_known_routes_are_public() -> None:
    assert {r.name for r in ROUTES if r.roles == PUBLIC} == PUBLIC_ROUTES


def test_account_management_is_for_administrators_only() -> None:
    users = [r for r in ROUTES if "/users" in r.path]
    assert users and all(r.roles == {Role.ADMIN} for r in users)


def test_callers_words_left_with_the_bot_are_for_knowledge_editors_only() -> None:
    """The knowledge misses keep what callers said: only those who curate the knowledge base read them."""
    misses = [r for r in ROUTES if "/misses" in r.path]
    assert misses and all(r.roles == {Role.HANDLER, Role.ADMIN} for r in misses)


@SQLITE_ONLY
async def test_unregistered_routes_are_refused(settings, sessionmaker) -> None:  # type: ignore[no-untyped-def]
    async def sneaky(_request):  # type: ignore[no-untyped-def]
        raise AssertionError("must not run")

    app = create_app(console_settings(settings), sessionmaker)
    app.router.add_get("/sneaky", sneaky)  # added behind the registry's back
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/sneaky")
        assert resp.status == 403
        assert "无权访问" in await resp.text()


def test_every_console_role_is_a_role_of_the_ticket_domain() -> None:
    """The ticket services judge and label every console user's actions (audit trail, refusals)."""
    for role in Role:
        assert states.ROLE_LABELS[states.Role(role.value)] == ROLE_LABELS[role]


async def test_a_supervisor_reads_tickets_like_a_leader_and_acts_on_none(desk: Console) -> None:
    agent, supervisor = await desk.logged_in("agent"), await desk.logged_in("supervisor")
    t = await json_of(agent, "POST", "/api/v1/console/tickets", draft(), 201)
    seen = await json_of(supervisor, "GET", f"/api/v1/console/tickets/{t['ticket_no']}")
    assert seen["caller_phone"] != PHONE and seen["caller_phone"].endswith(PHONE[-4:])
    assert seen["actions"] == []
    listed = await json_of(supervisor, "GET", "/api/v1/console/tickets")
    assert [x["ticket_no"] for x in listed["tickets"]] == [t["ticket_no"]]
    refused = await act(supervisor, t, "review", status=403)
    assert refused["error"]["code"] == "ticket.role_forbidden"
    assert refused["error"]["message"].startswith("班长无权执行")
    page = await supervisor.request("GET", f"/tickets/{t['ticket_no']}")
    assert page.status == 200
