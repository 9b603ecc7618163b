"""Browser-facing protections: security headers, CSRF tokens, login throttling, the plain-HTTP warning."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from agent_console.errors import CsrfFailed, TooManyRequests
from agent_console.models import LoginFailure
from config.settings import ConsoleSettings

log = logging.getLogger(__name__)

CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
LOGIN_CSRF_COOKIE = "hotline_login_csrf"  # double-submit token of the login form (no session yet)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def content_security_policy(connect: Sequence[str] = ()) -> str:
    """Scripts and styles only from files we serve: no inline script, no CDN, no external fonts. ``connect``:
    origins pages may open connections to besides their own (the PBX's SIP-over-WebSocket server)."""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            " ".join(["connect-src 'self'", *connect]),
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


CONTENT_SECURITY_POLICY = content_security_policy()
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    # the microphone only for the console's own pages (the softphone)
    "Permissions-Policy": "camera=(), geolocation=(), microphone=(self)",
}
# Behind HTTPS (console.secure_cookies): browsers use only HTTPS for this host for a year.
HSTS = {"Strict-Transport-Security": "max-age=31536000"}


def security_headers(*, https: bool, connect: Sequence[str] = ()) -> Middleware:
    """Put the security headers on every answer, errors included; ``https`` adds Strict-Transport-Security,
    ``connect`` the origins pages may connect to (see :func:`content_security_policy`)."""
    headers = SECURITY_HEADERS | {"Content-Security-Policy": content_security_policy(connect)}
    if https:
        headers |= HSTS

    @web.middleware
    async def add_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(headers)
            raise
        if not response.prepared:
            response.headers.update(headers)
        return response

    return add_headers


def is_loopback(host: str) -> bool:
    """Whether a listen address is reachable from this machine only (``""`` and ``0.0.0.0`` are not)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost, or every interface


def warn_if_plain_http(host: str, settings: ConsoleSettings) -> None:
    """Say loudly at start when other machines can reach the console but its cookies may travel over plain HTTP."""
    if not settings.secure_cookies and not is_loopback(host):
        log.warning(
            "console listens on %r, reachable from other machines, with console.secure_cookies = false: "
            "session cookies can travel over plain HTTP. Serve it behind HTTPS and set "
            "secure_cookies = true in [console] (or HOTLINE_CONSOLE_SECURE_COOKIES=true)",
            host,
        )


def new_token() -> str:
    return secrets.token_urlsafe(32)


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison of two secrets (any characters; an empty one never matches)."""
    return (
        bool(expected)
        and bool(given)
        and hmac.compare_digest(str(expected).encode(), str(given).encode())
    )


def bearer_matches(request: web.Request, token: str) -> bool:
    """Whether the request carries ``Authorization: Bearer <token>``."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and tokens_match(token, given.strip())


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


@dataclass(frozen=True)
class LoginLimits:
    """Unsuccessful logins allowed in a sliding minute."""

    per_account_and_address: int
    per_address: int  # over all accounts
    per_account: (
        int  # over all addresses; past it, only an address without failures of its own may try
    )

    @classmethod
    def of(cls, settings: ConsoleSettings) -> LoginLimits:
        return cls(
            settings.login_attempts_per_minute,
            settings.login_attempts_per_address_per_minute,
            settings.login_attempts_per_account_per_minute,
        )


class LoginThrottle:
    """Login attempts counted per account and address, per address, and per account, in a sliding minute.

    Each attempt is a row in ``console_login_failures``, committed before its password is checked and deleted
    when it succeeds: a cancelled request or a burst of parallel attempts still counts, and every console
    worker sharing the database counts the same attempts. An address that fails locks out only itself: the
    per-account ceiling refuses only addresses that failed in the minute, so the owner of an account logs in
    from their own address while another address guesses. Rows older than ten minutes are pruned.
    """

    WINDOW = timedelta(minutes=1)
    KEEP = timedelta(minutes=10)

    def __init__(self, limits: LoginLimits) -> None:
        self.limits = limits

    async def admit(self, db: AsyncSession, username: str, ip: str, now: datetime) -> int:
        """Count one attempt (committed) and return its id; TooManyRequests past a limit.

        An attempt refused at once writes nothing (a flood adds no rows); one admitted counts again after its
        row is committed, so of parallel attempts only as many as the limits allow go on.
        """
        self._refuse_past_limits(await self._counts(db, username, ip, now), own=0)
        await db.execute(delete(LoginFailure).where(LoginFailure.at < now - self.KEEP))
        attempt = LoginFailure(at=now, username=username, ip=ip)
        db.add(attempt)
        await db.flush()
        attempt_id = attempt.id
        await db.commit()
        self._refuse_past_limits(await self._counts(db, username, ip, now), own=1)
        return attempt_id

    async def succeeded(self, db: AsyncSession, attempt_id: int) -> None:
        """Forget an attempt that logged in (in the caller's transaction)."""
        await db.execute(delete(LoginFailure).where(LoginFailure.id == attempt_id))

    async def _counts(
        self, db: AsyncSession, username: str, ip: str, now: datetime
    ) -> tuple[int, int, int]:
        """Attempts in the window: of this account from this address, from this address, of this account."""
        by_user, by_ip = LoginFailure.username == username, LoginFailure.ip == ip
        stmt = select(
            func.count().filter(and_(by_user, by_ip)),
            func.count().filter(by_ip),
            func.count().filter(by_user),
        ).where(LoginFailure.at >= now - self.WINDOW, or_(by_user, by_ip))
        pair, address, account = (await db.execute(stmt)).one()
        return pair, address, account

    def _refuse_past_limits(self, counts: tuple[int, int, int], *, own: int) -> None:
        """``own``: how many of the counted attempts are this one's (0 before its row is written, then 1)."""
        pair, address, account = (n - own for n in counts)
        limits = self.limits
        if (
            pair >= limits.per_account_and_address
            or address >= limits.per_address
            or (account >= limits.per_account and address > 0)
        ):
            raise TooManyRequests("登录失败次数过多，请一分钟后再试")
