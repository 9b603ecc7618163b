"""Health, metrics, and how a later feature adds a route whose domain errors become JSON errors."""

from __future__ import annotations

from urllib.parse import quote

import aiohttp_jinja2
from aiohttp.test_utils import TestClient, TestServer

from agent_console.app import FEATURES, create_app
from agent_console.roles import Role
from agent_console.routing import Call, RouteTable
from agent_console.schemas import Model
from hotline.db import make_engine, make_sessionmaker
from tests.agent_console.harness import Console, console_settings, start_console, stop_console
from tickets.errors import VersionConflict


async def test_healthz_checks_the_database(console: Console) -> None:
    resp = await console.browser().request("GET", "/healthz")
    assert resp.status == 200 and await resp.json() == {"status": "ok", "database": "ok"}


async def test_healthz_reports_an_unreachable_database(settings) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(
        "postgresql+asyncpg://nobody:x@127.0.0.1:1/none"
    )  # nothing listens on port 1
    app = create_app(console_settings(settings), make_sessionmaker(engine))
    try:
        async with TestClient(TestServer(app)) as client:
            resp = await client.get("/healthz")
            assert resp.status == 503
            assert (await resp.json())["status"] == "unavailable"
    finally:
        await engine.dispose()


async def test_metrics_count_requests_and_logins(console: Console) -> None:
    b = await console.logged_in("agent")
    await b.request("GET", "/")
    await console.browser().login("agent", "wrong-password")
    text = await (await b.request("GET", "/metrics")).text()
    assert 'console_http_requests_total{method="GET",route="home",status="200"} 1.0' in text
    assert 'console_logins_total{outcome="success"} 1.0' in text
    assert 'console_logins_total{outcome="invalid_credentials"} 1.0' in text


async def test_metrics_need_the_bearer_token_once_one_is_set(settings, sessionmaker) -> None:  # type: ignore[no-untyped-def]
    c = await start_console(
        console_settings(settings, metrics_token="m3trics-令牌-secret"), sessionmaker, seed=False
    )
    try:
        b = c.browser()
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Basic bTNOcmljcw=="},
            {"Authorization": "Bearer"},
        ):
            refused = await b.request("GET", "/metrics", headers=headers)
            assert refused.status == 401, headers
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await refused.json())["error"]["code"] == "console.metrics_token_required"
        ok = await b.request(
            "GET", "/metrics", headers={"Authorization": "Bearer m3trics-令牌-secret"}
        )
        assert ok.status == 200 and "console_http_requests_total" in await ok.text()
        assert (await b.request("GET", "/healthz")).status == 200  # health stays open
    finally:
        await stop_console(c)


extra = RouteTable("example")


@extra.api("POST", "/api/v1/example/{ticket_no}", summary="示例：版本冲突", roles={Role.DISPATCHER})
async def conflicting(call: Call[None]) -> None:
    raise VersionConflict("工单已被他人修改，请刷新后重试")


class Department(Model):
    department: str


@extra.api(
    "GET",
    "/api/v1/example/departments/{department}",
    summary="示例：本单位数据",
    roles={Role.HANDLER, Role.LEADER},
    response=Department,
)
async def department_data(call: Call[None]) -> Department:
    department = call.request.match_info["department"]
    call.ensure_visible(department=department)
    return Department(department=department)


async def test_ownership_check_hides_other_departments(settings, sessionmaker) -> None:  # type: ignore[no-untyped-def]
    c = await start_console(console_settings(settings), sessionmaker, features=(*FEATURES, extra))
    try:
        handler, leader = await c.logged_in("handler"), await c.logged_in("leader")
        own = await handler.request("GET", f"/api/v1/example/departments/{quote('市城市管理局')}")
        assert own.status == 200 and (await own.json())["department"] == "市城市管理局"
        other = await handler.request("GET", f"/api/v1/example/departments/{quote('市水务局')}")
        assert other.status == 404
        assert (
            await leader.request("GET", f"/api/v1/example/departments/{quote('市水务局')}")
        ).status == 200
    finally:
        await stop_console(c)


def test_templates_mask_phones_by_role(settings, sessionmaker) -> None:  # type: ignore[no-untyped-def]
    env = aiohttp_jinja2.get_env(create_app(console_settings(settings), sessionmaker))
    template = env.from_string("{{ phone | mask_phone(role) }}")
    assert template.render(phone="13812345678", role="leader") == "138****5678"
    assert template.render(phone="13812345678", role="agent") == "13812345678"


async def test_a_feature_route_maps_ticket_errors_to_json(settings, sessionmaker) -> None:  # type: ignore[no-untyped-def]
    c = await start_console(console_settings(settings), sessionmaker, features=(*FEATURES, extra))
    try:
        b = await c.logged_in("dispatcher")
        resp = await b.write("POST", "/api/v1/example/T1", {})
        assert resp.status == 409
        assert await resp.json() == {
            "error": {
                "code": "ticket.version_conflict",
                "message": "工单已被他人修改，请刷新后重试",
            }
        }
        denied = await (await c.logged_in("agent")).write("POST", "/api/v1/example/T1", {})
        assert denied.status == 403
        doc = await (await b.request("GET", "/api/v1/openapi.json")).json()
        assert doc["paths"]["/api/v1/example/{ticket_no}"]["post"]["x-roles"] == ["dispatcher"]
    finally:
        await stop_console(c)
