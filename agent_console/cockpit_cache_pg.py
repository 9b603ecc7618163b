"""The cockpit's panels shared by every console worker on PostgreSQL (table ``cockpit_cache``).

One worker at a time warms them (:meth:`SharedPanels.lead` runs the warmer under the job lock
``cockpit-warmer``, :class:`hotline.leadership.RunOnce`: when that worker dies another takes over), and every
worker serves what is stored, so all of them show the same figures. A panel is stored as its JSON and rebuilt
into its model (:attr:`Panel.out`), with ``expires_at`` on the database's clock (``[cockpit] live_ttl_s`` or
``cache_ttl_s`` after it was computed). A missing value is computed by the worker asked for it and stored
with an upsert; a stale one is served at once and recomputed behind by the one worker that claims it (moves
its ``expires_at`` on). Keys name the local day; the first value a worker stores for a new day prunes the
rows of past days.

Each worker keeps the values it read for ``[cockpit] shared_read_s`` (a wall of screens does not hit the table
at every request), and the last one of each key beyond that: while the database is away the cockpit serves
those and logs once, never failing a request because of its cache.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, timedelta

from pydantic import ValidationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console.cockpit_panels import Compute, Job, PanelKey
from agent_console.models import CockpitCacheEntry
from agent_console.schemas import Model
from config.settings import CockpitSettings

log = logging.getLogger(__name__)

WARMER = "cockpit-warmer"  # the job lock of the one warmer
CACHE_ERRORS = (SQLAlchemyError, OSError, TimeoutError)
RunJob = Callable[[str, Job], Awaitable[None]]  # hotline.leadership.RunOnce.run


@dataclass
class _Held:
    """A value this worker read or computed, and when (its monotonic clock)."""

    value: Model
    read_at: float


class SharedPanels:
    """A :class:`agent_console.cockpit_panels.PanelCache` in PostgreSQL (see the module docstring)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: CockpitSettings,
        run_once: RunJob,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.run_once = run_once
        self.monotonic = monotonic
        self._held: dict[PanelKey, _Held] = {}
        self._locks: dict[PanelKey, asyncio.Lock] = {}
        self._refreshing: dict[PanelKey, asyncio.Task[None]] = {}
        self._day: date | None = None  # the newest day stored: rows of earlier days are pruned
        self.failing = False  # the table was out of reach at the last try (logged once)

    def _ttl(self, key: PanelKey) -> timedelta:
        s = self.settings
        return timedelta(seconds=s.live_ttl_s if key.panel.live else s.cache_ttl_s)

    def __contains__(self, key: PanelKey) -> bool:
        return key in self._held

    async def get(self, key: PanelKey, compute: Compute) -> Model:
        held = self._held.get(key)
        if held is not None and self.monotonic() - held.read_at < self.settings.shared_read_s:
            return held.value
        try:
            row = await self._read(key)
        except CACHE_ERRORS as exc:
            self._failed(exc)
            return held.value if held is not None else await compute()
        self._recovered()
        if row is None:
            return await self._fill(key, compute, held)
        value, stale = row
        self._hold(key, value)
        if stale and key not in self._refreshing:
            task = asyncio.create_task(
                self._refresh(key, compute), name=f"cockpit-refresh-{key.text}"
            )
            self._refreshing[key] = task
        return value

    async def warm(self, key: PanelKey, compute: Compute, *, margin_s: float) -> bool:
        lasts = CockpitCacheEntry.expires_at > func.now() + timedelta(seconds=margin_s)
        async with self.sessionmaker() as db:
            if await db.scalar(select(lasts).where(CockpitCacheEntry.key == key.text)):
                return False
        await self._store(key, compute)
        return True

    async def lead(self, job: Job) -> None:
        await self.run_once(WARMER, job)

    async def close(self) -> None:
        for task in list(self._refreshing.values()):
            task.cancel()
        await asyncio.gather(*self._refreshing.values(), return_exceptions=True)

    async def _read(self, key: PanelKey) -> tuple[Model, bool] | None:
        """The stored value and whether it is stale; None if there is none (or it no longer validates)."""
        async with self.sessionmaker() as db:
            row = (
                await db.execute(
                    select(
                        CockpitCacheEntry.value, CockpitCacheEntry.expires_at <= func.now()
                    ).where(CockpitCacheEntry.key == key.text)
                )
            ).first()
        if row is None:
            return None
        try:
            return key.panel.out.model_validate(row[0]), bool(row[1])
        except ValidationError:
            log.warning("驾驶舱共享缓存 %s 的内容不符合当前格式，重新计算", key.text)
            return None

    async def _fill(self, key: PanelKey, compute: Compute, held: _Held | None) -> Model:
        """Compute a missing value once for the concurrent askers of this worker."""
        async with self._locks.setdefault(key, asyncio.Lock()):
            now_held = self._held.get(key)
            if now_held is not None and now_held is not held:
                return now_held.value  # another request computed it meanwhile
            return await self._store(key, compute)

    async def _store(self, key: PanelKey, compute: Compute) -> Model:
        value = await compute()
        self._hold(key, value)
        try:
            await self._write(key, value)
        except CACHE_ERRORS as exc:
            self._failed(exc)
        else:
            self._recovered()
        return value

    async def _write(self, key: PanelKey, value: Model) -> None:
        """Upsert the value; the first of a new day prunes the rows of past days."""
        upsert = pg_insert(CockpitCacheEntry).values(
            key=key.text,
            day=key.day,
            value=value.model_dump(mode="json"),
            computed_at=func.now(),
            expires_at=func.now() + self._ttl(key),
        )
        fresh = {c: upsert.excluded[c] for c in ("value", "computed_at", "expires_at")}
        async with self.sessionmaker() as db, db.begin():
            await db.execute(upsert.on_conflict_do_update(index_elements=["key"], set_=fresh))
            if self._day is None or key.day > self._day:
                await db.execute(delete(CockpitCacheEntry).where(CockpitCacheEntry.day < key.day))
        if self._day is None or key.day > self._day:
            self._day = key.day

    async def _claim(self, key: PanelKey) -> bool:
        """Take the recomputation of a stale value (one worker does it); whether this worker took it."""
        async with self.sessionmaker() as db, db.begin():
            claimed = await db.execute(
                update(CockpitCacheEntry)
                .where(
                    CockpitCacheEntry.key == key.text, CockpitCacheEntry.expires_at <= func.now()
                )
                .values(expires_at=func.now() + self._ttl(key))
            )
        return claimed.rowcount == 1  # type: ignore[attr-defined]

    async def _refresh(self, key: PanelKey, compute: Compute) -> None:
        try:
            if await self._claim(key):
                await self._store(key, compute)
        except CACHE_ERRORS as exc:
            self._failed(exc)
        except Exception:
            log.exception("驾驶舱数据刷新失败（%s），继续显示上次的结果", key.text)
        finally:
            self._refreshing.pop(key, None)

    def _hold(self, key: PanelKey, value: Model) -> None:
        self._held[key] = _Held(value, self.monotonic())
        for old in [k for k in self._held if k.day < key.day]:
            del self._held[old]
            self._locks.pop(old, None)

    def _failed(self, exc: BaseException) -> None:
        if not self.failing:
            log.warning("驾驶舱共享缓存暂不可用（%s），先显示本进程最近的结果", exc)
        self.failing = True

    def _recovered(self) -> None:
        if self.failing:
            log.info("驾驶舱共享缓存已恢复")
        self.failing = False
