"""Browser-facing protections: security headers, CSRF tokens and login throttling."""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta

from aiohttp import web
from aiohttp.typedefs import Handler
from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from agent_console.errors import CsrfFailed, TooManyRequests
from agent_console.models import LoginFailure

CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
LOGIN_CSRF_COOKIE = "hotline_login_csrf"  # double-submit token of the login form (no session yet)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# Scripts and styles only from files we serve: no inline script, no CDN, no external fonts.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), geolocation=(), microphone=()",
}


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Put the security headers on every answer, errors included."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    if not response.prepared:
        response.headers.update(SECURITY_HEADERS)
    return response


def new_token() -> str:
    return secrets.token_urlsafe(32)


def tokens_match(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


async def submitted_csrf(request: web.Request) -> str | None:
    """The CSRF token of a write: the X-CSRF-Token header, or the csrf_token field of a posted form."""
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        value = (await request.post()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


async def require_csrf(request: web.Request, expected: str | None) -> None:
    if not tokens_match(expected, await submitted_csrf(request)):
        raise CsrfFailed()


class LoginThrottle:
    """At most ``limit`` failed logins per username and per address in a sliding minute.

    Failures are rows in ``console_login_failures`` so every console worker sharing the database counts
    the same attempts; rows older than ten minutes are pruned as new failures arrive.
    """

    WINDOW = timedelta(minutes=1)
    KEEP = timedelta(minutes=10)

    def __init__(self, limit: int) -> None:
        self.limit = limit

    async def check(self, db: AsyncSession, username: str, ip: str, now: datetime) -> None:
        since = now - self.WINDOW
        recent = LoginFailure.at >= since
        by_user = func.count().filter(LoginFailure.username == username)
        by_ip = func.count().filter(LoginFailure.ip == ip)
        stmt = select(by_user, by_ip).where(recent, or_(LoginFailure.username == username, LoginFailure.ip == ip))
        users, ips = (await db.execute(stmt)).one()
        if users >= self.limit or ips >= self.limit:
            raise TooManyRequests("登录失败次数过多，请一分钟后再试")

    async def record_failure(self, db: AsyncSession, username: str, ip: str, now: datetime) -> None:
        await db.execute(delete(LoginFailure).where(LoginFailure.at < now - self.KEEP))
        db.add(LoginFailure(at=now, username=username, ip=ip))
