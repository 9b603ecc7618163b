"""考核指标日汇总 (``ticket_metrics_daily``): the metric counts of settled tickets per local day of intake and group.

A ticket is *settled* once nothing it counts can change: it is closed or withdrawn (final states) and not
waiting on a sign-for deadline (dispatched and never signed, its 签收 is decided by ``now``: such a ticket stays
live). The transaction that settles a ticket calls :func:`settle` (from ``tickets.services``): it marks the
ticket ``rolled_up`` and adds its counts to its day-and-group row with one atomic upsert, so concurrent
transactions never lose an update (PostgreSQL's row lock, SQLite's write lock serialise them) and a rolled-back
transaction takes its counts with it. Invariant: each row is the sum over the ``rolled_up`` tickets of its
day and group. :func:`rebuild` restores it from the tickets table — after a bulk load or an import that
bypassed the services, or a change of ``timezone`` (the day is the local date in ``settings.timezone``):
``hotline metrics rebuild``.
"""

from __future__ import annotations

import time as clock
import typing
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Date,
    Select,
    Table,
    case,
    cast,
    delete,
    func,
    literal,
    select,
    text,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from tickets.metrics import (
    ROLLUP_COUNTS,
    conditions,
    group_keys,
    handling_seconds,
    unsatisfied_events,
)
from tickets.models import Ticket, TicketMetricsDaily
from tickets.states import TERMINAL_STATES

_TERMINAL = sorted(s.value for s in TERMINAL_STATES)
_KEYS = ("day", "grouping", "key")
_VALUES = (*ROLLUP_COUNTS, "handling_seconds")


def is_settled(ticket: Ticket) -> bool:
    """Whether the ticket's counts are final (see the module docstring); :func:`settled` in SQL."""
    return ticket.state in _TERMINAL and not (
        ticket.dispatched_at is not None and ticket.signed_at is None
    )


def settled() -> ColumnElement[bool]:
    return Ticket.state.in_(_TERMINAL) & ~(
        Ticket.dispatched_at.is_not(None) & Ticket.signed_at.is_(None)
    )


def _counts(dialect: str, day: ColumnElement[Any]) -> dict[str, ColumnElement[Any]]:
    """What one ticket adds to its row of a grouping, by column of ``ticket_metrics_daily`` but the grouping's."""
    counted = conditions(None)
    return {
        "day": day,
        **{
            name: case((counted[name], 1), else_=0)
            for name in ROLLUP_COUNTS
            if name != "unsatisfied"
        },
        "unsatisfied": unsatisfied_events(),
        "handling_seconds": handling_seconds(dialect),
    }


def _per_grouping(
    dialect: str, day: ColumnElement[Any], where: ColumnElement[bool], *, grouped: bool
) -> list[Select[Any]]:
    """Rows for ``ticket_metrics_daily`` from the tickets matching ``where``: per ticket, or summed per day and
    group (``grouped``); one select per grouping."""
    counts = _counts(dialect, day)
    out = []
    for grouping, key in group_keys(dialect).items():
        group = func.coalesce(key, "")
        values = [(func.sum(counts[v]) if grouped else counts[v]).label(v) for v in _VALUES]
        stmt = select(
            day.label("day"), literal(grouping).label("grouping"), group.label("key"), *values
        ).where(where)
        out.append(stmt.group_by(day, group) if grouped else stmt)
    return out


def _insert(dialect: str, rows: Select[Any], *, add: bool) -> Any:
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(
        TicketMetricsDaily
    ).from_select([*_KEYS, *_VALUES], rows)
    if not add:
        return stmt
    table = TicketMetricsDaily.__table__.c
    return stmt.on_conflict_do_update(
        index_elements=list(_KEYS),
        set_={name: table[name] + stmt.excluded[name] for name in _VALUES},
    )


async def settle(session: AsyncSession, ticket: Ticket, tz: ZoneInfo) -> None:
    """Inside the caller's transaction: if the ticket has just settled, add it to the rollup."""
    if ticket.rolled_up or not is_settled(ticket):
        return
    ticket.rolled_up = True
    await session.flush()  # the ticket's final values, read back by the upsert
    dialect = session.get_bind().dialect.name
    day = literal(ticket.created_at.astimezone(tz).date(), Date)
    rows = union_all(*_per_grouping(dialect, day, Ticket.id == ticket.id, grouped=False)).subquery()
    # (SQLite parses ON CONFLICT after INSERT … SELECT only when the SELECT has a WHERE clause.)
    await session.execute(_insert(dialect, select(rows).where(true()), add=True))


def _local_day(dialect: str, tz: ZoneInfo, first: datetime, last: datetime) -> ColumnElement[Any]:
    """The local date of ``created_at`` in ``tz``, for tickets created in ``[first, last]``."""
    if dialect == "postgresql":
        return cast(func.timezone(tz.key, Ticket.created_at), Date)
    # SQLite has no time zones: one fixed UTC offset per stretch between the zone's transitions.
    periods = _offsets(tz, first, last)
    shifted = [func.date(Ticket.created_at, f"{offset:+d} seconds") for _, offset in periods]
    if len(periods) == 1:
        return shifted[0]
    return case(
        *(
            (Ticket.created_at < until, day)
            for (until, _), day in zip(periods[1:], shifted, strict=False)
        ),
        else_=shifted[-1],
    )


def _offsets(tz: ZoneInfo, first: datetime, last: datetime) -> list[tuple[datetime, int]]:
    """``(start, UTC offset in seconds)`` of each stretch of constant offset of ``tz`` across ``[first, last]``."""

    def offset(t: datetime) -> int:
        return int(t.astimezone(tz).utcoffset().total_seconds())  # type: ignore[union-attr]

    t = first.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    periods = [(first, offset(first))]
    while t < last:
        step = t + timedelta(hours=1)
        if offset(step) != periods[-1][1]:
            lo, hi = t, step  # the change lies in (lo, hi]: find its second
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                lo, hi = (mid, hi) if offset(mid) == periods[-1][1] else (lo, mid)
            periods.append((hi, offset(hi)))
        t = step
    return periods


async def rebuild(session: AsyncSession, settings: Settings) -> dict[str, Any]:
    """Settle every settled ticket not yet rolled up, and recompute the rollup from the tickets table, in one
    transaction; safe while the services run (on PostgreSQL they wait for it on the rollup's lock)."""
    started = clock.perf_counter()
    dialect = session.get_bind().dialect.name
    tz = ZoneInfo(settings.timezone)
    try:
        table = typing.cast(Table, Ticket.__table__)
        marked = await session.execute(
            update(table).where(~table.c.rolled_up, settled()).values(rolled_up=True)
        )
        if (
            dialect == "postgresql"
        ):  # settling transactions after this point wait, then add to the new rows
            await session.execute(
                text("LOCK TABLE ticket_metrics_daily IN SHARE ROW EXCLUSIVE MODE")
            )
        await session.execute(delete(TicketMetricsDaily))
        first, last = (
            await session.execute(
                select(func.min(Ticket.created_at), func.max(Ticket.created_at)).where(
                    Ticket.rolled_up
                )
            )
        ).one()
        rows = 0
        if first is not None:
            day = _local_day(dialect, tz, first, last)
            for grouped in _per_grouping(dialect, day, Ticket.rolled_up.expression, grouped=True):
                await session.execute(_insert(dialect, grouped, add=False))
            rows = (
                await session.execute(select(func.count()).select_from(TicketMetricsDaily))
            ).scalar_one()
        await session.commit()
    except BaseException:
        await session.rollback()
        raise
    if dialect == "postgresql":  # fresh planner statistics: the live tickets are now a small set
        await session.execute(text("ANALYZE tickets, ticket_metrics_daily"))
        await session.commit()
    settled_now = typing.cast(CursorResult[Any], marked).rowcount
    return {
        "newly_settled": settled_now,
        "rows": rows,
        "seconds": round(clock.perf_counter() - started, 3),
    }
