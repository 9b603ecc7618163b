"""Aggregates for the leader cockpit (领导驾驶舱) beyond :mod:`tickets.metrics`: the daily trend, tickets by
place (区县/街道), the open backlog and open warnings (预警). Each is one ``GROUP BY`` query that starts from
an index (``created_at``; ``state, due_at``; the partial index of open warnings); no ticket row is loaded.

Like :mod:`tickets.metrics`, the trend counts a *cohort*: the tickets received on a day, and how many of them
are closed now (not the tickets closed on that day, which would need a scan of ``closed_at``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Date, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tickets.errors import InvalidInput
from tickets.models import Department, Ticket, TicketWarning
from tickets.queries import summarise
from tickets.states import OPEN_STATES, State
from tickets.warnings import reason_label

OPEN_STATE_VALUES = sorted(s.value for s in OPEN_STATES)
LEVELS = ("red", "yellow")


@dataclass(frozen=True)
class DayCount:
    day: date
    received: int
    closed: int  # of the tickets received that day, closed now


@dataclass(frozen=True)
class PlaceCount:
    district: str | None
    street: str | None
    tickets: int


@dataclass(frozen=True)
class Backlog:
    open: int  # 在办: neither closed nor withdrawn
    overdue: int  # 超期在办: open and past ``due_at``


@dataclass(frozen=True)
class OpenWarning:
    ticket_no: str
    level: str  # red 红牌 / yellow 黄牌
    reason: str
    reason_label: str
    raised_at: datetime
    deadline: datetime | None
    department: str | None  # lead department's name (主办单位)
    category: str | None
    summary: str


def _check_range(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidInput("时间必须带时区", code="ticket.naive_time", field="from")
    if end <= start:
        raise InvalidInput("统计区间的结束时间须晚于开始时间", code="metrics.bad_range", field="to")


def _local_day(column: Any, tz: ZoneInfo, at: datetime, dialect: str) -> ColumnElement[Any]:
    """The local calendar day of a UTC timestamp column. SQLite has no time zones: it shifts by the zone's
    offset at ``at`` (exact for zones without daylight saving, such as China's)."""
    if dialect == "postgresql":
        return cast(func.timezone(tz.key, column), Date)
    offset = at.astimezone(tz).utcoffset() or timedelta()
    return func.date(column, f"{int(offset.total_seconds()):+d} seconds")


async def daily_counts(
    session: AsyncSession, start: datetime, end: datetime, tz: ZoneInfo
) -> list[DayCount]:
    """Per local day of ``[start, end)``: tickets received and how many of them are closed; every day listed."""
    _check_range(start, end)
    day = _local_day(Ticket.created_at, tz, start, session.get_bind().dialect.name).label("day")
    rows = await session.execute(
        select(day, func.count(), func.count().filter(Ticket.state == State.CLOSED.value))
        .where(Ticket.created_at >= start, Ticket.created_at < end)
        .group_by(day)
    )
    found = {
        (d if isinstance(d, date) else date.fromisoformat(d)): (int(r), int(c)) for d, r, c in rows
    }
    await session.commit()
    first, last = (
        start.astimezone(tz).date(),
        (end - timedelta(microseconds=1)).astimezone(tz).date(),
    )
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return [DayCount(d, *found.get(d, (0, 0))) for d in days]


async def place_counts(session: AsyncSession, start: datetime, end: datetime) -> list[PlaceCount]:
    """Tickets received in ``[start, end)`` per (district, street), most first."""
    _check_range(start, end)
    rows = await session.execute(
        select(Ticket.district, Ticket.street, func.count().label("n"))
        .where(Ticket.created_at >= start, Ticket.created_at < end)
        .group_by(Ticket.district, Ticket.street)
        .order_by(func.count().desc())
    )
    out = [PlaceCount(d, s, int(n)) for d, s, n in rows]
    await session.commit()
    return out


async def backlog(session: AsyncSession, now: datetime) -> Backlog:
    """Open tickets now and those of them past their deadline (whenever they were received)."""
    is_open = Ticket.state.in_(OPEN_STATE_VALUES)
    row = (
        await session.execute(
            select(
                func.count().filter(is_open), func.count().filter(is_open & (Ticket.due_at < now))
            ).where(is_open)
        )
    ).one()
    await session.commit()
    return Backlog(int(row[0]), int(row[1]))


async def warning_counts(session: AsyncSession) -> dict[str, int]:
    """Open warnings per level: ``{"red": n, "yellow": m}``."""
    rows = await session.execute(
        select(TicketWarning.level, func.count())
        .where(TicketWarning.cleared_at.is_(None))
        .group_by(TicketWarning.level)
    )
    counts = dict.fromkeys(LEVELS, 0) | {level: int(n) for level, n in rows}
    await session.commit()
    return counts


async def open_warnings(session: AsyncSession, *, limit: int = 50) -> list[OpenWarning]:
    """Open warnings, red before yellow, newest first, with their ticket."""
    rows = await session.execute(
        select(
            Ticket.ticket_no,
            TicketWarning.level,
            TicketWarning.reason,
            TicketWarning.raised_at,
            TicketWarning.deadline,
            Department.name,
            Ticket.lead_department,
            Ticket.category,
            Ticket.content,
        )
        .join(Ticket, Ticket.id == TicketWarning.ticket_id)
        .outerjoin(Department, Department.code == Ticket.lead_department)
        .where(TicketWarning.cleared_at.is_(None))
        .order_by(
            (TicketWarning.level == "red").desc(),
            TicketWarning.raised_at.desc(),
            TicketWarning.id.desc(),
        )
        .limit(limit)
    )
    out = [
        OpenWarning(
            r.ticket_no,
            r.level,
            r.reason,
            reason_label(r.reason, r.level),
            r.raised_at,
            r.deadline,
            r.name or r.lead_department,
            r.category,
            summarise(r.content, 60),
        )
        for r in rows
    ]
    await session.commit()
    return out
