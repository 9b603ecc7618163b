"""Console test harness: start the app on a database with one account per role, and a small cookie-keeping
HTTP client per user. Used by tests/agent_console and tests/browser."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console.access_log import PathAccessLogger
from agent_console.app import FEATURES, create_app
from agent_console.auth import Accounts, Origin
from agent_console.hub import Hub
from agent_console.roles import Role
from agent_console.routing import RouteTable
from agent_console.schemas import UserCreate
from agent_console.softphone import SipAccount
from config import Settings

# Cheap argon2 so a test logs in in milliseconds; production keeps the shipped cost.
FAST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_kib": 64, "argon2_parallelism": 1}
PLACEMENT = {Role.HANDLER: {"department": "市城市管理局"}, Role.GRID: {"grid": "东岗街道第三网格"}}


def password_of(username: str) -> str:
    return f"pw-{username}-2024!"


def console_settings(settings: Settings, *, warm_cockpit: bool = False, **console: Any) -> Settings:
    """Fast password hashing; the cockpit's panels computed on request (tests seed data after start-up) unless
    ``warm_cockpit``."""
    return settings.model_copy(
        update={
            "console": settings.console.model_copy(update=FAST_ARGON2 | console),
            "cockpit": settings.cockpit.model_copy(update={"warm_up": warm_cockpit}),
        }
    )


class SteppingClock:
    """Real time by default; ``advance`` moves it forward (session expiry, throttling windows)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


class Browser:
    """One user agent with its own cookie jar, talking HTTP to the test server (redirects not followed), from
    ``source`` (another loopback address, e.g. ``127.0.0.7``, to stand for another machine) if given; behind a
    reverse proxy, ``forwarded_for`` is the address the proxy reports in ``X-Forwarded-For``."""

    def __init__(
        self, server: TestServer, source: str | None = None, forwarded_for: str | None = None
    ) -> None:
        self.server = server
        connector = aiohttp.TCPConnector(local_addr=(source, 0)) if source else None
        headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else None
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), connector=connector, headers=headers
        )

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def request(self, method: str, path: str, **kw: Any) -> aiohttp.ClientResponse:
        kw.setdefault("allow_redirects", False)
        async with self.http.request(method, self.url(path), **kw) as resp:
            await resp.read()
            return resp

    def cookie(self, name: str) -> str | None:
        for c in self.http.cookie_jar:
            if c.key == name:
                return c.value
        return None

    async def login(self, username: str, password: str | None = None) -> aiohttp.ClientResponse:
        page = await self.request("GET", "/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
        assert token, "login form without CSRF token"
        form = {
            "csrf_token": token.group(1),
            "username": username,
            "password": password_of(username) if password is None else password,
        }
        return await self.request("POST", "/login", data=form)

    async def csrf(self) -> str:
        me = await self.request("GET", "/api/v1/me")
        assert me.status == 200, await me.text()
        return (await me.json())["csrf_token"]

    async def write(self, method: str, path: str, json: Any = None) -> aiohttp.ClientResponse:
        return await self.request(
            method, path, json=json, headers={"X-CSRF-Token": await self.csrf()}
        )

    async def close(self) -> None:
        await self.http.close()


@dataclass
class Console:
    server: TestServer
    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    clock: SteppingClock
    hub: Hub
    accounts: Accounts
    browsers: list[Browser] = field(default_factory=list)

    @property
    def app(self) -> Any:
        return self.server.app

    def browser(self, source: str | None = None, forwarded_for: str | None = None) -> Browser:
        b = Browser(self.server, source, forwarded_for)
        self.browsers.append(b)
        return b

    async def add_user(self, username: str, role: Role, **extra: Any) -> None:
        fields = {"display_name": f"{role.label}{username}"} | PLACEMENT.get(role, {}) | extra
        new = UserCreate(username=username, role=role, password=password_of(username), **fields)
        async with self.sessionmaker() as db:
            await self.accounts.create_user(db, new, Origin("test"), self.clock())

    async def logged_in(self, username: str) -> Browser:
        b = self.browser()
        resp = await b.login(username)
        assert resp.status == 303, await resp.text()
        return b


WS = "ws://127.0.0.1:15088/ws"


class StaticSoftphones:
    """Accounts of a PBX that gave extension 6101 the password ``secret-6101`` (6102: ``secret-6102``): the
    console's tests do not
    depend on whether a local PBX happens to run (the real accounts are tested in tests/browser/)."""

    async def agent_account(self, username: str) -> SipAccount | None:
        extension = {"agent": "6101", "supervisor": "6102"}.get(username)
        return SipAccount(extension, f"secret-{extension}", WS, "坐席", 900) if extension else None

    async def test_phone_account(self) -> SipAccount | None:
        return SipAccount("test-phone", "secret-test", WS, "测试电话", 900)

    async def revoke(self, username: str) -> None:
        return None


async def start_console(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    seed: bool = True,
    features: Sequence[RouteTable] = FEATURES,
    port: int | None = None,
    **deps: Any,
) -> Console:
    """The console on a free loopback port (or ``port``), with one account per role unless ``seed`` is False;
    ``deps`` go to ``create_app`` (e.g. ``on_knowledge_change``)."""
    clock, hub, accounts = SteppingClock(), Hub(), Accounts(settings.console)
    deps.setdefault("softphones", StaticSoftphones())
    app = create_app(
        settings, sessionmaker, hub=hub, accounts=accounts, clock=clock, features=features, **deps
    )
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server(access_log_class=PathAccessLogger)  # the console's own access log
    console = Console(server, settings, sessionmaker, clock, hub, accounts)
    if seed:
        for role in Role:
            await console.add_user(role.value, role)
    return console


async def stop_console(console: Console) -> None:
    for b in console.browsers:
        await b.close()
    await console.server.close()
