"""Warnings (预警): yellow (黄牌) and red (红牌) cards on open tickets, raised and cleared by a periodic scan.

Rules, each a *reason* with its own warning (at most one open warning per ticket and reason):

- ``handling_deadline`` 办理时限, before the department replies (受理 … 办理): red when ``due_at`` has passed,
  yellow when less than ``settings.warnings.yellow_remaining_share`` of the handling time is left
  (:func:`tickets.deadlines.remaining_share` on the working calendar; wall-clock for hour tiers). The handling
  time runs from intake, or from the latest dispatch after a 二次派单.
- ``sign_for_deadline`` 签收时限, while dispatched and not signed: red past ``sign_for_due``, yellow in the last
  share of the sign-for time (from dispatch).
- ``repeat_complaint`` 重复投诉 (a 重复件 of kind 投诉), ``unsatisfied`` 不满意/二次派单 (``redispatch_count`` > 0)
  and ``extended`` 延期件 (an extension was granted): red while the ticket is open.

A scan (:func:`scan_warnings`) reads only open tickets (indexed ``state``), compares the warnings they deserve
with the open ones, raises new ones, changes levels, clears those whose condition ended (or whose ticket
closed) and commits once; scanning again at the same instant changes nothing. Each new or upgraded warning
queues a notice (SMS) to the responsible person of the lead department; a red one also supervises the
ticket (:mod:`tickets.supervision`): a 督办函 to the responsible leader, recorded on the ticket.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from config.settings import OfficeHours
from tickets import outbox, supervision
from tickets.deadlines import remaining_share
from tickets.dispatch_catalogue import Catalogue, load_catalogue
from tickets.errors import InvalidInput, NotFound
from tickets.models import Ticket, TicketWarning
from tickets.queries import summarise
from tickets.states import OPEN_STATES, State
from tickets.worktime import WorkCalendar

_log = logging.getLogger(__name__)


class Level(StrEnum):
    YELLOW = "yellow"  # 黄牌
    RED = "red"  # 红牌


class Reason(StrEnum):
    HANDLING = "handling_deadline"  # 办理时限
    SIGN_FOR = "sign_for_deadline"  # 签收时限
    REPEAT_COMPLAINT = "repeat_complaint"  # 重复投诉
    UNSATISFIED = "unsatisfied"  # 回访不满意（二次派单）
    EXTENDED = "extended"  # 延期件


LEVEL_LABELS = {Level.YELLOW: "黄牌", Level.RED: "红牌"}
REASON_LABELS = {
    (Reason.HANDLING, Level.YELLOW): "办理即将超期",
    (Reason.HANDLING, Level.RED): "办理已超期",
    (Reason.SIGN_FOR, Level.YELLOW): "签收即将超时",
    (Reason.SIGN_FOR, Level.RED): "签收已超时",
    (Reason.REPEAT_COMPLAINT, Level.RED): "重复投诉",
    (Reason.UNSATISFIED, Level.RED): "回访不满意（二次派单）",
    (Reason.EXTENDED, Level.RED): "延期办理",
}
OPEN_STATE_VALUES = sorted(s.value for s in OPEN_STATES)
_BEFORE_REPLY = frozenset(
    {State.ACCEPTED, State.REVIEWED, State.DISPATCHED, State.SIGNED, State.IN_PROGRESS}
)
_COMPLAINT = "投诉"
_NOTIFY_CHUNK = 500


def reason_label(reason: str, level: str) -> str:
    return REASON_LABELS[(Reason(reason), Level(level))]


class ScanCalendar(WorkCalendar):
    """The working calendar with a running total of working seconds per day, so that
    ``working_seconds_between`` costs O(1) — a scan asks it for every open ticket.

    Office-hour blocks are taken in local wall-clock time, which equals :class:`WorkCalendar` except on a day
    whose daylight-saving change falls inside office hours (never in China).
    """

    def __init__(self, office_hours: OfficeHours, tz: ZoneInfo) -> None:
        super().__init__(office_hours, tz)
        self._local_blocks = [
            (_seconds(lo), _seconds(hi))
            for lo, hi in (
                (office_hours.morning_start, office_hours.morning_end),
                (office_hours.afternoon_start, office_hours.afternoon_end),
            )
        ]
        self._day_start: dict[
            date, float
        ] = {}  # working seconds from the first day seen to the day's start
        self._first: date | None = None
        self._last: date | None = None

    def working_seconds_between(self, a: datetime, b: datetime) -> float:
        return self._clock(b) - self._clock(a)

    def _clock(self, t: datetime) -> float:
        local = t.astimezone(self.tz)
        day = local.date()
        start = self._start_of(day)
        if not self.is_working_day(day):
            return start
        now_s = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
        return start + sum(min(max(now_s - lo, 0.0), hi - lo) for lo, hi in self._local_blocks)

    def _start_of(self, day: date) -> float:
        if self._first is None or self._last is None:
            self._first = self._last = day
            self._day_start[day] = 0.0
        while day > self._last:
            nxt = self._last + timedelta(days=1)
            self._day_start[nxt] = self._day_start[self._last] + self._day_total(self._last)
            self._last = nxt
        while day < self._first:
            prev = self._first - timedelta(days=1)
            self._day_start[prev] = self._day_start[self._first] - self._day_total(prev)
            self._first = prev
        return self._day_start[day]

    def _day_total(self, day: date) -> float:
        return float(self.day_seconds) if self.is_working_day(day) else 0.0


def _seconds(t: Any) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second


@dataclass(frozen=True)
class Deserved:
    """A warning a ticket deserves now."""

    level: Level
    deadline: datetime | None


def assess(
    row: Any,
    now: datetime,
    cal: WorkCalendar,
    *,
    yellow_share: float,
    wall_clock_tiers: frozenset[str],
) -> dict[Reason, Deserved]:
    """The warnings an open ticket deserves at ``now``. ``row`` has the columns of :data:`SCAN_COLUMNS`."""
    out: dict[Reason, Deserved] = {}
    state = State(row.state)
    if state in _BEFORE_REPLY and row.due_at is not None:
        start = row.dispatched_at if row.redispatch_count and row.dispatched_at else row.created_at
        level = _deadline_level(
            start, row.due_at, now, cal, yellow_share, row.deadline_tier in wall_clock_tiers
        )
        if level:
            out[Reason.HANDLING] = Deserved(level, row.due_at)
    if state == State.DISPATCHED and row.sign_for_due is not None and row.dispatched_at is not None:
        level = _deadline_level(row.dispatched_at, row.sign_for_due, now, cal, yellow_share, False)
        if level:
            out[Reason.SIGN_FOR] = Deserved(level, row.sign_for_due)
    if row.is_repeat and row.kind == _COMPLAINT:
        out[Reason.REPEAT_COMPLAINT] = Deserved(Level.RED, row.due_at)
    if row.redispatch_count:
        out[Reason.UNSATISFIED] = Deserved(Level.RED, row.due_at)
    if row.extension_count:
        out[Reason.EXTENDED] = Deserved(Level.RED, row.due_at)
    return out


def _deadline_level(
    start: datetime,
    due: datetime,
    now: datetime,
    cal: WorkCalendar,
    yellow_share: float,
    wall_clock: bool,
) -> Level | None:
    if now > due:
        return Level.RED
    if due > start and remaining_share(start, due, now, cal, wall_clock=wall_clock) < yellow_share:
        return Level.YELLOW
    return None


SCAN_COLUMNS = (
    Ticket.id,
    Ticket.state,
    Ticket.created_at,
    Ticket.dispatched_at,
    Ticket.due_at,
    Ticket.sign_for_due,
    Ticket.deadline_tier,
    Ticket.kind,
    Ticket.is_repeat,
    Ticket.redispatch_count,
    Ticket.extension_count,
)


@dataclass(frozen=True)
class ScanReport:
    now: datetime
    open_tickets: int
    raised: int
    changed: int  # level changed (up or down)
    cleared: int
    open_warnings: int  # after the scan
    notices: int  # SMS queued
    supervisions: int  # 督办函 queued

    def to_json(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "open_tickets": self.open_tickets,
            "raised": self.raised,
            "changed": self.changed,
            "cleared": self.cleared,
            "open_warnings": self.open_warnings,
            "notices": self.notices,
            "supervisions": self.supervisions,
        }


def _now(now: datetime | None, settings: Settings) -> datetime:
    if now is not None and now.tzinfo is None:
        raise InvalidInput("时间必须带时区", code="ticket.naive_time", field="now")
    return (now or datetime.now(ZoneInfo(settings.timezone))).astimezone(
        ZoneInfo(settings.timezone)
    )


async def scan_warnings(
    session: AsyncSession,
    *,
    now: datetime | None = None,
    settings: Settings,
    catalogue: Catalogue | None = None,
) -> ScanReport:
    """Bring the warnings table in line with the open tickets at ``now``; one transaction."""
    now = _now(now, settings)
    cal = ScanCalendar.from_settings(settings)
    wall_clock_tiers = frozenset(t.name for t in settings.deadlines.tiers if t.hours)
    share = settings.warnings.yellow_remaining_share
    try:
        rows = await session.execute(
            select(*SCAN_COLUMNS).where(Ticket.state.in_(OPEN_STATE_VALUES))
        )
        wanted: dict[tuple[int, str], Deserved] = {}
        open_tickets = 0
        for row in rows:
            open_tickets += 1
            deserves = assess(row, now, cal, yellow_share=share, wall_clock_tiers=wall_clock_tiers)
            wanted.update(((row.id, reason.value), d) for reason, d in deserves.items())
        existing = {
            (w.ticket_id, w.reason): w
            for w in (
                await session.execute(
                    select(TicketWarning).where(TicketWarning.cleared_at.is_(None))
                )
            ).scalars()
        }
        cleared = 0
        for key, stale in existing.items():
            if key not in wanted:
                stale.cleared_at = now
                cleared += 1
        fresh: list[TicketWarning] = []  # new, or upgraded to red: to notify
        raised = changed = 0
        for (ticket_id, reason), deserved in wanted.items():
            warning = existing.get((ticket_id, reason))
            if warning is None:
                warning = TicketWarning(
                    ticket_id=ticket_id,
                    reason=reason,
                    level=deserved.level.value,
                    deadline=deserved.deadline,
                    raised_at=now,
                    changed_at=now,
                )
                session.add(warning)
                fresh.append(warning)
                raised += 1
                continue
            warning.deadline = deserved.deadline
            if warning.level != deserved.level:
                changed += 1
                if deserved.level == Level.RED:
                    fresh.append(warning)
                warning.level, warning.changed_at = deserved.level.value, now
        await session.flush()
        notices, letters = await _notify(
            session, fresh, now=now, settings=settings, catalogue=catalogue
        )
        await session.commit()
    except BaseException:
        await session.rollback()
        raise
    return ScanReport(now, open_tickets, raised, changed, cleared, len(wanted), notices, letters)


async def _notify(
    session: AsyncSession,
    fresh: list[TicketWarning],
    *,
    now: datetime,
    settings: Settings,
    catalogue: Catalogue | None,
) -> tuple[int, int]:
    """One notice per ticket with new or upgraded warnings; one 督办函 per ticket with a new red one."""
    if not fresh:
        return 0, 0
    catalogue = catalogue or load_catalogue(settings)
    template = supervision.load_template(settings)
    names = await supervision.department_names(session)
    by_ticket: dict[int, list[TicketWarning]] = defaultdict(list)
    for warning in fresh:
        by_ticket[warning.ticket_id].append(warning)
    ids = list(by_ticket)
    tickets: dict[int, Ticket] = {}
    for i in range(0, len(ids), _NOTIFY_CHUNK):
        chunk = await session.execute(
            select(Ticket).where(Ticket.id.in_(ids[i : i + _NOTIFY_CHUNK]))
        )
        tickets.update((t.id, t) for t in chunk.scalars())
    tz = ZoneInfo(settings.timezone)
    letters = 0
    for ticket_id, warnings in by_ticket.items():
        ticket = tickets[ticket_id]
        who = supervision.responsible_for(
            catalogue,
            settings,
            department=ticket.lead_department,
            department_name=names.get(ticket.lead_department or ""),
            category=ticket.category,
        )
        reasons = "、".join(reason_label(w.reason, w.level) for w in warnings)
        level = Level.RED if any(w.level == Level.RED for w in warnings) else Level.YELLOW
        outbox.enqueue(
            session,
            channel=outbox.SMS,
            recipient=who.person_address,
            now=now,
            ticket_id=ticket_id,
            warning_id=warnings[0].id,
            subject=f"{LEVEL_LABELS[level]}预警：工单 {ticket.ticket_no}",
            body=(
                f"工单 {ticket.ticket_no}（{summarise(ticket.content, settings.warnings.summary_chars)}）"
                f"{reasons}；办理时限 {supervision.format_time(ticket.due_at, tz)}，"
                f"{supervision.describe_deadline(ticket.due_at, now)}。请及时办理。"
            ),
        )
        red = [w for w in warnings if w.level == Level.RED]
        if red:
            reds = "、".join(reason_label(w.reason, w.level) for w in red)
            letter = supervision.render_letter(
                template, ticket, who, reason=reds, now=now, settings=settings
            )
            supervision.add_supervision(
                session,
                ticket,
                who,
                letter,
                actor=supervision.SYSTEM_ACTOR,
                reason=red[0].reason,
                now=now,
                warning_id=red[0].id,
            )
            letters += 1
    return len(by_ticket), letters


async def warnings_of(
    session: AsyncSession, ticket: str | Ticket, *, include_cleared: bool = False
) -> list[TicketWarning]:
    """The open warnings (or all of them) of a ticket (by number, or the ticket already loaded: not looked up
    again), oldest first."""
    if isinstance(ticket, Ticket):
        ticket_id: int | None = ticket.id
    else:
        ticket_id = (
            await session.execute(select(Ticket.id).where(Ticket.ticket_no == ticket))
        ).scalar_one_or_none()
        if ticket_id is None:
            raise NotFound(f"工单 {ticket} 不存在")
    stmt = (
        select(TicketWarning).where(TicketWarning.ticket_id == ticket_id).order_by(TicketWarning.id)
    )
    if not include_cleared:
        stmt = stmt.where(TicketWarning.cleared_at.is_(None))
    return list((await session.execute(stmt)).scalars())


async def run_warning_scans(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    stop: asyncio.Event,
    *,
    sender: outbox.Sender | None = None,
    catalogue: Catalogue | None = None,
) -> None:
    """Scan and drain the outbox every ``settings.warnings.scan_interval_s`` until ``stop`` is set
    (run by ``hotline run``). A failed round is logged and retried at the next interval."""
    sender = sender or outbox.LogSender()
    rules = settings.warnings
    while not stop.is_set():
        try:
            async with sessionmaker() as session:
                report = await scan_warnings(session, settings=settings, catalogue=catalogue)
                delivery = await outbox.deliver_outbox(session, sender, now=report.now, rules=rules)
            _log.info("预警扫描：%s；通知：%s", report.to_json(), delivery.to_json())
        except Exception:
            _log.exception("预警扫描失败，%d 秒后重试", rules.scan_interval_s)
        with suppress(TimeoutError):
            async with asyncio.timeout(rules.scan_interval_s):
                await stop.wait()
