"""Logging in and out, where a login leads, throttling, session expiry, CSRF, cookie flags, security headers
(HSTS), the plain-HTTP warning, audit."""

from __future__ import annotations

import argparse
import logging
import re
from http.cookies import SimpleCookie
from urllib.parse import quote, unquote, urljoin, urlsplit

import pytest
from aiohttp import web
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy import select

from agent_console.models import AuditEntry, User
from agent_console.routing import SESSION_COOKIE
from agent_console.security import LOGIN_CSRF_COOKIE, tokens_match, warn_if_plain_http
from agent_console.views.session import safe_next
from hotline.commands import console as console_command
from tests.agent_console.harness import (
    Console,
    console_settings,
    password_of,
    start_console,
    stop_console,
)

CONSOLE_ORIGIN = "https://console.example"
EVIL_NEXT = [
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    "\t//evil.example",
    " //evil.example",
    "/%09/evil.example",
    "/%5Cevil.example",
    "/%5cevil.example",
    "/%2F/evil.example",
    "/%2f%2fevil.example",
    "/%250a/evil.example",
    "/%25255Cevil.example",
    "/%0d%0a/evil.example",
    "/tickets\\..\\..\\evil.example",
    "/..//evil.example",
    "/./%2e%2e//evil.example",
    "https://evil.example",
    "http:evil.example",
    "javascript:alert(1)",
    "evil.example",
    "/\u2028/evil.example",
    "/\u200b/evil.example",
    "/\x00/evil.example",
    "/tickets\r\nSet-Cookie: a=b",
]


def set_cookie(resp, name: str):  # type: ignore[no-untyped-def]
    for header in resp.headers.getall("Set-Cookie", []):
        jar = SimpleCookie(header)
        if name in jar:
            return jar[name]
    return None


async def audit_actions(console: Console) -> list[tuple[str | None, str, str | None]]:
    async with console.sessionmaker() as db:
        rows = (await db.execute(select(AuditEntry).order_by(AuditEntry.id))).scalars()
        return [(r.actor, r.action, r.target) for r in rows]


async def test_login_success_shows_the_home_page_in_chinese(console: Console) -> None:
    b = console.browser()
    resp = await b.login("agent")
    assert resp.status == 303 and resp.headers["Location"] == "/"
    home = await b.request("GET", "/")
    html = await home.text()
    assert home.status == 200
    assert "您好，话务员agent" in html and "话务员" in html
    assert "退出登录" in html
    assert ("agent", "login", "agent") in await audit_actions(console)


async def test_login_redirects_back_to_the_page_asked_for_but_never_off_site(
    console: Console,
) -> None:
    b = console.browser()
    first = await b.request("GET", "/users")
    assert first.status == 303 and first.headers["Location"] == "/login?next=/users"
    page = await b.request("GET", "/login?next=//evil.example/x")
    assert 'name="next" value="/"' in await page.text()


def browser_resolves(target: str) -> str:
    """What a browser on a console page makes of ``target`` (WHATWG: tab, CR and LF dropped, leading and
    trailing C0 controls and spaces stripped, ``\\`` read as ``/`` in http(s) URLs)."""
    cleaned = (
        re.sub(r"[\t\r\n]", "", target).strip("".join(map(chr, range(0x21)))).replace("\\", "/")
    )
    return urljoin(CONSOLE_ORIGIN + "/login", cleaned)


def same_origin(url: str) -> bool:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" == CONSOLE_ORIGIN


SEPARATORS = st.sampled_from(
    [
        "/",
        "\\",
        "\t",
        "\n",
        "\r",
        " ",
        "\x00",
        "\u3000",
        "\u2028",
        "%09",
        "%0a",
        "%5C",
        "%2F",
        "%2e",
        "%25",
        "%",
        ".",
        "..",
        ":",
        "@",
        "?",
        "#",
    ]
)
WORDS = st.sampled_from(["evil.example", "http:", "https:", "javascript:", "tickets", "users"])
# A lead, separators, a host: the shapes of the known tricks, recombined.
AIMED = st.builds(
    lambda lead, separators, host: lead + "".join(separators) + host,
    st.sampled_from(["", "/", "http:", "https:"]),
    st.lists(SEPARATORS, min_size=1, max_size=4),
    st.sampled_from(["evil.example", "evil.example/x?y#z", "@evil.example"]),
)


@given(st.one_of(st.text(), st.lists(st.one_of(SEPARATORS, WORDS), max_size=8).map("".join), AIMED))
@example("/\t/evil.example")
@example("/%09/evil.example")
@example("/%5Cevil.example")
@example("/%255C%255Cevil.example")
def test_whatever_safe_next_returns_stays_on_the_site(target: str) -> None:
    result = safe_next(target)
    assert result in ("/", target)
    layer = result
    for _ in range(
        6
    ):  # and so does each percent-decoding of it (a server may decode it before redirecting)
        assert same_origin(browser_resolves(layer)), (target, layer)
        layer = unquote(layer)


@pytest.mark.parametrize("target", EVIL_NEXT)
def test_safe_next_refuses_ways_off_the_site(target: str) -> None:
    assert safe_next(target) == "/"


async def test_login_leads_only_to_pages_of_this_console(console: Console) -> None:
    for target in [*EVIL_NEXT, "/nothing-here", "/static/css/console.css", "/api/v1/me", "/login"]:
        page = await console.browser().request("GET", f"/login?next={quote(target, safe='')}")
        assert 'name="next" value="/"' in await page.text(), target
        b = console.browser()
        await b.login("agent")
        resp = await b.request("GET", f"/login?next={quote(target, safe='')}")  # already logged in
        assert resp.headers["Location"] == "/", target
    for target in (
        "/tickets?state=accepted",
        "/tickets/12345-20261201-00001",
        "/knowledge/7",
        "/cockpit",
    ):
        b = console.browser()
        token = re.search(
            r'name="csrf_token" value="([^"]+)"', await (await b.request("GET", "/login")).text()
        )
        assert token
        resp = await b.request(
            "POST",
            "/login",
            data={
                "csrf_token": token.group(1),
                "username": "leader",
                "password": password_of("leader"),
                "next": target,
            },
        )
        assert resp.status == 303 and resp.headers["Location"] == target


async def test_wrong_password_is_refused_without_a_session(console: Console) -> None:
    b = console.browser()
    resp = await b.login("agent", "not-the-password")
    assert resp.status == 401
    assert "用户名或密码错误" in await resp.text()
    assert set_cookie(resp, SESSION_COOKIE) is None
    assert (await b.request("GET", "/api/v1/me")).status == 401
    unknown = await b.login("nobody", "whatever-password")
    assert unknown.status == 401
    actions = await audit_actions(console)
    assert (None, "login.failure", "agent") in actions and (
        None,
        "login.failure",
        "nobody",
    ) in actions


async def test_sixth_wrong_attempt_in_a_minute_is_throttled(console: Console) -> None:
    b = console.browser()
    for _ in range(5):
        assert (await b.login("dispatcher", "wrong-password")).status == 401
    sixth = await b.login("dispatcher")  # even the right password waits out the minute
    assert sixth.status == 429
    assert "一分钟后再试" in await sixth.text()
    console.clock.advance(61)
    assert (await b.login("dispatcher")).status == 303


async def test_throttling_counts_per_address_across_usernames(console: Console) -> None:
    b = console.browser()
    for n in range(console.settings.console.login_attempts_per_address_per_minute):
        assert (await b.login(f"a{n}", "wrong-password")).status == 401
    assert (await b.login("leader")).status == 429
    assert (
        await console.browser("127.0.0.5").login("leader")
    ).status == 303  # another address is not


async def test_logout_revokes_the_session_on_the_server(console: Console) -> None:
    b = await console.logged_in("agent")
    token = b.cookie(SESSION_COOKIE)
    assert token
    resp = await b.request("POST", "/logout", data={"csrf_token": await b.csrf()})
    assert resp.status == 303 and resp.headers["Location"] == "/login"
    # Replaying the old cookie from another client must not work.
    thief = console.browser()
    replay = await thief.request("GET", "/api/v1/me", cookies={SESSION_COOKIE: token})
    assert replay.status == 401
    assert ("agent", "logout", "agent") in await audit_actions(console)


async def test_expired_session_is_refused(console: Console) -> None:
    b = await console.logged_in("handler")
    assert (await b.request("GET", "/api/v1/me")).status == 200
    console.clock.advance(console.settings.console.session_ttl_s + 1)
    assert (await b.request("GET", "/api/v1/me")).status == 401
    page = await b.request("GET", "/")
    assert page.status == 303 and page.headers["Location"].startswith("/login")


async def test_writes_without_or_with_a_wrong_csrf_token_are_refused(console: Console) -> None:
    b = await console.logged_in("admin")
    body = {
        "username": "newbie",
        "display_name": "新人",
        "role": "agent",
        "password": "long-enough-pw",
    }
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        resp = await b.request("POST", "/api/v1/users", json=body, headers=headers)
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "console.csrf_failed"
    form = await b.request("POST", "/logout", data={"csrf_token": "forged"})
    assert form.status == 403
    assert (await b.request("GET", "/api/v1/me")).status == 200  # still logged in
    ok = await b.write("POST", "/api/v1/users", body)
    assert ok.status == 201


async def test_a_token_from_another_session_does_not_count(console: Console) -> None:
    mine, other = await console.logged_in("admin"), await console.logged_in("agent")
    resp = await mine.request("POST", "/logout", data={"csrf_token": await other.csrf()})
    assert resp.status == 403


async def test_login_form_needs_its_double_submit_token(console: Console) -> None:
    b = console.browser()
    resp = await b.request(
        "POST", "/login", data={"username": "agent", "password": password_of("agent")}
    )
    assert resp.status == 403
    await b.request("GET", "/login")
    assert b.cookie(LOGIN_CSRF_COOKIE)
    forged = await b.request(
        "POST",
        "/login",
        data={"csrf_token": "forged", "username": "agent", "password": password_of("agent")},
    )
    assert forged.status == 403


async def test_session_cookie_flags(console: Console) -> None:
    resp = await console.browser().login("agent")
    cookie = set_cookie(resp, SESSION_COOKIE)
    assert cookie is not None
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/"
    assert not cookie["secure"]


async def test_secure_cookies_when_configured(settings, sessionmaker) -> None:  # type: ignore[no-untyped-def]
    c = await start_console(
        console_settings(settings, secure_cookies=True, cookie_samesite="Lax"), sessionmaker
    )
    try:
        # The browser stand-in keeps Secure cookies off plain HTTP, so the login token is sent explicitly.
        form = {"csrf_token": "t0ken", "username": "agent", "password": password_of("agent")}
        resp = await c.browser().request(
            "POST", "/login", data=form, cookies={LOGIN_CSRF_COOKIE: "t0ken"}
        )
        assert resp.status == 303
        assert (
            set_cookie(await c.browser().request("GET", "/login"), LOGIN_CSRF_COOKIE)["secure"]
            is True
        )
        cookie = set_cookie(resp, SESSION_COOKIE)
        assert (
            cookie["secure"] is True and cookie["httponly"] is True and cookie["samesite"] == "Lax"
        )
    finally:
        await stop_console(c)


async def test_security_headers_on_pages_api_errors_and_static(console: Console) -> None:
    b = await console.logged_in("agent")
    for path, status in (
        ("/", 200),
        ("/api/v1/me", 200),
        ("/users", 403),
        ("/api/v1/nothing", 404),
        ("/static/css/console.css", 200),
        ("/login", 303),
    ):
        resp = await b.request("GET", path)
        assert resp.status == status, path
        csp = resp.headers["Content-Security-Policy"]
        assert (
            "script-src 'self'" in csp
            and "unsafe-inline" not in csp
            and "frame-ancestors 'none'" in csp
        )
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "same-origin"


async def test_hsts_only_behind_https(console: Console, settings, sessionmaker) -> None:  # type: ignore[no-untyped-def]
    assert (
        "Strict-Transport-Security"
        not in (await console.browser().request("GET", "/login")).headers
    )
    c = await start_console(
        console_settings(settings, secure_cookies=True), sessionmaker, seed=False
    )
    try:
        for path in ("/login", "/api/v1/nothing", "/static/css/console.css", "/healthz"):
            resp = await c.browser().request("GET", path)
            assert resp.headers["Strict-Transport-Security"] == "max-age=31536000", path
    finally:
        await stop_console(c)


@pytest.mark.parametrize(
    ("host", "secure", "warned"),
    [
        ("0.0.0.0", False, True),
        ("", False, True),
        ("::", False, True),
        ("10.1.2.3", False, True),
        ("console.example", False, True),
        ("0.0.0.0", True, False),
        ("127.0.0.1", False, False),
        ("::1", False, False),
        ("localhost", False, False),
    ],
)
def test_plain_http_beyond_loopback_is_warned_at_start(
    settings,
    caplog,
    host: str,
    secure: bool,  # type: ignore[no-untyped-def]
    warned: bool,
) -> None:
    with caplog.at_level(logging.WARNING, logger="agent_console.security"):
        warn_if_plain_http(host, console_settings(settings, secure_cookies=secure).console)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert bool(warnings) == warned
    assert not warned or "secure_cookies = true" in warnings[0]


def test_console_command_warns_when_listening_beyond_loopback(
    settings, caplog, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(web, "run_app", lambda app, **_kw: app.close())
    with caplog.at_level(logging.WARNING, logger="agent_console.security"):
        console_command._serve(settings, argparse.Namespace(host="0.0.0.0", port=None))
    assert any("secure_cookies = true" in r.getMessage() for r in caplog.records)


def test_secrets_compare_in_constant_time_whatever_their_characters() -> None:
    assert tokens_match("令牌-1", "令牌-1") and not tokens_match("令牌-1", "令牌-2")
    assert not tokens_match("", "") and not tokens_match("x", None)


async def test_pages_have_no_inline_script(console: Console) -> None:
    admin, anonymous = await console.logged_in("admin"), console.browser()
    for b, path in ((admin, "/"), (admin, "/users"), (anonymous, "/login")):
        html = await (await b.request("GET", path)).text()
        assert "<script>" not in html and " onclick=" not in html and "<script src=" in html


async def test_password_is_rehashed_when_argon2_cost_changes(settings, sessionmaker) -> None:  # type: ignore[no-untyped-def]
    weak = await start_console(console_settings(settings), sessionmaker)
    await stop_console(weak)
    async with sessionmaker() as db:
        before = (
            await db.execute(select(User.password_hash).where(User.username == "agent"))
        ).scalar_one()
    stronger = await start_console(
        console_settings(settings, argon2_time_cost=2), sessionmaker, seed=False
    )
    try:
        assert (await stronger.browser().login("agent")).status == 303
    finally:
        await stop_console(stronger)
    async with sessionmaker() as db:
        after = (
            await db.execute(select(User.password_hash).where(User.username == "agent"))
        ).scalar_one()
    assert "t=1," in before and "t=2," in after


async def test_short_password_is_refused(console: Console) -> None:
    b = await console.logged_in("admin")
    resp = await b.write(
        "POST",
        "/api/v1/users",
        {"username": "shorty", "display_name": "短", "role": "agent", "password": "short"},
    )
    assert resp.status == 422
    err = (await resp.json())["error"]
    assert err["code"] == "console.invalid_input" and "至少需要 10 个字符" in err["message"]


async def test_deactivating_a_user_ends_their_sessions(console: Console) -> None:
    admin, agent = await console.logged_in("admin"), await console.logged_in("agent")
    resp = await admin.write("PATCH", "/api/v1/users/agent", {"active": False})
    assert resp.status == 200 and (await resp.json())["active"] is False
    assert (await agent.request("GET", "/api/v1/me")).status == 401
    assert (await console.browser().login("agent")).status == 401
    assert ("admin", "user.update", "agent") in await audit_actions(console)


async def test_admin_cannot_lock_themselves_out(console: Console) -> None:
    admin = await console.logged_in("admin")
    resp = await admin.write("PATCH", "/api/v1/users/admin", {"active": False})
    assert resp.status == 409
    assert (await admin.request("GET", "/api/v1/me")).status == 200
