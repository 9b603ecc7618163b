"""Admission to the citizens' API: requests per client address and per target (a phone, a ticket number).

Each admitted request is one ``public.*`` row of the console audit table, so every console worker counts the
same. A request is counted only once admitted: refused ones leave no row, so a flood cannot keep a caller's
phone or ticket number blocked beyond the minute of the requests that got through. The rows are kept
``console.public_audit_retention_days`` as the record of who asked for what, then pruned.

The client address is :func:`agent_console.client.client_address` (trusted reverse proxies understood).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console import keys
from agent_console.auth import Origin, record_audit
from agent_console.client import client_address
from agent_console.errors import TooManyRequests
from agent_console.models import AuditEntry
from config import Settings

log = logging.getLogger(__name__)
WINDOW = timedelta(minutes=1)
PRUNE_EVERY_S = 3600.0
PUBLIC_ACTIONS = "public.%"  # the audit actions of the citizens' API (LIKE pattern)
TOO_MANY = "请求过于频繁，请一分钟后再试"
IP_MAX, TARGET_MAX = 64, 128  # the audit table's columns


@dataclass(frozen=True)
class RateLimit:
    """The limit of one public route: ``console.public_rate_per_minute`` admitted requests in a sliding minute
    per client address (over every limited route together) and per target."""

    action: str  # the audit action of an admitted request, ``public.<what>``
    target: Callable[
        [web.Request], Awaitable[str | None]
    ]  # the phone or ticket number asked for, if any


# Route name → its limit; features add theirs at set-up (RouteTable.on_setup), the middleware applies them.
RATE_LIMITS = web.AppKey[dict[str, RateLimit]]("rate_limits")


def add_rate_limits(app: web.Application, limits: dict[str, RateLimit]) -> None:
    app[RATE_LIMITS] = app.get(RATE_LIMITS, {}) | limits


async def _count(db: AsyncSession, *conds: Any) -> int:
    return (
        await db.execute(select(func.count()).select_from(AuditEntry).where(*conds))
    ).scalar_one()


async def admit(request: web.Request, limit: RateLimit, actions: Iterable[str]) -> None:
    """Count this request as one ``limit.action`` row, or refuse it (TooManyRequests, nothing counted) when its
    client address (over ``actions``) or its target already had the limit's number of admitted requests."""
    per_minute = request.app[keys.SETTINGS].console.public_rate_per_minute
    now = request.app[keys.CLOCK]()
    since = now - WINDOW
    ip = client_address(request)[:IP_MAX]
    target = await limit.target(request)
    target = target[:TARGET_MAX] if target else None
    async with request.app[keys.SESSIONMAKER]() as db:
        by_ip = await _count(
            db, AuditEntry.at >= since, AuditEntry.action.in_(list(actions)), AuditEntry.ip == ip
        )
        by_target = (
            0
            if target is None
            else await _count(
                db,
                AuditEntry.at >= since,
                AuditEntry.action == limit.action,
                AuditEntry.target == target,
            )
        )
        if max(by_ip, by_target) >= per_minute:
            raise TooManyRequests(TOO_MANY)
        await record_audit(db, Origin(None, ip, None), limit.action, target, now)
        await db.commit()


async def prune_public_records(db: AsyncSession, now: datetime, retention_days: int) -> int:
    """Delete the citizens' API request rows older than ``retention_days``; the number deleted."""
    result = await db.execute(
        delete(AuditEntry).where(
            AuditEntry.action.like(PUBLIC_ACTIONS),
            AuditEntry.at < now - timedelta(days=retention_days),
        )
    )
    await db.commit()
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def run_public_pruning(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    stop: asyncio.Event,
    clock: Callable[[], datetime],
) -> None:
    """Prune every ``PRUNE_EVERY_S`` until ``stop`` is set (run by ``hotline run``); a failure is logged and
    retried at the next round."""
    while not stop.is_set():
        try:
            async with sessionmaker() as db:
                pruned = await prune_public_records(
                    db, clock(), settings.console.public_audit_retention_days
                )
            log.info("市民接口访问记录清理：删除 %d 条", pruned)
        except Exception:
            log.exception("市民接口访问记录清理失败，%d 秒后重试", PRUNE_EVERY_S)
        with suppress(TimeoutError):
            async with asyncio.timeout(PRUNE_EVERY_S):
                await stop.wait()
