"""The browser softphone's console side: each agent gets their own extension's SIP account over the session and
nobody else's, the test phone is for administrators, and pages may use the microphone and reach the PBX's
WebSocket."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console.errors import Unavailable
from agent_console.roles import Role
from agent_console.softphone import AgentInterfaces, ws_origin
from config import Settings
from ivr.ami import AmiNotConnected
from tests.agent_console.harness import (
    WS,
    Console,
    StaticSoftphones,
    console_settings,
    start_console,
    stop_console,
)
from tests.agent_console.switchboard_support import FakeSwitchboard


@pytest.fixture
def phone_settings(settings: Settings) -> Settings:
    own = console_settings(settings)
    return own.model_copy(
        update={
            "softphone": own.softphone.model_copy(
                update={"extensions": {"agent": "6101", "agent2": "6199", "supervisor": "6102"}}
            )
        }
    )


@pytest.fixture
async def phones(
    phone_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Console]:
    console = await start_console(phone_settings, sessionmaker, softphones=StaticSoftphones())
    yield console
    await stop_console(console)


async def test_an_agent_gets_their_own_extensions_account_never_cached(phones: Console) -> None:
    agent = await phones.logged_in("agent")
    resp = await agent.request("GET", "/api/v1/console/softphone/account")
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    out = await resp.json()
    assert out == {
        "extension": "6101",
        "uri": "sip:6101@hotline12345",
        "password": "secret-6101",
        "ws_url": WS,
        "display_name": "坐席",
        "expires_in_s": 900,
        "wrap_up_s": 10,
    }
    page = await agent.request("GET", "/workspace")
    html = await page.text()
    assert (
        'id="softphone"' in html and "secret-6101" not in html
    )  # fetched by script, never rendered


async def test_without_an_extension_there_is_no_softphone(phones: Console) -> None:
    admin = await phones.logged_in("admin")  # may use the workspace, but has no extension here
    resp = await admin.request("GET", "/api/v1/console/softphone/account")
    body = await resp.json()
    assert resp.status == 404 and body["error"]["code"] == "console.not_found"
    assert "未为账号 admin 分配浏览器软电话分机" in body["error"]["message"]
    page = await admin.request("GET", "/workspace")
    assert 'id="softphone"' not in await page.text()  # the page asks for no account


async def test_an_extension_the_pbx_does_not_know_is_a_clear_503(phones: Console) -> None:
    await phones.add_user("agent2", Role.AGENT)
    agent2 = await phones.logged_in("agent2")  # 6199: not an extension of the running PBX
    resp = await agent2.request("GET", "/api/v1/console/softphone/account")
    body = await resp.json()
    assert resp.status == 503 and body["error"]["code"] == "console.unavailable"
    assert "电话系统未运行" in body["error"]["message"]


async def test_a_supervisor_gets_their_own_softphone_on_the_supervisors_board(
    phones: Console,
) -> None:
    """班长席: listen / whisper / barge ring the supervisor's own browser softphone."""
    supervisor = await phones.logged_in("supervisor")
    resp = await supervisor.request("GET", "/api/v1/console/softphone/account")
    assert resp.status == 200 and (await resp.json())["extension"] == "6102"
    html = await (await supervisor.request("GET", "/supervision")).text()
    assert 'data-mode="supervisor"' in html and "secret-6102" not in html
    leader = await phones.logged_in("leader")  # may supervise, but has no extension here
    assert (await leader.request("GET", "/api/v1/console/softphone/account")).status == 404
    assert 'id="softphone"' not in await (await leader.request("GET", "/supervision")).text()


@pytest.mark.parametrize("role", ["dispatcher", "handler", "grid"])
async def test_other_roles_get_no_softphone_account(phones: Console, role: str) -> None:
    user = await phones.logged_in(role)
    assert (await user.request("GET", "/api/v1/console/softphone/account")).status == 403


async def test_only_administrators_get_the_test_phone(phones: Console) -> None:
    agent = await phones.logged_in("agent")
    assert (await agent.request("GET", "/api/v1/console/softphone/test-phone")).status == 403
    assert (await agent.request("GET", "/test-phone")).status == 403
    admin = await phones.logged_in("admin")
    account = await admin.request("GET", "/api/v1/console/softphone/test-phone")
    assert account.status == 200 and (await account.json())["extension"] == "test-phone"
    page = await admin.request("GET", "/test-phone")
    assert page.status == 200 and 'data-dial="12345"' in await page.text()


async def test_pages_may_use_the_microphone_and_reach_the_pbx_websocket(phones: Console) -> None:
    resp = await phones.browser().request("GET", "/login")
    assert "microphone=(self)" in resp.headers["Permissions-Policy"]
    assert "connect-src 'self' ws://127.0.0.1:15088" in resp.headers["Content-Security-Policy"]


def test_ws_origin_follows_a_configured_proxy_url(settings: Settings) -> None:
    behind_proxy = settings.model_copy(
        update={
            "softphone": settings.softphone.model_copy(update={"ws_url": "wss://pbx.example/ws"})
        }
    )
    assert ws_origin(behind_proxy) == "wss://pbx.example"
    assert ws_origin(settings) == f"ws://{settings.pbx.host}:{settings.softphone.ws_port}"


def test_agents_with_an_extension_are_queue_members_by_it(phone_settings: Settings) -> None:
    interfaces = AgentInterfaces(phone_settings)
    assert interfaces.interface("agent") == "PJSIP/6101"
    assert interfaces.username("PJSIP/6101") == "agent"
    assert interfaces.interface("desk01") == "PJSIP/desk01"  # a desk phone named like the user
    assert interfaces.username("PJSIP/desk01") == "desk01"
    assert interfaces.username("Local/6841@test-agent/n") is None


async def test_the_transfer_buttons_sit_beside_the_softphone(phones: Console) -> None:
    agent = await phones.logged_in("agent")
    html = await (await agent.request("GET", "/workspace")).text()
    panel = html[html.index('<section class="transfer-panel" id="transfer-panel" hidden>') :]
    assert '<option value="blind">直接转接</option>' in panel and 'id="transfer-to-agent"' in panel
    # callcontrol.js fills in the departments and emergency numbers and opens the panel during a call
    assert "js/callcontrol" in html
    # no extension, no softphone: no transfer buttons either
    admin = await phones.logged_in("admin")
    assert 'id="transfer-panel"' not in await (await admin.request("GET", "/workspace")).text()
    gone = await agent.request("GET", "/calls/transfer")  # the separate transfer page
    assert gone.status == 404


@pytest.fixture
async def issuing(
    phone_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[tuple[Console, FakeSwitchboard]]:
    """The console with its default softphone directory: passwords issued through the switchboard."""
    switchboard = FakeSwitchboard()
    console = await start_console(
        phone_settings, sessionmaker, softphones=None, switchboard=switchboard
    )
    yield console, switchboard
    await stop_console(console)


async def test_every_fetch_issues_a_fresh_short_lived_password(
    issuing: tuple[Console, FakeSwitchboard],
) -> None:
    console, switchboard = issuing
    agent = await console.logged_in("agent")
    first = await (await agent.request("GET", "/api/v1/console/softphone/account")).json()
    assert switchboard.softphones == {"6101": (first["password"], 900)}  # credential_ttl_s
    assert first["expires_in_s"] == 900
    second = await (await agent.request("GET", "/api/v1/console/softphone/account")).json()
    assert second["password"] != first["password"] and len(second["password"]) >= 24
    assert switchboard.softphones == {"6101": (second["password"], 900)}


async def test_a_new_login_and_a_logout_revoke_the_agents_password(
    issuing: tuple[Console, FakeSwitchboard],
) -> None:
    console, switchboard = issuing
    agent = await console.logged_in("agent")
    await agent.request("GET", "/api/v1/console/softphone/account")
    assert "6101" in switchboard.softphones
    again = await console.logged_in("agent")  # e.g. on another computer
    assert "6101" not in switchboard.softphones
    await again.request("GET", "/api/v1/console/softphone/account")
    resp = await again.request("POST", "/logout", data={"csrf_token": await again.csrf()})
    assert resp.status == 303 and "6101" not in switchboard.softphones


async def test_the_test_phone_gets_its_own_password_for_an_administrator(
    issuing: tuple[Console, FakeSwitchboard],
) -> None:
    console, switchboard = issuing
    admin = await console.logged_in("admin")
    out = await (await admin.request("GET", "/api/v1/console/softphone/test-phone")).json()
    assert switchboard.softphones == {"test-phone": (out["password"], 900)}


@pytest.mark.parametrize(
    "outage", [AmiNotConnected("DBDelTree"), Unavailable("没有在线的电话控制进程")]
)
async def test_a_logout_succeeds_while_the_telephony_is_away(
    issuing: tuple[Console, FakeSwitchboard], outage: Exception
) -> None:
    console, switchboard = issuing
    agent = await console.logged_in("agent")
    switchboard.refusal = outage  # type: ignore[assignment]  # the password still dies with its TTL
    resp = await agent.request("POST", "/logout", data={"csrf_token": await agent.csrf()})
    assert resp.status == 303


async def test_without_telephony_the_softphone_is_a_clear_503(
    phone_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    console = await start_console(phone_settings, sessionmaker, softphones=None)
    try:
        agent = await console.logged_in("agent")  # the unwired switchboard has nothing to revoke
        resp = await agent.request("GET", "/api/v1/console/softphone/account")
        body = await resp.json()
        assert resp.status == 503 and "未接入电话系统" in body["error"]["message"]
    finally:
        await stop_console(console)
