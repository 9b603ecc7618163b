"""The leader cockpit (领导驾驶舱): one page and one JSON route per panel, so the page fills in progressively.

Who sees it: leaders (领导), administrators and dispatchers (派单员, who steer the day's work from the same
figures); agents, handlers and grid workers do not (a handler's figures are their department's, shown on its
own pages). The panels are computed, cached and kept warm by :mod:`agent_console.cockpit_panels`; the
live queue is always fresh.

Live queue (hub topic ``queue``): each controller publishes a :class:`QueueSnapshot` of its PBX (use
:func:`snapshot_of` on its ``HotlineState``; ``pbx`` is its ``callcontrol.pbx``, "" for the single default)
whenever the queue changes and at least every third of ``cockpit.queue_stale_s``; numbers in it are already
masked, since every subscriber gets the same payload. The console keeps the latest one per PBX
(:class:`QueueBoard`) and shows the centre (:func:`centre_of`): the sums of the PBXs heard from within
``queue_stale_s``, and a row per PBX (the silent ones 离线) when there is more than one or one is silent. A
snapshot names its members' states by interface, so a member in the queues of two PBXs counts once.
``GET /api/v1/cockpit/queue`` answers it, so a page opened between two changes starts with the current state;
``static/js/cockpit.js`` merges the topic's snapshots the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from agent_console import keys
from agent_console.cockpit_panels import (
    PANEL_CACHE,
    PERIOD_LABELS,
    CallsTodayOut,
    CategoriesOut,
    Cockpit,
    DepartmentsOut,
    HeatmapOut,
    HotTopicsOut,
    PanelSource,
    Period,
    ProblemsOut,
    TodayOut,
    TrendOut,
    WarningsOut,
)
from agent_console.geo import layout_from_settings
from agent_console.hub import TopicRule
from agent_console.masking import mask_phone
from agent_console.metrics import ConsoleMetrics
from agent_console.roles import Role
from agent_console.routing import Call, RouteTable
from agent_console.schemas import Model
from ivr import events as ivr_events
from ivr.state import HotlineState, Member

routes = RouteTable("cockpit")
COCKPIT_ROLES = frozenset({Role.LEADER, Role.ADMIN, Role.DISPATCHER})
QUEUE_TOPIC = "queue"
# Who may subscribe to the live queue: the cockpit's roles, and agents (their workspace shows the queue).
QUEUE_TOPIC_ROLES = COCKPIT_ROLES | {Role.AGENT}
_BUSY = {
    ivr_events.DEVICE_INUSE,
    ivr_events.DEVICE_BUSY,
    ivr_events.DEVICE_RINGINUSE,
    ivr_events.DEVICE_ONHOLD,
}
MemberState = Literal["leader", "busy", "wrap_up", "paused", "available", "unavailable"]
# A member in the queues of several PBXs counts once, in the first of these states it has on any of them (a
# leader on duty is no agent; a call on one PBX makes the agent busy whatever the other says).
MEMBER_STATES: tuple[MemberState, ...] = (
    "leader",
    "busy",
    "wrap_up",
    "paused",
    "available",
    "unavailable",
)


# --- live queue -----------------------------------------------------------------------------------------------


class WaitingCaller(Model):
    position: int = Field(ge=1, description="在其PBX队列中的排队位置")
    caller: str = Field(description="来电号码（已脱敏）")
    wait_s: float = Field(ge=0, description="已等待秒数")
    menu: str | None = Field(None, description="按键菜单选择")
    pbx: str = Field("", max_length=64, description="来电所在PBX（单台为空）")


class AgentCounts(Model):
    available: int = Field(0, ge=0, description="空闲坐席")
    busy: int = Field(0, ge=0, description="通话中坐席")
    wrap_up: int = Field(0, ge=0, description="话后整理坐席")
    paused: int = Field(0, ge=0, description="示忙坐席（话后整理除外）")
    unavailable: int = Field(0, ge=0, description="未登录或不可达")


class QueueFigures(Model):
    """What the queue board shows, of one PBX or of the whole centre."""

    at: datetime | None = Field(None, description="快照时间；为空表示尚未收到话务数据")
    waiting: list[WaitingCaller] = Field(
        default_factory=list, description="排队来电，按各PBX的排队位置（同位置等待久的在前）"
    )
    longest_wait_s: float = Field(0.0, ge=0, description="最长等待秒数")
    agents: AgentCounts = Field(default_factory=AgentCounts)
    bot_calls: int = Field(0, ge=0, description="正在与智能机器人通话")
    leader_calls: int = Field(0, ge=0, description="领导正在接听")
    talking: int = Field(0, ge=0, description="坐席与领导通话中的来电")
    members: dict[str, MemberState] = Field(
        default_factory=dict,
        description="队列成员：接听终端 → 状态（leader 为在岗领导）；中心按接听终端去重合并",
    )


class QueueSnapshot(QueueFigures):
    """The payload of hub topic ``queue``: one PBX's queue, published by its controller."""

    pbx: str = Field("", max_length=64, description="PBX名称（callcontrol.pbx；单台为空）")


class PbxQueue(QueueSnapshot):
    """One PBX's latest snapshot on the centre's board."""

    online: bool = Field(
        description="否：超过 cockpit.queue_stale_s 未收到快照（离线），不计入合计"
    )
    silent_s: float = Field(ge=0, description="距收到该快照的秒数")


class CentreQueue(QueueFigures):
    """``GET /api/v1/cockpit/queue``: the centre's totals over the PBXs on line, and each PBX's latest snapshot
    (the page shows a row per PBX when there is more than one or one is off line)."""

    pbxes: list[PbxQueue] = Field(default_factory=list, description="各PBX的最新快照，按名称排序")


def snapshot_of(state: HotlineState, now: datetime, pbx: str = "") -> QueueSnapshot:
    """The queue of PBX ``pbx`` as the cockpit shows it, from its controller's state (for the publisher of topic
    ``queue``)."""
    waiting = [
        WaitingCaller(
            position=i,
            caller=mask_phone(c.caller_number, Role.LEADER),
            wait_s=round(c.wait_so_far(now), 1),
            menu=c.menu,
            pbx=pbx,
        )
        for i, c in enumerate(state.waiting_calls(), start=1)
    ]
    members = {m.interface: _member_state(m, state) for m in state.members.values()}
    live = [c for c in state.calls.values() if c.ended_at is None]
    return QueueSnapshot(
        pbx=pbx,
        at=now,
        waiting=waiting,
        longest_wait_s=max((w.wait_s for w in waiting), default=0.0),
        agents=_agent_counts(members.values()),
        bot_calls=sum(
            1 for c in live if c.bot_uuid is not None and c.answered_by is None and not c.waiting
        ),
        leader_calls=sum(1 for c in live if c.answered_by == "leader"),
        talking=sum(1 for c in live if c.answered_by is not None),
        members=members,
    )


def _member_state(m: Member, state: HotlineState) -> MemberState:
    if m.interface in state.leaders:
        return "leader"
    if m.wrapping_up:
        return "wrap_up"
    if m.paused:
        return "paused"
    if not m.available:
        return "unavailable"
    if m.in_call or m.status in _BUSY:
        return "busy"
    return "available"


def _agent_counts(states: Iterable[MemberState]) -> AgentCounts:
    agents = AgentCounts()
    for st in states:
        if st != "leader":
            setattr(agents, st, getattr(agents, st) + 1)
    return agents


def centre_of(pbxes: Iterable[PbxQueue]) -> CentreQueue:
    """The centre's board from the latest snapshot of each PBX: waiting callers (the heads of the queues first, in
    each queue's order), agents and calls summed over the PBXs on line, the longest wait their maximum. Agents
    are counted by interface: one in the queues of two PBXs counts once, in the first of :data:`MEMBER_STATES`
    it has (a snapshot without members, from an older controller, adds its counts as they are)."""
    every = sorted(pbxes, key=lambda s: s.pbx)
    live = [s for s in every if s.online]
    rank = {st: i for i, st in enumerate(MEMBER_STATES)}
    members: dict[str, MemberState] = {}
    for s in live:
        for interface, st in s.members.items():
            if interface not in members or rank[st] < rank[members[interface]]:
                members[interface] = st
    agents = _agent_counts(members.values())
    for name in AgentCounts.model_fields:
        extra = sum(getattr(s.agents, name) for s in live if not s.members)
        setattr(agents, name, getattr(agents, name) + extra)
    return CentreQueue(
        at=max((s.at for s in live if s.at is not None), default=None),
        waiting=sorted((w for s in live for w in s.waiting), key=lambda w: (w.position, -w.wait_s)),
        longest_wait_s=max((s.longest_wait_s for s in live), default=0.0),
        agents=agents,
        bot_calls=sum(s.bot_calls for s in live),
        leader_calls=sum(s.leader_calls for s in live),
        talking=sum(s.talking for s in live),
        members=members,
        pbxes=every,
    )


class QueueBoard:
    """Keeps the latest ``queue`` snapshot of each PBX heard on the hub, and when it came (``clock``: seconds);
    a PBX silent for ``stale_s`` is off line."""

    def __init__(self, stale_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stale_s = stale_s
        self.clock = clock
        self._latest: dict[str, tuple[QueueSnapshot, float]] = {}

    def heard(self, snapshot: QueueSnapshot) -> None:
        self._latest[snapshot.pbx] = (snapshot, self.clock())

    def centre(self) -> CentreQueue:
        now = self.clock()
        return centre_of(
            PbxQueue(**dict(s), online=now - at < self.stale_s, silent_s=round(now - at, 1))
            for s, at in self._latest.values()
        )

    async def follow(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: listen on the hub while the app runs."""
        sub = app[keys.HUB].subscribe()
        sub.topics.add(QUEUE_TOPIC)

        async def listen() -> None:
            while (event := await sub.next()) is not None:
                with contextlib.suppress(ValueError):
                    self.heard(QueueSnapshot.model_validate(event.data))

        task = asyncio.create_task(listen(), name="cockpit-queue-board")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sub.close()


COCKPIT = web.AppKey("cockpit", Cockpit)
BOARD = web.AppKey("cockpit_queue_board", QueueBoard)


@routes.on_setup
def _setup(app: web.Application) -> None:
    settings = app[keys.SETTINGS]
    source = PanelSource(app[keys.SESSIONMAKER], settings, layout_from_settings(settings))
    app[COCKPIT] = Cockpit(source, app[keys.CLOCK], cache=app.get(PANEL_CACHE))
    app[BOARD] = QueueBoard(settings.cockpit.queue_stale_s)
    app[keys.HUB].rules.setdefault(QUEUE_TOPIC, TopicRule(QUEUE_TOPIC, QUEUE_TOPIC_ROLES))
    app.cleanup_ctx.append(app[BOARD].follow)
    app.cleanup_ctx.append(app[COCKPIT].keep_warm)

    async def service_gauges(metrics: ConsoleMetrics) -> None:
        """Today's service levels and the live queue as Prometheus gauges (hotline_calls_today, hotline_queue_now)."""
        today: CallsTodayOut = await app[COCKPIT].get("calls", app[keys.CLOCK]())
        for name, value in today.model_dump(exclude={"day"}).items():
            metrics.calls_today.labels(name).set(math.nan if value is None else value)
        snap = app[BOARD].centre()
        live = {
            "waiting": len(snap.waiting),
            "longest_wait_s": snap.longest_wait_s,
            "bot_calls": snap.bot_calls,
            "leader_calls": snap.leader_calls,
            **{f"agents_{k}": v for k, v in snap.agents.model_dump().items()},
        }
        for name, value in live.items():
            metrics.queue_now.labels(name).set(value)

    app[keys.METRICS].refreshers.append(service_gauges)


class PeriodQuery(Model):
    period: Period = Field(
        "month", description="统计区间：today 今日、week 本周、month 本月、30d 近30天"
    )


async def panel(call: Call[Any], name: str, period: Period | None = None) -> Any:
    return await call.app[COCKPIT].get(name, call.now, period)


@routes.api(
    "GET",
    "/api/v1/cockpit/today",
    summary="驾驶舱：今日概况",
    roles=COCKPIT_ROLES,
    response=TodayOut,
)
async def today_api(call: Call[None]) -> TodayOut:
    return await panel(call, "today")


@routes.api(
    "GET",
    "/api/v1/cockpit/calls",
    summary="驾驶舱：今日话务服务水平（接通率、15秒接通率、放弃）",
    roles=COCKPIT_ROLES,
    response=CallsTodayOut,
)
async def calls_api(call: Call[None]) -> CallsTodayOut:
    return await panel(call, "calls")


@routes.api(
    "GET",
    "/api/v1/cockpit/trend",
    summary="驾驶舱：近30天受理与办结趋势",
    roles=COCKPIT_ROLES,
    response=TrendOut,
)
async def trend_api(call: Call[None]) -> TrendOut:
    return await panel(call, "trend")


@routes.api(
    "GET",
    "/api/v1/cockpit/categories",
    summary="驾驶舱：诉求分类分布",
    roles=COCKPIT_ROLES,
    query=PeriodQuery,
    response=CategoriesOut,
)
async def categories_api(call: Call[None]) -> CategoriesOut:
    return await panel(call, "categories", call.query.period)


@routes.api(
    "GET",
    "/api/v1/cockpit/departments",
    summary="驾驶舱：承办单位排名（响应率、办结率、满意率）",
    roles=COCKPIT_ROLES,
    query=PeriodQuery,
    response=DepartmentsOut,
)
async def departments_api(call: Call[None]) -> DepartmentsOut:
    return await panel(call, "departments", call.query.period)


@routes.api(
    "GET",
    "/api/v1/cockpit/hot-topics",
    summary="驾驶舱：热点诉求关键词",
    roles=COCKPIT_ROLES,
    response=HotTopicsOut,
)
async def hot_topics_api(call: Call[None]) -> HotTopicsOut:
    return await panel(call, "hot_topics")


@routes.api(
    "GET",
    "/api/v1/cockpit/frequent-problems",
    summary="驾驶舱：高频问题（每月一题候选）",
    roles=COCKPIT_ROLES,
    response=ProblemsOut,
)
async def frequent_problems_api(call: Call[None]) -> ProblemsOut:
    return await panel(call, "frequent_problems")


@routes.api(
    "GET",
    "/api/v1/cockpit/heatmap",
    summary="驾驶舱：区县/街道热力图",
    roles=COCKPIT_ROLES,
    query=PeriodQuery,
    response=HeatmapOut,
)
async def heatmap_api(call: Call[None]) -> HeatmapOut:
    return await panel(call, "heatmap", call.query.period)


@routes.api(
    "GET",
    "/api/v1/cockpit/warnings",
    summary="驾驶舱：预警（黄牌、红牌）",
    roles=COCKPIT_ROLES,
    response=WarningsOut,
)
async def warnings_api(call: Call[None]) -> WarningsOut:
    return await panel(call, "warnings")


@routes.api(
    "GET",
    "/api/v1/cockpit/queue",
    summary="驾驶舱：实时排队与坐席状态（各PBX最新快照的合计，多台时分PBX列出）",
    roles=COCKPIT_ROLES,
    response=CentreQueue,
)
async def queue_api(call: Call[None]) -> CentreQueue:
    return call.app[BOARD].centre()


@routes.page(
    "GET",
    "/cockpit",
    title="领导驾驶舱",
    roles=COCKPIT_ROLES,
    nav="驾驶舱",
    template="cockpit.html",
    name="cockpit_page",
)
async def cockpit_page(call: Call[None]) -> dict[str, Any]:
    source = call.app[COCKPIT].source
    return {
        "periods": PERIOD_LABELS,
        "city": source.layout.city,
        "timezone": source.settings.timezone,
        "queue_stale_s": source.settings.cockpit.queue_stale_s,
    }
