"""Prometheus metrics of one console app, in its own registry (no process-global state).

Figures read from elsewhere (today's service levels, the live queue) are set just before each scrape by the
``refreshers`` that the views register."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)
Refresher = Callable[["ConsoleMetrics"], Awaitable[None]]


class ConsoleMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "console_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "console_http_request_seconds",
            "HTTP request duration by route",
            ["route"],
            registry=self.registry,
        )
        self.logins = Counter(
            "console_logins", "Login attempts by outcome", ["outcome"], registry=self.registry
        )
        self.websockets = Gauge(
            "console_websockets", "Open live-update connections", registry=self.registry
        )
        self.calls_today = Gauge(
            "hotline_calls_today",
            "Today's service levels from the call log (counts, rates "
            "0-1, seconds; NaN when undefined)",
            ["figure"],
            registry=self.registry,
        )
        self.queue_now = Gauge(
            "hotline_queue_now",
            "The live queue: waiting callers, longest wait (s), agents by "
            "state, bot and leader calls",
            ["figure"],
            registry=self.registry,
        )
        self.refreshers: list[Refresher] = []

    async def refresh(self) -> None:
        """Set the figures read from elsewhere; one that fails keeps its last values (logged)."""
        for refresher in self.refreshers:
            try:
                await refresher(self)
            except Exception:
                log.exception(
                    "metrics refresh failed: %s", getattr(refresher, "__name__", refresher)
                )

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def middleware(self) -> Middleware:
        @web.middleware
        async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
            route = request.match_info.route.name or (
                "static"
                if isinstance(request.match_info.route.resource, web.StaticResource)
                else "unmatched"
            )
            start = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                self.requests.labels(request.method, route, str(status)).inc()
                self.latency.labels(route).observe(time.perf_counter() - start)

        return count
