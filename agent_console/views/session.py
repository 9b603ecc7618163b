"""Logging in and out, and who am I."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field

from agent_console import keys
from agent_console.auth import InvalidCredentials
from agent_console.errors import TooManyRequests
from agent_console.roles import ALL_ROLES
from agent_console.routing import PUBLIC, SESSION_COOKIE, Call, RouteTable, render_page
from agent_console.schemas import Me, Model, UserOut
from agent_console.security import LOGIN_CSRF_COOKIE, new_token

routes = RouteTable("session")


class LoginForm(Model):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)
    next: str = "/"


def safe_next(target: str | None) -> str:
    """Only a path on this site: no scheme, no host, no protocol-relative ``//evil``."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _login_form(call: Call[Any], *, token: str, error: str | None = None, status: int = 200) -> web.Response:
    settings = call.app[keys.SETTINGS].console
    target = call.form.get("next") or call.request.query.get("next")
    context = {"login_csrf": token, "next": safe_next(target), "error": error,
               "username": call.form.get("username", "")}
    response = render_page(call, "login.html", context, status=status)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, path="/login", httponly=True, samesite="Strict",
                        secure=settings.secure_cookies)
    return response


@routes.page("GET", "/login", title="登录", roles=PUBLIC, name="login")
async def login_page(call: Call[None]) -> web.StreamResponse:
    if call.session is not None:
        return see_other(safe_next(call.request.query.get("next")))
    return _login_form(call, token=call.request.cookies.get(LOGIN_CSRF_COOKIE) or new_token())


@routes.page("POST", "/login", title="登录", roles=PUBLIC, form=LoginForm, csrf="login", name="login_submit",
             errors=(401, 429))
async def login_submit(call: Call[LoginForm]) -> web.StreamResponse:
    token = call.request.cookies.get(LOGIN_CSRF_COOKIE) or new_token()
    if call.body is None:
        return _login_form(call, token=token, error="请输入用户名和密码", status=422)
    metrics = call.app[keys.METRICS]
    try:
        async with call.db() as db:
            login = await call.app[keys.ACCOUNTS].login(db, call.body.username, call.body.password, call.origin,
                                                        call.now)
    except (InvalidCredentials, TooManyRequests) as exc:
        metrics.logins.labels(exc.code).inc()
        return _login_form(call, token=token, error=exc.message, status=exc.status)
    metrics.logins.labels("success").inc()
    settings = call.app[keys.SETTINGS].console
    response = see_other(safe_next(call.body.next))
    response.set_cookie(SESSION_COOKIE, login.token, path="/", httponly=True, samesite=settings.cookie_samesite,
                        secure=settings.secure_cookies, max_age=settings.session_ttl_s)
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@routes.page("POST", "/logout", title="退出登录", roles=ALL_ROLES, name="logout")
async def logout(call: Call[None]) -> web.StreamResponse:
    assert call.session is not None
    async with call.db() as db:
        await call.app[keys.ACCOUNTS].logout(db, call.session.id, call.origin, call.now)
    response = see_other("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


@routes.api("GET", "/api/v1/me", summary="当前用户与 CSRF 令牌", roles=ALL_ROLES, response=Me)
async def me(call: Call[None]) -> Me:
    assert call.session is not None
    return Me(user=UserOut.of(call.user), csrf_token=call.session.csrf_token,
              session_expires_at=call.session.expires_at)

