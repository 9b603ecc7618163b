"""Service levels (话务服务水平) from the call log: 接通率, the 15-second answer rate, abandons, waits, talk and
wrap-up times, bot containment — for any period, in total and per hour, day, queue or agent.

Definitions (GB/T 33358-2016 asks for answers within 15 s and a 接通率 of at least 95 %; local standards add a
15-second rate of at least 80 %):

- **offered 呼入**: every inbound call of the log whose fate is known — answered or ended. Call-backs (回访外呼,
  outcome ``callback``) are outbound and calls the blocklist refused (``blocked``) were never offered: neither is
  counted; a call still in the menu or the queue counts once it
  is answered or ends. A call is counted once, in the period, hour and day (``settings.timezone``) it started.
- **answered 接通**: by an agent (坐席), a leader (领导接听日) or the speech bot (机器人). A caller who talked to the
  bot, asked for a person and hung up while queueing again was answered by the bot (and is a bot transfer).
- **abandoned 放弃**, by where the caller hung up: ``menu`` before reaching any queue, ``queue`` while waiting,
  ``ringing`` while an agent's phone rang for them. Calls logged before the stage was recorded count in no stage.
- **wait 等待**: seconds in the queue, from QueueCallerJoin until answered, abandoned or sent to the bot, summed
  over every stay (a caller back from the bot waits again); the menu is not included, a call that never queued
  waited 0 s. **Answered in time** = answered with a wait ≤ ``[calllog] service_level_s`` (15 s, inclusive).
- **接通率** = answered ÷ offered; **15-second rate** = answered in time ÷ offered. Average and p90 wait are
  over answered calls (p90: nearest rank, the smallest wait that at least 90 % of them did not exceed).
- **talk 通话**: a person's or leader's calls, from AgentConnect to AgentComplete (to the hang-up when the log
  has no AgentComplete). **Wrap-up 话后整理**: the agent's time paused for wrap-up after the call, averaged over
  the calls that had one.
- **bot 机器人**: sessions = calls the bot answered; contained 机器人办结 = sessions neither handed to a person
  nor ending with a ticket that goes on to a department. Every ticket the bot files is linked to its call
  (``ticket_no``, :meth:`ivr.controller.HotlineController.link_bot_ticket`), also one filed for a caller who hung
  up mid-dialogue (not contained); a 即办 ticket — opened and closed at once when the bot's answer settled the
  call (:func:`tickets.services.close_instant`, told by :func:`tickets.services.instant_answers`) — is the record
  of a settled call and still counts as contained. Transfers 转人工 = sessions whose caller asked for a person
  (requeued), of which ``bot_transfers_answered`` a person or leader answered.

The query reads only the columns the figures need, streamed, and folds them in one pass: the figures are exact
(no sampling, no approximate percentile) and the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from config.settings import Settings
from ivr.models import CallRecord
from tickets.errors import InvalidInput

GROUPINGS: tuple[str, ...] = ("hour", "day", "queue", "agent")
PERSON = ("agent", "leader")
ANSWERED = (*PERSON, "bot")
ABANDON_STAGES = ("menu", "queue", "ringing")
UNSET_LABELS = {"queue": "（未进队列）", "agent": "（无人工接听）"}
P90 = 0.9


@dataclass(frozen=True)
class CallFacts:
    """One call of the log as the figures see it."""

    started_at: datetime
    outcome: str
    queue: str | None = None
    agent: str | None = None  # who answered (agent or leader name)
    wait_s: float = 0.0
    abandoned_in: str | None = None
    talk_s: float | None = None
    wrap_up_s: float | None = None
    bot: bool = False
    from_bot: bool = False
    ticket_open: bool = False  # a ticket that goes on to a department (not a 即办 one)


def facts_of(row: Any, instant: Collection[str] = frozenset()) -> CallFacts:
    """A call-log row (``CallRecord`` or a row of its columns) → :class:`CallFacts`; ``instant``: the 即办 ticket
    numbers among the rows'."""
    talk = None
    if row.outcome in PERSON and row.answered_at is not None:
        end = row.talk_ended_at or row.ended_at
        talk = max(0.0, (end - row.answered_at).total_seconds()) if end is not None else None
    return CallFacts(
        started_at=row.started_at,
        outcome=row.outcome,
        queue=row.queue,
        agent=row.agent_name if row.outcome in PERSON else None,
        wait_s=row.queue_wait_s or 0.0,
        abandoned_in=row.abandoned_in,
        talk_s=talk,
        wrap_up_s=row.wrap_up_s,
        bot=row.bot_uuid is not None,
        from_bot=bool(row.from_bot),
        ticket_open=row.ticket_no is not None and row.ticket_no not in instant,
    )


def nearest_rank(values: list[float], q: float) -> float | None:
    """The nearest-rank ``q`` quantile: the smallest value that at least ``q`` of them do not exceed."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def _ratio(num: float, den: float, digits: int = 4) -> float | None:
    return round(num / den, digits) if den else None


@dataclass
class Tally:
    """The running counts of one group of calls."""

    service_level_s: float
    counts: dict[str, int] = field(default_factory=dict)
    waits: list[float] = field(default_factory=list)  # of answered calls
    talk: list[float] = field(default_factory=list)
    wrap_up: list[float] = field(default_factory=list)

    def _count(self, *names: str) -> None:
        for name in names:
            self.counts[name] = self.counts.get(name, 0) + 1

    def add(self, call: CallFacts) -> None:
        self._count("offered")
        if call.outcome in ANSWERED:
            self._count("answered", f"answered_{call.outcome}")
            self.waits.append(call.wait_s)
            if call.wait_s <= self.service_level_s:
                self._count("answered_in_time")
        elif call.outcome == "abandoned":
            self._count(
                "abandoned", *([f"abandoned_{call.abandoned_in}"] if call.abandoned_in else [])
            )
        if call.talk_s is not None:
            self.talk.append(call.talk_s)
        if call.wrap_up_s is not None:
            self.wrap_up.append(call.wrap_up_s)
        if call.bot:
            self._count("bot_sessions")
            if call.from_bot:
                self._count(
                    "bot_transfers", *(["bot_transfers_answered"] if call.outcome in PERSON else [])
                )
            elif not call.ticket_open:
                self._count("bot_contained")

    def figures(self) -> dict[str, Any]:
        c = self.counts.get
        offered = c("offered", 0)
        out: dict[str, Any] = {
            "offered": offered,
            "answered": c("answered", 0),
            **{f"answered_{who}": c(f"answered_{who}", 0) for who in ANSWERED},
            "abandoned": c("abandoned", 0),
            **{f"abandoned_{stage}": c(f"abandoned_{stage}", 0) for stage in ABANDON_STAGES},
            "answered_in_time": c("answered_in_time", 0),
            "connection_rate": _ratio(c("answered", 0), offered),
            "service_level_rate": _ratio(c("answered_in_time", 0), offered),
            "abandon_rate": _ratio(c("abandoned", 0), offered),
            "avg_wait_s": _mean(self.waits),
            "p90_wait_s": nearest_rank(self.waits, P90),
            "max_wait_s": max(self.waits, default=None),
            "avg_talk_s": _mean(self.talk),
            "avg_wrap_up_s": _mean(self.wrap_up),
            "bot_sessions": c("bot_sessions", 0),
            "bot_contained": c("bot_contained", 0),
            "bot_containment_rate": _ratio(c("bot_contained", 0), c("bot_sessions", 0)),
            "bot_transfers": c("bot_transfers", 0),
            "bot_transfers_answered": c("bot_transfers_answered", 0),
        }
        return out


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


# every figure with its Chinese column title, in report order (CLI table, XLSX)
COLUMNS: tuple[tuple[str, str], ...] = (
    ("offered", "呼入"),
    ("answered", "接通"),
    ("answered_agent", "人工接听"),
    ("answered_leader", "领导接听"),
    ("answered_bot", "机器人接听"),
    ("abandoned", "放弃"),
    ("abandoned_menu", "菜单放弃"),
    ("abandoned_queue", "排队放弃"),
    ("abandoned_ringing", "振铃放弃"),
    ("answered_in_time", "及时接通"),
    ("connection_rate", "接通率"),
    ("service_level_rate", "及时接通率"),
    ("abandon_rate", "放弃率"),
    ("avg_wait_s", "平均等待(秒)"),
    ("p90_wait_s", "P90等待(秒)"),
    ("max_wait_s", "最长等待(秒)"),
    ("avg_talk_s", "平均通话(秒)"),
    ("avg_wrap_up_s", "平均话后整理(秒)"),
    ("bot_sessions", "机器人会话"),
    ("bot_contained", "机器人办结"),
    ("bot_containment_rate", "机器人办结率"),
    ("bot_transfers", "机器人转人工"),
    ("bot_transfers_answered", "转人工后接通"),
)


def group_key(call: CallFacts, by: str, tz: ZoneInfo) -> str | None:
    """The group of a call: its local start hour (``YYYY-MM-DDTHH:00``) or day, its queue or who answered it."""
    local = call.started_at.astimezone(tz)
    if by == "hour":
        return local.strftime("%Y-%m-%dT%H:00")
    if by == "day":
        return local.date().isoformat()
    return call.queue if by == "queue" else call.agent


def _label(key: str | None, by: str) -> str:
    if key is None:
        return UNSET_LABELS[by]
    return key.replace("T", " ") if by == "hour" else key


def check_grouping(by: str | None) -> None:
    if by is not None and by not in GROUPINGS:
        raise InvalidInput(
            f"未知的分组方式：{by!r}（可选：{'、'.join(GROUPINGS)}）",
            code="service_levels.bad_group",
            field="by",
        )


class Summary:
    """Calls folded one by one into the total and (with ``by``) one tally per group."""

    def __init__(self, *, service_level_s: float, tz: ZoneInfo, by: str | None = None) -> None:
        check_grouping(by)
        self.service_level_s, self.tz, self.by = service_level_s, tz, by
        self.total = Tally(service_level_s)
        self.groups: dict[str | None, Tally] = {}

    def add(self, call: CallFacts) -> None:
        self.total.add(call)
        if self.by is not None:
            key = group_key(call, self.by, self.tz)
            self.groups.setdefault(key, Tally(self.service_level_s)).add(call)

    def result(self) -> dict[str, Any]:
        """``total`` and (with ``by``) ``groups`` in key order, the unset group last."""
        out: dict[str, Any] = {"total": self.total.figures()}
        if self.by is not None:
            by = self.by
            ordered = sorted(self.groups, key=lambda k: (k is None, k or ""))
            out["groups"] = [
                {"key": k, "label": _label(k, by), **self.groups[k].figures()} for k in ordered
            ]
        return out


def summarise(
    calls: Iterable[CallFacts], *, service_level_s: float, tz: ZoneInfo, by: str | None = None
) -> dict[str, Any]:
    """The figures of ``calls`` in total and (with ``by``) per group."""
    summary = Summary(service_level_s=service_level_s, tz=tz, by=by)
    for call in calls:
        summary.add(call)
    return summary.result()


_COLUMNS = (
    CallRecord.started_at,
    CallRecord.answered_at,
    CallRecord.ended_at,
    CallRecord.talk_ended_at,
    CallRecord.outcome,
    CallRecord.queue,
    CallRecord.agent_name,
    CallRecord.queue_wait_s,
    CallRecord.abandoned_in,
    CallRecord.wrap_up_s,
    CallRecord.bot_uuid,
    CallRecord.from_bot,
    CallRecord.ticket_no,
)
_CHUNK = 5000


async def service_levels(
    session: AsyncSession,
    start: datetime,
    end: datetime,
    *,
    settings: Settings,
    by: str | None = None,
) -> dict[str, Any]:
    """The service levels of the calls that started in ``[start, end)`` (see the module docstring)."""
    if end < start:
        raise InvalidInput(
            f"结束时间 {end.isoformat()} 早于开始时间 {start.isoformat()}",
            code="service_levels.bad_range",
            field="to",
        )
    from tickets.services import (
        instant_answers,
    )  # here: the ticket services load jieba, `hotline --help` must not

    counted = (
        CallRecord.started_at >= start,
        CallRecord.started_at < end,
        CallRecord.outcome.is_not(None),
        CallRecord.outcome.not_in(("callback", "blocked")),
    )
    bot_tickets = await session.scalars(
        select(CallRecord.ticket_no).where(
            *counted, CallRecord.bot_uuid.is_not(None), CallRecord.ticket_no.is_not(None)
        )
    )
    instant = await instant_answers(session, [t for t in bot_tickets.all() if t is not None])
    query = select(*_COLUMNS).where(*counted).execution_options(yield_per=_CHUNK)
    summary = Summary(
        service_level_s=settings.calllog.service_level_s, tz=ZoneInfo(settings.timezone), by=by
    )
    async for row in await session.stream(query):
        summary.add(facts_of(row, instant))
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "service_level_s": settings.calllog.service_level_s,
        "by": by,
        **summary.result(),
    }
