"""Request middlewares: errors as JSON or an error page, refusal of anything not in the route registry, and the
rate limits of the citizens' API."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from agent_console import keys
from agent_console.errors import (
    STATUS_ERRORS,
    ConsoleError,
    DomainError,
    Forbidden,
    InternalError,
    console_error,
)
from agent_console.public_limits import RATE_LIMITS, admit
from agent_console.routing import is_registered, json_response, render_error
from config.errors import HotlineError

log = logging.getLogger(__name__)
JSON_PATHS = frozenset(
    {"/ws", "/healthz", "/metrics"}
)  # besides /api/…: machine endpoints answer errors in JSON


def _wants_json(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.path in JSON_PATHS


def _as_console_error(exc: Exception) -> ConsoleError | None:
    if isinstance(exc, ConsoleError | HotlineError):
        return console_error(exc)
    if isinstance(exc, web.HTTPException):
        cls = STATUS_ERRORS.get(exc.status)
        return cls() if cls else DomainError(exc.status, "console.http_error", exc.reason)
    return None


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes ``{"error": {"code", "message"}}`` under /api, /ws, /healthz, or an error page."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = _as_console_error(exc)
    except Exception as exc:
        error = _as_console_error(exc)
        if error is None:
            log.exception("unhandled error on %s %s", request.method, request.path)
            error = InternalError()
    assert error is not None
    if _wants_json(request):
        return json_response(error.body(), status=error.status)
    return render_error(request, request.get(keys.SESSION), error)


@web.middleware
async def deny_unregistered(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Deny by default: a route that did not come through the registry (with its role rule) is refused."""
    match = request.match_info
    if (
        match.http_exception is None
        and not isinstance(match.route.resource, web.StaticResource)
        and not is_registered(match.handler)
    ):
        raise Forbidden()
    return await handler(request)


@web.middleware
async def rate_limits(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Admit a request to a route with a :class:`~agent_console.public_limits.RateLimit` before its handler runs
    (429 past the limit)."""
    limits = request.app.get(RATE_LIMITS, {})
    route = getattr(request.match_info.handler, "__console_route__", None)
    limit = limits.get(route.name) if route is not None else None
    if limit is not None:
        await admit(request, limit, {each.action for each in limits.values()})
    return await handler(request)
