"""The leader cockpit's panels (领导驾驶舱) as computations that need no request, their cache, and the warmer.

Each panel is a function of a :class:`PanelSource` (database, settings, district layout), the time and, for
some, a period. :class:`Cockpit` serves them from two caches — today's counts and the warnings for
``[cockpit] live_ttl_s`` seconds, the panels over long periods for ``cache_ttl_s`` — keyed by panel, period
and local day, so a new day (or a moved clock) never reuses yesterday's figures. With ``warm_up`` on,
:meth:`Cockpit.keep_warm` (an aiohttp cleanup context) computes every panel when the console starts and
recomputes each shortly before it expires, so a leader's page is always served from the cache: no request
waits for a computation and a wall of cockpit screens costs the database one computation per panel and
period. Every figure is city-wide and aggregated in SQL (``tickets.metrics``, ``tickets.dashboard``).

Where the values live is the :class:`PanelCache`: in this process's memory (:class:`LocalPanels`, SQLite: one
process), or in PostgreSQL for every console worker (:class:`agent_console.cockpit_cache_pg.SharedPanels`:
one warmer among them, every worker showing the same figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console.geo import DistrictLayout
from agent_console.schemas import Model
from config import Settings
from config.settings import CockpitSettings
from ivr.service_levels import service_levels
from tickets import dashboard, hot_topics
from tickets.metrics import metrics
from tickets.ranking import rank_departments

log = logging.getLogger(__name__)
Period = Literal["today", "week", "month", "30d"]
PERIOD_LABELS: dict[str, str] = {"today": "今日", "week": "本周", "month": "本月", "30d": "近30天"}


# --- the cache ------------------------------------------------------------------------------------------------


class TtlCache:
    """Values recomputed at most once per ``ttl_s`` per key. Only the very first ask waits for the computation
    (concurrent first askers share it); later, a stale value is served at once while it is recomputed in the
    background, so no page waits on an expired cache. :meth:`warm` computes a value ahead of any ask. Values
    expired for longer than ``ttl_s`` are dropped (keys name a day: yesterday's go)."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._values: dict[Any, tuple[float, Any]] = {}
        self._locks: dict[Any, asyncio.Lock] = {}
        self._refreshing: dict[Any, asyncio.Task[None]] = {}

    async def get(self, key: Any, compute: Callable[[], Awaitable[Any]]) -> Any:
        hit = self._values.get(key)
        if hit is None:
            async with self._locks.setdefault(key, asyncio.Lock()):
                if key not in self._values:
                    await self._store(key, compute)
            return self._values[key][1]
        if hit[0] <= self.clock() and key not in self._refreshing:
            task = asyncio.create_task(self._refresh(key, compute), name=f"cockpit-refresh-{key}")
            self._refreshing[key] = task
        return hit[1]

    async def warm(
        self, key: Any, compute: Callable[[], Awaitable[Any]], *, margin_s: float
    ) -> bool:
        """Compute the value now if it is missing or expires within ``margin_s``; whether it was computed."""
        async with self._locks.setdefault(key, asyncio.Lock()):
            hit = self._values.get(key)
            if hit is not None and hit[0] - self.clock() > margin_s:
                return False
            await self._store(key, compute)
            return True

    def __contains__(self, key: Any) -> bool:
        return key in self._values

    async def _store(self, key: Any, compute: Callable[[], Awaitable[Any]]) -> None:
        value = await compute()
        now = self.clock()
        self._values[key] = (now + self.ttl_s, value)
        for old in [k for k, (expires, _) in self._values.items() if expires + self.ttl_s < now]:
            if old not in self._refreshing:
                del self._values[old]

    async def _refresh(self, key: Any, compute: Callable[[], Awaitable[Any]]) -> None:
        try:
            await self._store(key, compute)
        except Exception:
            log.exception("驾驶舱数据刷新失败（%s），继续显示上次的结果", key)
        finally:
            self._refreshing.pop(key, None)

    async def close(self) -> None:
        """Stop background refreshes."""
        for task in list(self._refreshing.values()):
            task.cancel()
        await asyncio.gather(*self._refreshing.values(), return_exceptions=True)


# --- periods --------------------------------------------------------------------------------------------------


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def period_range(period: str, now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """``[start, now)`` of a named period in local time (the week starts on Monday)."""
    today = now.astimezone(tz).date()
    first = {
        "today": today,
        "week": today - timedelta(days=today.weekday()),
        "month": today.replace(day=1),
        "30d": today - timedelta(days=29),
    }[period]
    return _midnight(first, tz), now


class Span(Model):
    """The period a panel covers: ``[start, end)``."""

    start: datetime
    end: datetime
    label: str


def period_span(period: Period | None, now: datetime, tz: ZoneInfo) -> Span:
    """The span of a named period (this month when none is named), with its label."""
    period = period or "month"
    start, end = period_range(period, now, tz)
    return Span(start=start, end=end, label=PERIOD_LABELS[period])


@dataclass(frozen=True)
class PanelSource:
    """What every panel computation reads from."""

    sessionmaker: async_sessionmaker[AsyncSession]
    settings: Settings
    layout: DistrictLayout

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.settings.timezone)

    def db(self) -> AsyncSession:
        return self.sessionmaker()


# --- panels ---------------------------------------------------------------------------------------------------


class TodayOut(Model):
    day: date
    received: int = Field(description="今日受理")
    instant: int = Field(description="今日即办")
    closed: int = Field(description="今日受理且已办结")
    instant_rate: float | None
    open: int = Field(description="在办工单（全部）")
    overdue: int = Field(description="超期在办（全部）")


async def today_panel(src: PanelSource, now: datetime, _period: Period | None = None) -> TodayOut:
    start, end = period_range("today", now, src.tz)
    async with src.db() as db:
        m = (await metrics(db, start, end, now=now, settings=src.settings))["total"]
        b = await dashboard.backlog(db, now)
    return TodayOut(
        day=start.date(),
        received=m["received"],
        instant=m["instant"],
        closed=m["closed"],
        instant_rate=m["instant_rate"],
        open=b.open,
        overdue=b.overdue,
    )


class DayOut(Model):
    day: date
    received: int
    closed: int = Field(description="当日受理且已办结")


class TrendOut(Model):
    span: Span
    days: list[DayOut]


async def trend_panel(src: PanelSource, now: datetime, _period: Period | None = None) -> TrendOut:
    tz = src.tz
    today = now.astimezone(tz).date()
    days = src.settings.cockpit.trend_days
    start, end = (
        _midnight(today - timedelta(days=days - 1), tz),
        _midnight(today + timedelta(days=1), tz),
    )
    async with src.db() as db:
        rows = await dashboard.daily_counts(db, start, end, tz)
    return TrendOut(
        span=Span(start=start, end=end, label=f"近{days}天"),
        days=[DayOut(day=r.day, received=r.received, closed=r.closed) for r in rows],
    )


class CategoryOut(Model):
    name: str
    received: int
    closed: int
    closure_rate: float | None


class CategoriesOut(Model):
    span: Span
    categories: list[CategoryOut]


async def categories_panel(
    src: PanelSource, now: datetime, period: Period | None = "month"
) -> CategoriesOut:
    span = period_span(period, now, src.tz)
    async with src.db() as db:
        m = await metrics(db, span.start, span.end, by="category", now=now, settings=src.settings)
    return CategoriesOut(
        span=span,
        categories=[
            CategoryOut(
                name=g["label"],
                received=g["received"],
                closed=g["closed"],
                closure_rate=g["closure_rate"],
            )
            for g in m["groups"]
        ],
    )


class DepartmentOut(Model):
    code: str
    name: str
    received: int
    closed: int
    response_rate: float | None = Field(description="响应率（按时签收）")
    closure_rate: float | None = Field(description="办结率")
    on_time_rate: float | None = Field(description="按期办结率")
    satisfaction_rate: float | None = Field(description="满意率")
    composite: float | None = Field(description="综合得分：三率平均（缺项不计）")


class DepartmentsOut(Model):
    span: Span
    departments: list[DepartmentOut] = Field(description="按综合得分从高到低")


def ranking(groups: list[dict[str, Any]]) -> list[DepartmentOut]:
    """Departments by composite score, best first (:func:`tickets.ranking.rank_departments`)."""
    return [
        DepartmentOut(
            code=g["key"],
            name=g["label"],
            received=g["received"],
            closed=g["closed"],
            response_rate=g["response_rate"],
            closure_rate=g["closure_rate"],
            on_time_rate=g["on_time_rate"],
            satisfaction_rate=g["satisfaction_rate"],
            composite=score,
        )
        for score, g in rank_departments(groups)
    ]


async def departments_panel(
    src: PanelSource, now: datetime, period: Period | None = "month"
) -> DepartmentsOut:
    span = period_span(period, now, src.tz)
    async with src.db() as db:
        m = await metrics(db, span.start, span.end, by="department", now=now, settings=src.settings)
    return DepartmentsOut(span=span, departments=ranking(m["groups"]))


class TopicOut(Model):
    text: str = Field(description="代表性诉求：该热点中最居中的一条工单内容（截取前 60 字）")
    tickets: int = Field(description="该热点的工单数")
    weight: float = Field(description="工单数与最大热点之比，最大热点为 1")
    category: str | None = Field(description="其中最多的诉求分类")
    district: str | None = Field(description="其中最多的区县")


def _topic_out(t: hot_topics.HotTopic) -> TopicOut:
    return TopicOut(
        text=t.label, tickets=t.tickets, weight=t.weight, category=t.category, district=t.district
    )


class HotTopicsOut(Model):
    span: Span
    tickets_read: int = Field(description="参与分析的最新工单数")
    topics: list[TopicOut] = Field(description="相似诉求归成的热点，工单多的在前")


async def hot_topics_panel(
    src: PanelSource, now: datetime, _period: Period | None = None
) -> HotTopicsOut:
    cfg = src.settings.cockpit
    start = now - timedelta(days=cfg.hot_topics_days)
    async with src.db() as db:
        found = await hot_topics.hot_topics(
            db,
            start,
            now,
            settings=src.settings,
            count=cfg.hot_topics_count,
            sample=cfg.hot_topics_sample,
        )
    return HotTopicsOut(
        span=Span(start=start, end=now, label=f"近{cfg.hot_topics_days}天"),
        tickets_read=found.tickets_read,
        topics=[_topic_out(t) for t in found.topics],
    )


class ProblemOut(Model):
    category: str
    tickets: int
    repeats: int = Field(description="其中重复件")
    repeat_rate: float
    topics: list[TopicOut] = Field(description="该分类工单最集中的诉求（代表性诉求）")


class ProblemsOut(Model):
    span: Span
    problems: list[ProblemOut] = Field(description="本月工单最多的诉求分类（每月一题候选）")


async def frequent_problems_panel(
    src: PanelSource, now: datetime, _period: Period | None = None
) -> ProblemsOut:
    start, end = period_range("month", now, src.tz)
    async with src.db() as db:
        found = await hot_topics.frequent_problems(db, start, end, settings=src.settings)
    return ProblemsOut(
        span=Span(start=start, end=end, label="本月"),
        problems=[
            ProblemOut(
                category=p.category,
                tickets=p.tickets,
                repeats=p.repeats,
                repeat_rate=round(p.repeat_rate, 4),
                topics=[_topic_out(t) for t in p.topics],
            )
            for p in found
        ],
    )


class StreetHeat(Model):
    name: str
    cell: tuple[int, int]
    tickets: int


class DistrictHeat(Model):
    name: str
    tickets: int = Field(description="该区县全部工单（含未填或未知街道）")
    streets: list[StreetHeat]


class HeatmapOut(Model):
    span: Span
    city: str
    columns: int
    rows: int
    districts: list[DistrictHeat]
    unplaced: int = Field(description="未填区县或区县不在布局中的工单")


def heatmap(layout: DistrictLayout, counts: list[dashboard.PlaceCount], span: Span) -> HeatmapOut:
    """The layout with each district's and street's ticket count."""
    by_place = {(c.district, c.street): c.tickets for c in counts}
    by_district: dict[str | None, int] = {}
    for c in counts:
        by_district[c.district] = by_district.get(c.district, 0) + c.tickets
    districts = [
        DistrictHeat(
            name=d.name,
            tickets=by_district.get(d.name, 0),
            streets=[
                StreetHeat(name=s.name, cell=s.cell, tickets=by_place.get((d.name, s.name), 0))
                for s in d.streets
            ],
        )
        for d in layout.districts
    ]
    known = {d.name for d in layout.districts}
    unplaced = sum(n for d, n in by_district.items() if d not in known)
    return HeatmapOut(
        span=span,
        city=layout.city,
        columns=layout.columns,
        rows=layout.rows,
        districts=districts,
        unplaced=unplaced,
    )


async def heatmap_panel(
    src: PanelSource, now: datetime, period: Period | None = "month"
) -> HeatmapOut:
    span = period_span(period, now, src.tz)
    async with src.db() as db:
        counts = await dashboard.place_counts(db, span.start, span.end)
    return heatmap(src.layout, counts, span)


class WarningOut(Model):
    ticket_no: str
    level: Literal["red", "yellow"]
    reason: str
    reason_label: str
    raised_at: datetime
    deadline: datetime | None
    department: str | None
    category: str | None
    summary: str


class WarningsOut(Model):
    red: int = Field(description="红牌（未解除）")
    yellow: int = Field(description="黄牌（未解除）")
    items: list[WarningOut]


async def warnings_panel(
    src: PanelSource, _now: datetime, _period: Period | None = None
) -> WarningsOut:
    async with src.db() as db:
        counts = await dashboard.warning_counts(db)
        items = await dashboard.open_warnings(db, limit=src.settings.cockpit.warnings_listed)
    return WarningsOut(
        red=counts["red"],
        yellow=counts["yellow"],
        items=[
            WarningOut(
                ticket_no=w.ticket_no,
                level=w.level,
                reason=w.reason,
                reason_label=w.reason_label,  # type: ignore[arg-type]
                raised_at=w.raised_at,
                deadline=w.deadline,
                department=w.department,
                category=w.category,
                summary=w.summary,
            )
            for w in items
        ],
    )


class CallsTodayOut(Model):
    """Today's service levels from the call log (see :mod:`ivr.service_levels` for the definitions)."""

    day: date
    service_level_s: float = Field(description="及时接通时限（秒）")
    offered: int = Field(description="今日呼入")
    answered: int = Field(description="接通（人工、领导、机器人）")
    abandoned: int = Field(description="放弃")
    abandoned_menu: int = Field(description="菜单中放弃")
    abandoned_queue: int = Field(description="排队中放弃")
    abandoned_ringing: int = Field(description="振铃中放弃")
    connection_rate: float | None = Field(description="接通率")
    service_level_rate: float | None = Field(description="15秒接通率（时限内接通 ÷ 呼入）")
    avg_wait_s: float | None = Field(description="平均等待（秒）")
    p90_wait_s: float | None = Field(description="P90 等待（秒）")
    bot_sessions: int = Field(description="机器人接听")
    bot_transfers: int = Field(description="机器人转人工")


async def calls_panel(
    src: PanelSource, now: datetime, _period: Period | None = None
) -> CallsTodayOut:
    start, end = period_range("today", now, src.tz)
    async with src.db() as db:
        result = await service_levels(db, start, end, settings=src.settings)
    figures = {k: v for k, v in result["total"].items() if k in CallsTodayOut.model_fields}
    return CallsTodayOut(day=start.date(), service_level_s=result["service_level_s"], **figures)


# --- the cockpit: cached panels, kept warm ---------------------------------------------------------------------

PanelCompute = Callable[[PanelSource, datetime, Any], Awaitable[Model]]
Compute = Callable[[], Awaitable[Model]]
Job = Callable[[], Coroutine[Any, Any, None]]
ALL_PERIODS: tuple[Period, ...] = ("today", "week", "month", "30d")


@dataclass(frozen=True)
class Panel:
    compute: PanelCompute
    out: type[Model]  # what ``compute`` returns (a shared cache rebuilds it from its JSON)
    live: bool = False  # today's figures: the short time-to-live
    periods: tuple[Period | None, ...] = (None,)


PANELS: dict[str, Panel] = {
    "today": Panel(today_panel, TodayOut, live=True),
    "calls": Panel(calls_panel, CallsTodayOut, live=True),
    "warnings": Panel(warnings_panel, WarningsOut, live=True),
    "trend": Panel(trend_panel, TrendOut),
    "categories": Panel(categories_panel, CategoriesOut, periods=ALL_PERIODS),
    "departments": Panel(departments_panel, DepartmentsOut, periods=ALL_PERIODS),
    "heatmap": Panel(heatmap_panel, HeatmapOut, periods=ALL_PERIODS),
    "hot_topics": Panel(hot_topics_panel, HotTopicsOut),
    "frequent_problems": Panel(frequent_problems_panel, ProblemsOut),
}


@dataclass(frozen=True)
class PanelKey:
    """A cached value: a panel, its period and the local day it counts (a new day never reuses yesterday's)."""

    name: str
    period: Period | None
    day: date

    @property
    def panel(self) -> Panel:
        return PANELS[self.name]

    @property
    def text(self) -> str:
        return f"{self.name}:{self.period or ''}:{self.day.isoformat()}"


class PanelCache(Protocol):
    """Where the cockpit keeps its computed panels: :class:`LocalPanels` in one process (SQLite), or
    :class:`agent_console.cockpit_cache_pg.SharedPanels` for every console worker on PostgreSQL."""

    async def get(self, key: PanelKey, compute: Compute) -> Model:
        """The value of ``key``: computed at the first ask; once stale, served at once and recomputed behind."""

    async def warm(self, key: PanelKey, compute: Compute, *, margin_s: float) -> bool:
        """Compute the value now if it is missing or expires within ``margin_s``; whether it was computed."""

    def __contains__(self, key: PanelKey) -> bool: ...

    async def lead(self, job: Job) -> None:
        """Run the warmer ``job``: here, or only while this process is the one warmer of the database."""

    async def close(self) -> None:
        """Stop background refreshes."""


# The shared cache create_app was given (PostgreSQL); without it each process keeps its own.
PANEL_CACHE = web.AppKey[PanelCache]("cockpit_panel_cache")


class LocalPanels:
    """The panels of one process: today's in a :class:`TtlCache` of ``live_ttl_s``, the others of
    ``cache_ttl_s``; the warmer simply runs."""

    def __init__(
        self, settings: CockpitSettings, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.live = TtlCache(settings.live_ttl_s, monotonic)
        self.slow = TtlCache(settings.cache_ttl_s, monotonic)

    def _cache(self, key: PanelKey) -> TtlCache:
        return self.live if key.panel.live else self.slow

    async def get(self, key: PanelKey, compute: Compute) -> Model:
        value: Model = await self._cache(key).get(key, compute)
        return value

    async def warm(self, key: PanelKey, compute: Compute, *, margin_s: float) -> bool:
        return await self._cache(key).warm(key, compute, margin_s=margin_s)

    def __contains__(self, key: PanelKey) -> bool:
        return key in self._cache(key)

    async def lead(self, job: Job) -> None:
        await job()

    async def close(self) -> None:
        await self.live.close()
        await self.slow.close()


class Cockpit:
    """The panels served from their cache (see the module docstring)."""

    def __init__(
        self,
        source: PanelSource,
        clock: Callable[[], datetime],
        *,
        cache: PanelCache | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        cfg = source.settings.cockpit
        self.source, self.clock = source, clock
        self.cache: PanelCache = cache or LocalPanels(cfg, monotonic)
        # A round recomputes what would expire before the round after next: requests never meet an expired value
        # (as long as a computation takes less than a round), and each value is recomputed about once per TTL.
        self.interval_s = min(cfg.live_ttl_s, cfg.cache_ttl_s) / 4
        self.rounds = 0
        self._round_done = asyncio.Condition()

    def _key(self, name: str, now: datetime, period: Period | None) -> PanelKey:
        return PanelKey(name, period, now.astimezone(self.source.tz).date())

    def _compute(self, name: str, now: datetime, period: Period | None) -> Compute:
        return lambda: PANELS[name].compute(self.source, now, period)

    async def get(self, name: str, now: datetime, period: Period | None = None) -> Any:
        """A panel's figures for ``now`` (cached)."""
        return await self.cache.get(self._key(name, now, period), self._compute(name, now, period))

    def is_cached(self, name: str, now: datetime, period: Period | None = None) -> bool:
        return self._key(name, now, period) in self.cache

    async def warm(self) -> int:
        """Compute every panel and period that is missing or expires before the next round; how many were."""
        now, computed = self.clock(), 0
        for name, panel in PANELS.items():
            for period in panel.periods:
                try:
                    computed += await self.cache.warm(
                        self._key(name, now, period),
                        self._compute(name, now, period),
                        margin_s=self.interval_s * 1.5,
                    )
                except Exception:
                    log.exception("驾驶舱预计算失败（%s %s），请求时再计算", name, period or "")
        return computed

    async def next_round(self) -> int:
        """Wait for the warmer's next completed round; the number of rounds done so far."""
        async with self._round_done:
            await self._round_done.wait()
            return self.rounds

    async def _keep_warm(self) -> None:
        while True:
            await self.warm()
            self.rounds += 1
            async with self._round_done:
                self._round_done.notify_all()
            await asyncio.sleep(self.interval_s)

    async def keep_warm(self, _app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: warm the cache while the app runs (if ``[cockpit] warm_up``)."""
        task = None
        if self.source.settings.cockpit.warm_up:
            task = asyncio.create_task(self.cache.lead(self._keep_warm), name="cockpit-warmer")
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.cache.close()
