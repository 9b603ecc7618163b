"""The leader cockpit (领导驾驶舱): one page and one JSON route per panel, so the page fills in progressively.

Who sees it: leaders (领导), administrators and dispatchers (派单员, who steer the day's work from the same
figures); agents, handlers and grid workers do not (a handler's figures are their department's, shown on its
own pages). Every figure is city-wide and aggregated in SQL (``tickets.metrics``, ``tickets.dashboard``).
Panels over long periods (trend, categories, departments, heat map, hot topics, 每月一题 candidates) are cached
for ``[cockpit] cache_ttl_s`` seconds, so a wall of cockpit screens costs one computation a minute; today's
counts, the warnings and the live queue are always fresh.

Live queue (hub topic ``queue``): the telephony side publishes a :class:`QueueSnapshot` (use
:func:`snapshot_of` on the controller's ``HotlineState``) whenever the queue changes; numbers in it are
already masked, since every subscriber gets the same payload. The console keeps the latest one for
``GET /api/v1/cockpit/queue`` so a page opened between two changes starts with the current state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import Field

from agent_console import keys
from agent_console.geo import DistrictLayout, layout_from_settings
from agent_console.hub import TopicRule
from agent_console.masking import mask_phone
from agent_console.roles import Role
from agent_console.routing import Call, RouteTable
from agent_console.schemas import Model
from config import Settings
from ivr import events as ivr_events
from ivr.state import HotlineState
from tickets import dashboard, hot_topics
from tickets.metrics import metrics

routes = RouteTable("cockpit")
log = logging.getLogger(__name__)
COCKPIT_ROLES = frozenset({Role.LEADER, Role.ADMIN, Role.DISPATCHER})
QUEUE_TOPIC = "queue"
# Who may subscribe to the live queue: the cockpit's roles, and agents (their workspace shows the queue).
QUEUE_TOPIC_ROLES = COCKPIT_ROLES | {Role.AGENT}
Period = Literal["today", "week", "month", "30d"]
PERIOD_LABELS = {"today": "今日", "week": "本周", "month": "本月", "30d": "近30天"}
_BUSY = {ivr_events.DEVICE_INUSE, ivr_events.DEVICE_BUSY, ivr_events.DEVICE_RINGINUSE, ivr_events.DEVICE_ONHOLD}


# --- live queue -----------------------------------------------------------------------------------------------


class WaitingCaller(Model):
    position: int = Field(ge=1, description="排队位置")
    caller: str = Field(description="来电号码（已脱敏）")
    wait_s: float = Field(ge=0, description="已等待秒数")
    menu: str | None = Field(None, description="按键菜单选择")


class AgentCounts(Model):
    available: int = Field(0, ge=0, description="空闲坐席")
    busy: int = Field(0, ge=0, description="通话中坐席")
    paused: int = Field(0, ge=0, description="示忙坐席")
    unavailable: int = Field(0, ge=0, description="未登录或不可达")


class QueueSnapshot(Model):
    """The payload of hub topic ``queue`` (and of ``GET /api/v1/cockpit/queue``)."""

    at: datetime | None = Field(None, description="快照时间；为空表示尚未收到话务数据")
    waiting: list[WaitingCaller] = Field(default_factory=list)
    agents: AgentCounts = Field(default_factory=AgentCounts)
    bot_calls: int = Field(0, ge=0, description="正在与智能机器人通话")
    leader_calls: int = Field(0, ge=0, description="领导正在接听")
    talking: int = Field(0, ge=0, description="坐席与领导通话中的来电")


def snapshot_of(state: HotlineState, now: datetime) -> QueueSnapshot:
    """The queue as the cockpit shows it, from the controller's state (for the publisher of topic ``queue``)."""
    waiting = [WaitingCaller(position=i, caller=mask_phone(c.caller_number, Role.LEADER),
                             wait_s=round(c.wait_so_far(now), 1), menu=c.menu)
               for i, c in enumerate(state.waiting_calls(), start=1)]
    agents = AgentCounts()
    for m in state.members.values():
        if m.interface in state.leaders:
            continue
        if m.paused:
            agents.paused += 1
        elif not m.available:
            agents.unavailable += 1
        elif m.in_call or m.status in _BUSY:
            agents.busy += 1
        else:
            agents.available += 1
    live = [c for c in state.calls.values() if c.ended_at is None]
    return QueueSnapshot(
        at=now, waiting=waiting, agents=agents,
        bot_calls=sum(1 for c in live if c.bot_uuid is not None and c.answered_by is None and not c.waiting),
        leader_calls=sum(1 for c in live if c.answered_by == "leader"),
        talking=sum(1 for c in live if c.answered_by is not None),
    )


class QueueBoard:
    """Keeps the latest ``queue`` snapshot heard on the hub."""

    def __init__(self) -> None:
        self.latest = QueueSnapshot()

    async def follow(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: listen on the hub while the app runs."""
        sub = app[keys.HUB].subscribe()
        sub.topics.add(QUEUE_TOPIC)

        async def listen() -> None:
            while (event := await sub.next()) is not None:
                with contextlib.suppress(ValueError):
                    self.latest = QueueSnapshot.model_validate(event.data)

        task = asyncio.create_task(listen(), name="cockpit-queue-board")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sub.close()


class TtlCache:
    """Values recomputed at most once per ``ttl_s`` per key. Only the very first ask waits for the computation
    (concurrent first askers share it); later, a stale value is served at once while it is recomputed in the
    background, so no page waits on an expired cache."""

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

    async def _store(self, key: Any, compute: Callable[[], Awaitable[Any]]) -> None:
        value = await compute()
        self._values[key] = (self.clock() + self.ttl_s, value)

    async def _refresh(self, key: Any, compute: Callable[[], Awaitable[Any]]) -> None:
        try:
            await self._store(key, compute)
        except Exception:
            log.exception("驾驶舱数据刷新失败（%s），继续显示上次的结果", key)
        finally:
            self._refreshing.pop(key, None)

    async def close(self, _app: web.Application | None = None) -> None:
        """Stop background refreshes (on app cleanup)."""
        for task in list(self._refreshing.values()):
            task.cancel()
        await asyncio.gather(*self._refreshing.values(), return_exceptions=True)


BOARD = web.AppKey("cockpit_queue_board", QueueBoard)
CACHE = web.AppKey("cockpit_cache", TtlCache)
LAYOUT = web.AppKey("cockpit_layout", DistrictLayout)


@routes.on_setup
def _setup(app: web.Application) -> None:
    settings = app[keys.SETTINGS]
    app[LAYOUT] = layout_from_settings(settings)
    app[CACHE] = TtlCache(settings.cockpit.cache_ttl_s)
    app[BOARD] = QueueBoard()
    app[keys.HUB].rules.setdefault(QUEUE_TOPIC, TopicRule(QUEUE_TOPIC, QUEUE_TOPIC_ROLES))
    app.cleanup_ctx.append(app[BOARD].follow)
    app.on_cleanup.append(app[CACHE].close)


# --- periods --------------------------------------------------------------------------------------------------


def _tz(call: Call[Any]) -> ZoneInfo:
    return ZoneInfo(call.app[keys.SETTINGS].timezone)


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def period_range(period: str, now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """``[start, now)`` of a named period in local time (the week starts on Monday)."""
    today = now.astimezone(tz).date()
    first = {"today": today, "week": today - timedelta(days=today.weekday()), "month": today.replace(day=1),
             "30d": today - timedelta(days=29)}[period]
    return _midnight(first, tz), now


def _settings(call: Call[Any]) -> Settings:
    return call.app[keys.SETTINGS]


class PeriodQuery(Model):
    period: Period = Field("month", description="统计区间：today 今日、week 本周、month 本月、30d 近30天")


class Span(Model):
    """The period a panel covers: ``[start, end)``."""

    start: datetime
    end: datetime
    label: str


def _span(start: datetime, end: datetime, label: str) -> Span:
    return Span(start=start, end=end, label=label)


# --- panels ---------------------------------------------------------------------------------------------------


class TodayOut(Model):
    day: date
    received: int = Field(description="今日受理")
    instant: int = Field(description="今日即办")
    closed: int = Field(description="今日受理且已办结")
    instant_rate: float | None
    open: int = Field(description="在办工单（全部）")
    overdue: int = Field(description="超期在办（全部）")


@routes.api("GET", "/api/v1/cockpit/today", summary="驾驶舱：今日概况", roles=COCKPIT_ROLES, response=TodayOut)
async def today_api(call: Call[None]) -> TodayOut:
    tz = _tz(call)
    start, end = period_range("today", call.now, tz)
    async with call.db() as db:
        m = (await metrics(db, start, end, now=call.now, settings=_settings(call)))["total"]
        b = await dashboard.backlog(db, call.now)
    return TodayOut(day=start.date(), received=m["received"], instant=m["instant"], closed=m["closed"],
                    instant_rate=m["instant_rate"], open=b.open, overdue=b.overdue)


class DayOut(Model):
    day: date
    received: int
    closed: int = Field(description="当日受理且已办结")


class TrendOut(Model):
    span: Span
    days: list[DayOut]


@routes.api("GET", "/api/v1/cockpit/trend", summary="驾驶舱：近30天受理与办结趋势", roles=COCKPIT_ROLES,
            response=TrendOut)
async def trend_api(call: Call[None]) -> TrendOut:
    tz = _tz(call)
    today = call.now.astimezone(tz).date()
    days = _settings(call).cockpit.trend_days
    start, end = _midnight(today - timedelta(days=days - 1), tz), _midnight(today + timedelta(days=1), tz)

    async def compute() -> TrendOut:
        async with call.db() as db:
            rows = await dashboard.daily_counts(db, start, end, tz)
        return TrendOut(span=_span(start, end, f"近{days}天"),
                        days=[DayOut(day=r.day, received=r.received, closed=r.closed) for r in rows])

    return await call.app[CACHE].get(("trend", today), compute)


class CategoryOut(Model):
    name: str
    received: int
    closed: int
    closure_rate: float | None


class CategoriesOut(Model):
    span: Span
    categories: list[CategoryOut]


@routes.api("GET", "/api/v1/cockpit/categories", summary="驾驶舱：诉求分类分布", roles=COCKPIT_ROLES,
            query=PeriodQuery, response=CategoriesOut)
async def categories_api(call: Call[None]) -> CategoriesOut:
    period = call.query.period
    start, end = period_range(period, call.now, _tz(call))

    async def compute() -> CategoriesOut:
        async with call.db() as db:
            m = await metrics(db, start, end, by="category", now=call.now, settings=_settings(call))
        return CategoriesOut(span=_span(start, end, PERIOD_LABELS[period]),
                             categories=[CategoryOut(name=g["label"], received=g["received"], closed=g["closed"],
                                                     closure_rate=g["closure_rate"]) for g in m["groups"]])

    return await call.app[CACHE].get(("categories", period), compute)


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


def composite(*rates: float | None) -> float | None:
    known = [r for r in rates if r is not None]
    return round(sum(known) / len(known), 4) if known else None


@routes.api("GET", "/api/v1/cockpit/departments", summary="驾驶舱：承办单位排名（响应率、办结率、满意率）",
            roles=COCKPIT_ROLES, query=PeriodQuery, response=DepartmentsOut)
async def departments_api(call: Call[None]) -> DepartmentsOut:
    period = call.query.period
    start, end = period_range(period, call.now, _tz(call))

    async def compute() -> DepartmentsOut:
        async with call.db() as db:
            m = await metrics(db, start, end, by="department", now=call.now, settings=_settings(call))
        return DepartmentsOut(span=_span(start, end, PERIOD_LABELS[period]), departments=ranking(m["groups"]))

    return await call.app[CACHE].get(("departments", period), compute)


def ranking(groups: list[dict[str, Any]]) -> list[DepartmentOut]:
    """Departments (not the undispatched group) by composite score, best first."""
    out = [DepartmentOut(code=g["key"], name=g["label"], received=g["received"], closed=g["closed"],
                         response_rate=g["response_rate"], closure_rate=g["closure_rate"],
                         on_time_rate=g["on_time_rate"], satisfaction_rate=g["satisfaction_rate"],
                         composite=composite(g["response_rate"], g["closure_rate"], g["satisfaction_rate"]))
           for g in groups if g["key"] is not None]
    out.sort(key=lambda d: (d.composite is None, -(d.composite or 0), -d.received, d.code))
    return out


class TopicOut(Model):
    keyword: str
    weight: float
    tickets: int


class HotTopicsOut(Model):
    span: Span
    tickets_read: int = Field(description="参与分析的最新工单数")
    topics: list[TopicOut]


@routes.api("GET", "/api/v1/cockpit/hot-topics", summary="驾驶舱：热点诉求关键词", roles=COCKPIT_ROLES,
            response=HotTopicsOut)
async def hot_topics_api(call: Call[None]) -> HotTopicsOut:
    cfg = _settings(call).cockpit

    async def compute() -> HotTopicsOut:
        start = call.now - timedelta(days=cfg.hot_topics_days)
        async with call.db() as db:
            found = await hot_topics.hot_topics(db, start, call.now, count=cfg.hot_topics_count,
                                                sample=cfg.hot_topics_sample)
        return HotTopicsOut(span=_span(start, call.now, f"近{cfg.hot_topics_days}天"), tickets_read=found.tickets_read,
                            topics=[TopicOut(keyword=t.keyword, weight=t.weight, tickets=t.tickets)
                                    for t in found.topics])

    return await call.app[CACHE].get("hot_topics", compute)


class ProblemOut(Model):
    category: str
    tickets: int
    repeats: int = Field(description="其中重复件")
    repeat_rate: float
    keywords: list[str]


class ProblemsOut(Model):
    span: Span
    problems: list[ProblemOut] = Field(description="本月工单最多的诉求分类（每月一题候选）")


@routes.api("GET", "/api/v1/cockpit/frequent-problems", summary="驾驶舱：高频问题（每月一题候选）",
            roles=COCKPIT_ROLES, response=ProblemsOut)
async def frequent_problems_api(call: Call[None]) -> ProblemsOut:
    start, end = period_range("month", call.now, _tz(call))

    async def compute() -> ProblemsOut:
        async with call.db() as db:
            found = await hot_topics.frequent_problems(db, start, end)
        return ProblemsOut(span=_span(start, end, "本月"), problems=[
            ProblemOut(category=p.category, tickets=p.tickets, repeats=p.repeats, repeat_rate=round(p.repeat_rate, 4),
                       keywords=[k.keyword for k in p.keywords]) for p in found])

    return await call.app[CACHE].get(("frequent_problems", start.date()), compute)


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


@routes.api("GET", "/api/v1/cockpit/heatmap", summary="驾驶舱：区县/街道热力图", roles=COCKPIT_ROLES,
            query=PeriodQuery, response=HeatmapOut)
async def heatmap_api(call: Call[None]) -> HeatmapOut:
    period = call.query.period
    start, end = period_range(period, call.now, _tz(call))

    async def compute() -> HeatmapOut:
        async with call.db() as db:
            counts = await dashboard.place_counts(db, start, end)
        return heatmap(call.app[LAYOUT], counts, _span(start, end, PERIOD_LABELS[period]))

    return await call.app[CACHE].get(("heatmap", period), compute)


def heatmap(layout: DistrictLayout, counts: list[dashboard.PlaceCount], span: Span) -> HeatmapOut:
    """The layout with each district's and street's ticket count."""
    by_place = {(c.district, c.street): c.tickets for c in counts}
    by_district: dict[str | None, int] = {}
    for c in counts:
        by_district[c.district] = by_district.get(c.district, 0) + c.tickets
    districts = [DistrictHeat(name=d.name, tickets=by_district.get(d.name, 0),
                              streets=[StreetHeat(name=s.name, cell=s.cell, tickets=by_place.get((d.name, s.name), 0))
                                       for s in d.streets])
                 for d in layout.districts]
    known = {d.name for d in layout.districts}
    unplaced = sum(n for d, n in by_district.items() if d not in known)
    return HeatmapOut(span=span, city=layout.city, columns=layout.columns, rows=layout.rows, districts=districts,
                      unplaced=unplaced)


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


@routes.api("GET", "/api/v1/cockpit/warnings", summary="驾驶舱：预警（黄牌、红牌）", roles=COCKPIT_ROLES,
            response=WarningsOut)
async def warnings_api(call: Call[None]) -> WarningsOut:
    async with call.db() as db:
        counts = await dashboard.warning_counts(db)
        items = await dashboard.open_warnings(db, limit=_settings(call).cockpit.warnings_listed)
    return WarningsOut(red=counts["red"], yellow=counts["yellow"], items=[
        WarningOut(ticket_no=w.ticket_no, level=w.level, reason=w.reason, reason_label=w.reason_label,  # type: ignore[arg-type]
                   raised_at=w.raised_at, deadline=w.deadline, department=w.department, category=w.category,
                   summary=w.summary) for w in items])


@routes.api("GET", "/api/v1/cockpit/queue", summary="驾驶舱：实时排队与坐席状态（最新快照）", roles=COCKPIT_ROLES,
            response=QueueSnapshot)
async def queue_api(call: Call[None]) -> QueueSnapshot:
    return call.app[BOARD].latest


@routes.page("GET", "/cockpit", title="领导驾驶舱", roles=COCKPIT_ROLES, nav="驾驶舱", template="cockpit.html",
             name="cockpit_page")
async def cockpit_page(call: Call[None]) -> dict[str, Any]:
    return {"periods": PERIOD_LABELS, "city": call.app[LAYOUT].city, "timezone": _settings(call).timezone}
