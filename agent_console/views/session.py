"""Logging in and out, and who am I."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Container, Iterable
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from pydantic import Field

from agent_console import keys
from agent_console.auth import InvalidCredentials, PasswordCheckBusy
from agent_console.errors import TooManyRequests
from agent_console.roles import ALL_ROLES
from agent_console.routing import PUBLIC, REGISTRY, SESSION_COOKIE, Call, RouteTable, render_page
from agent_console.schemas import Me, Model, UserOut
from agent_console.security import LOGIN_CSRF_COOKIE, new_token
from agent_console.softphone import SOFTPHONES

routes = RouteTable("session")


class LoginForm(Model):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)
    next: str = "/"


MAX_DECODES = (
    4  # percent-decoding layers of a ``next`` target examined; one still encoded beyond is refused
)


class PagePaths(Container[str]):
    """The paths of this console's pages (GET), where a login may send the browser on to."""

    def __init__(self, templates: Iterable[str]) -> None:
        self._patterns = [
            re.compile("[^/]+".join(map(re.escape, re.split(r"\{[^{}]+\}", t)))) for t in templates
        ]

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and any(p.fullmatch(path) for p in self._patterns)


NEXT_PAGES = web.AppKey("login_next_pages", PagePaths)


@routes.on_setup
def _setup(app: web.Application) -> None:
    app[NEXT_PAGES] = PagePaths(
        r.path
        for r in app[REGISTRY].routes
        if r.kind == "page" and r.method == "GET" and r.name != "login"
    )


def _leaves_site(text: str) -> bool:
    """Whether a browser (or a server decoding it) could read ``text`` as another origin or a path outside ours.

    Browsers drop tabs and newlines anywhere and read ``\\`` as ``/``, so ``/\\t/evil.example`` is
    ``//evil.example``: control, format and line-separator characters and backslashes are refused outright."""
    path = text.partition("?")[0].partition("#")[0]
    return (
        not path.startswith("/")
        or "//" in path
        or "\\" in text
        or any(segment in (".", "..") for segment in path.split("/"))
        or any(
            unicodedata.category(c)[0] == "C" or unicodedata.category(c) in ("Zl", "Zp")
            for c in text
        )
    )


def safe_next(target: str | None, pages: Container[str] | None = None) -> str:
    """``target`` if it is a path on this site (one of ``pages`` when given), else ``/``.

    Refused: anything but one leading ``/`` (no scheme, host or ``//evil``), backslashes, control characters,
    dot segments, and percent-encodings that decode to any of these."""
    layers = [target or ""]
    while len(layers) <= MAX_DECODES and (decoded := unquote(layers[-1])) != layers[-1]:
        layers.append(decoded)
    if unquote(layers[-1]) != layers[-1] or any(_leaves_site(layer) for layer in layers):
        return "/"
    if pages is not None and layers[-1].partition("?")[0].partition("#")[0] not in pages:
        return "/"
    return layers[0]


def next_page(call: Call[Any], target: str | None) -> str:
    """Where to send the browser after a login: ``target`` if it is one of this console's pages, else ``/``."""
    return safe_next(target, call.app[NEXT_PAGES])


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _login_form(
    call: Call[Any], *, token: str, error: str | None = None, status: int = 200
) -> web.Response:
    settings = call.app[keys.SETTINGS].console
    target = call.form.get("next") or call.request.query.get("next")
    context = {
        "login_csrf": token,
        "next": next_page(call, target),
        "error": error,
        "username": call.form.get("username", ""),
    }
    response = render_page(call, "login.html", context, status=status)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        path="/login",
        httponly=True,
        samesite="Strict",
        secure=settings.secure_cookies,
    )
    return response


@routes.page("GET", "/login", title="登录", roles=PUBLIC, name="login")
async def login_page(call: Call[None]) -> web.StreamResponse:
    if call.session is not None:
        return see_other(next_page(call, call.request.query.get("next")))
    return _login_form(call, token=call.request.cookies.get(LOGIN_CSRF_COOKIE) or new_token())


@routes.page(
    "POST",
    "/login",
    title="登录",
    roles=PUBLIC,
    form=LoginForm,
    csrf="login",
    name="login_submit",
    errors=(401, 429, 503),
)
async def login_submit(call: Call[LoginForm]) -> web.StreamResponse:
    token = call.request.cookies.get(LOGIN_CSRF_COOKIE) or new_token()
    if call.body is None:
        return _login_form(call, token=token, error="请输入用户名和密码", status=422)
    metrics = call.app[keys.METRICS]
    try:
        async with call.db() as db:
            login = await call.app[keys.ACCOUNTS].login(
                db, call.body.username, call.body.password, call.origin, call.now
            )
    except (InvalidCredentials, TooManyRequests, PasswordCheckBusy) as exc:
        metrics.logins.labels(exc.code.removeprefix("console.")).inc()  # outcome labels stay short
        return _login_form(call, token=token, error=exc.message, status=exc.status)
    metrics.logins.labels("success").inc()
    await _revoke_softphone(call, login.user.username)  # an earlier login's softphone stops
    settings = call.app[keys.SETTINGS].console
    response = see_other(next_page(call, call.body.next))
    response.set_cookie(
        SESSION_COOKIE,
        login.token,
        path="/",
        httponly=True,
        samesite=settings.cookie_samesite,
        secure=settings.secure_cookies,
        max_age=settings.session_ttl_s,
    )
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


async def _revoke_softphone(call: Call[Any], username: str) -> None:
    """The user's browser softphone password (if they have one) stops working."""
    softphones = call.app.get(SOFTPHONES)
    if softphones is not None:
        await softphones.revoke(username)


@routes.page("POST", "/logout", title="退出登录", roles=ALL_ROLES, name="logout")
async def logout(call: Call[None]) -> web.StreamResponse:
    assert call.session is not None
    async with call.db() as db:
        await call.app[keys.ACCOUNTS].logout(db, call.session.id, call.origin, call.now)
    await _revoke_softphone(call, call.user.username)
    response = see_other("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


@routes.api("GET", "/api/v1/me", summary="当前用户与 CSRF 令牌", roles=ALL_ROLES, response=Me)
async def me(call: Call[None]) -> Me:
    assert call.session is not None
    return Me(
        user=UserOut.of(call.user),
        csrf_token=call.session.csrf_token,
        session_expires_at=call.session.expires_at,
    )
