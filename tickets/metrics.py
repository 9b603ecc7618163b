"""Performance metrics of the 接诉即办 loop (考核指标) for the leaders' cockpit and ``hotline metrics``.

The population is the *cohort* of tickets received (``created_at``) in ``[start, end)``; their state is taken as
stored now, and ``now`` decides only what counts as overdue and which sign-for deadlines have passed. No ticket
row is loaded: :func:`reference_metrics` is one SQL query with ``GROUP BY`` and ``FILTER`` over the cohort;
:func:`metrics` gives the same figures from the daily rollup of settled tickets (:mod:`tickets.metrics_rollup`)
for the whole local days inside the window, plus the same query over the rest (tickets not settled yet, and
the partial days at the edges), so its cost follows the number of open tickets, not the size of the table.

Counts:

- ``received`` 受理量: tickets of the cohort (withdrawn ones included); ``withdrawn`` 撤销; ``closed`` 办结;
  ``open`` 在办 (neither closed nor withdrawn); ``overdue`` 超期在办: open with ``due_at`` before ``now``.
- ``dispatched`` 派发: tickets with a current dispatch (``dispatched_at`` set); ``sign_for_decided``: those
  signed, or whose sign-for deadline has passed at ``now``; ``signed_in_time``: signed no later than
  ``sign_for_due``. After a 二次派单 the latest dispatch counts.
- ``closed_on_time``: closed no later than ``due_at`` (a ticket without deadline, 即办, is on time).
- ``instant`` 即办: closed on the spot at intake (``close_instant``, the ticket has an ``answer``).
- ``satisfied``: closed with satisfaction 满意 or 基本满意; ``unsatisfied``: 回访不满意 answers (each
  ``callback_redispatch`` audit event); ``surveyed`` = satisfied + unsatisfied — 未接通 (unreachable) is excluded.
- ``repeats`` 重复件: tickets flagged as repeats at intake.

Rates (``None`` when the denominator is 0, else rounded to 4 decimals):

- ``response_rate`` 响应率 = signed_in_time / sign_for_decided
- ``closure_rate`` 办结率 = closed / received
- ``on_time_rate`` 按期办结率 = closed_on_time / closed
- ``satisfaction_rate`` 满意率 = satisfied / surveyed
- ``instant_rate`` 即答率 = instant / received
- ``repeat_rate`` 重复率 = repeats / received
- ``avg_handling_hours`` 平均办理时长: mean wall-clock hours from ``created_at`` to ``closed_at`` over closed tickets
  that were not 即办 (``handled_closed``), rounded to 2 decimals.

``by`` groups by ``department`` (lead department 主办单位; co-handlers are not counted), ``category`` (first-level
诉求分类) or ``area`` (区县); a group key of ``None`` means not set (e.g. not dispatched yet).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, case, extract, false, func, literal, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from tickets.categories import SEPARATOR
from tickets.errors import InvalidInput
from tickets.models import Department, Ticket, TicketEvent, TicketMetricsDaily
from tickets.states import State

GroupBy = Literal["department", "category", "area"]
GROUPINGS: tuple[str, ...] = ("department", "category", "area")
SATISFIED = ("satisfied", "basically_satisfied")
UNSATISFIED_ACTION = "callback_redispatch"
UNSET_LABELS = {"department": "（未派发）", "category": "（未分类）", "area": "（未填区县）"}
COUNTS = (
    "received",
    "withdrawn",
    "closed",
    "open",
    "overdue",
    "dispatched",
    "sign_for_decided",
    "signed_in_time",
    "closed_on_time",
    "instant",
    "satisfied",
    "unsatisfied",
    "repeats",
    "handled_closed",
)
# A settled ticket is never open (hence never overdue); the rest of what it counts does not depend on ``now``.
ROLLUP_COUNTS = tuple(c for c in COUNTS if c not in ("open", "overdue"))
Row = dict[str, Any]


def day_range(first: date, last: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """``[first 00:00, the day after last 00:00)`` in ``tz``: the window of the inclusive dates."""
    if last < first:
        raise InvalidInput(
            f"结束日期 {last} 早于开始日期 {first}", code="metrics.bad_range", field="to"
        )
    return datetime.combine(first, time(), tz), datetime.combine(
        last + timedelta(days=1), time(), tz
    )


def _check_by(by: str | None) -> None:
    if by is not None and by not in GROUPINGS:
        raise InvalidInput(
            f"未知的分组方式：{by!r}（可选：{'、'.join(GROUPINGS)}）",
            code="metrics.bad_group",
            field="by",
        )


def group_keys(dialect: str) -> dict[str, ColumnElement[Any]]:
    """Each grouping's key of a ticket (NULL: not set)."""
    if dialect == "postgresql":
        category = func.nullif(func.split_part(Ticket.category, SEPARATOR, 1), "")
    else:
        cut = func.instr(Ticket.category, SEPARATOR)
        category = func.nullif(
            case((cut > 0, func.substr(Ticket.category, 1, cut - 1)), else_=Ticket.category), ""
        )
    return {
        "department": Ticket.lead_department.expression,
        "category": category,
        "area": Ticket.district.expression,
    }


def _seconds(a: Any, b: Any, dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return extract("epoch", b - a)
    return (func.julianday(b) - func.julianday(a)) * 86400.0


def conditions(now: datetime | None) -> dict[str, ColumnElement[bool]]:
    """Whether a ticket counts, per count of :data:`COUNTS` but ``unsatisfied`` (a count of audit events).

    ``now=None`` leaves out the terms that depend on it: right for settled tickets only."""
    closed = Ticket.state == State.CLOSED.value
    is_open = Ticket.state.not_in([State.CLOSED.value, State.WITHDRAWN.value])
    dispatched = Ticket.dispatched_at.is_not(None)
    sign_for_passed = Ticket.sign_for_due < now if now is not None else false()
    return {
        "received": true(),
        "withdrawn": Ticket.state == State.WITHDRAWN.value,
        "closed": closed,
        "open": is_open,
        "overdue": is_open & (Ticket.due_at < now) if now is not None else false(),
        "dispatched": dispatched,
        "sign_for_decided": dispatched & (Ticket.signed_at.is_not(None) | sign_for_passed),
        "signed_in_time": dispatched & (Ticket.signed_at <= Ticket.sign_for_due),
        "closed_on_time": closed & (Ticket.due_at.is_(None) | (Ticket.closed_at <= Ticket.due_at)),
        "instant": closed & Ticket.answer.is_not(None),
        "satisfied": Ticket.satisfaction.in_(SATISFIED),
        "repeats": Ticket.is_repeat.expression,
        "handled_closed": closed & Ticket.answer.is_(None),
    }


def handling_seconds(dialect: str) -> ColumnElement[Any]:
    """Seconds from intake to closing of a handled (not 即办) closed ticket, else 0."""
    return case(
        (
            conditions(None)["handled_closed"],
            _seconds(Ticket.created_at, Ticket.closed_at, dialect),
        ),
        else_=0,
    )


def unsatisfied_events() -> ColumnElement[Any]:
    """The ticket's 回访不满意 events. Each one also bumped ``redispatch_count``, so only tickets with a 二次派单
    are looked up."""
    events = (
        select(func.count())
        .where(TicketEvent.ticket_id == Ticket.id, TicketEvent.action == UNSATISFIED_ACTION)
        .scalar_subquery()
    )
    return case((Ticket.redispatch_count > 0, events), else_=0)


def _rates(counts: Row) -> dict[str, Any]:
    c = counts

    def rate(num: float, den: float, digits: int = 4) -> float | None:
        return round(num / den, digits) if den else None

    surveyed = c["satisfied"] + c["unsatisfied"]
    return {
        **{k: c[k] for k in COUNTS},
        "surveyed": surveyed,
        "response_rate": rate(c["signed_in_time"], c["sign_for_decided"]),
        "closure_rate": rate(c["closed"], c["received"]),
        "on_time_rate": rate(c["closed_on_time"], c["closed"]),
        "satisfaction_rate": rate(c["satisfied"], surveyed),
        "instant_rate": rate(c["instant"], c["received"]),
        "repeat_rate": rate(c["repeats"], c["received"]),
        "avg_handling_hours": rate(c["handling_seconds"], c["handled_closed"] * 3600.0, 2),
    }


def _check(start: datetime, end: datetime, now: datetime | None, by: str | None) -> None:
    for value, name in ((start, "from"), (end, "to"), (now, "now")):
        if value is not None and value.tzinfo is None:
            raise InvalidInput("时间必须带时区", code="ticket.naive_time", field=name)
    if end <= start:
        raise InvalidInput("统计区间的结束时间须晚于开始时间", code="metrics.bad_range", field="to")
    _check_by(by)


def _as_row(key: Any, mapping: Any) -> Row:
    row: Row = {
        "key": key,
        **{k: int(mapping.get(k) or 0) for k in COUNTS},
    }  # PostgreSQL sums are numeric
    row["handling_seconds"] = float(mapping.get("handling_seconds") or 0)
    return row


async def _ticket_rows(
    session: AsyncSession,
    where: ColumnElement[bool],
    by: str | None,
    now: datetime,
    *,
    join_events: bool,
) -> list[Row]:
    """The counts of the tickets matching ``where``, per group of ``by``, straight from the tickets table.

    ``join_events`` counts 回访不满意 events with one grouped pass over them (many tickets), else per ticket."""
    dialect = session.get_bind().dialect.name
    key = (group_keys(dialect)[by] if by else literal(None)).label("key")
    counted = [func.count().filter(cond).label(name) for name, cond in conditions(now).items()]
    handled = conditions(None)["handled_closed"]
    seconds = func.sum(_seconds(Ticket.created_at, Ticket.closed_at, dialect)).filter(handled)
    stmt = select(key, *counted, seconds.label("handling_seconds"))
    if join_events:
        per_ticket = (
            select(TicketEvent.ticket_id, func.count().label("n"))
            .where(TicketEvent.action == UNSATISFIED_ACTION)
            .group_by(TicketEvent.ticket_id)
            .subquery()
        )
        stmt = (
            stmt.add_columns(func.sum(per_ticket.c.n).label("unsatisfied"))
            .select_from(Ticket)
            .outerjoin(per_ticket, per_ticket.c.ticket_id == Ticket.id)
        )
    else:
        stmt = stmt.add_columns(func.sum(unsatisfied_events()).label("unsatisfied"))
    stmt = stmt.where(where).group_by(key)
    return [_as_row(r.key, r._mapping) for r in await session.execute(stmt)]


async def _rollup_rows(session: AsyncSession, first: date, stop: date, by: str | None) -> list[Row]:
    """The rolled-up counts of the days ``[first, stop)``, per group of ``by`` (every ticket is in one
    department group, so their sum is the total)."""
    r = TicketMetricsDaily
    key = func.nullif(r.key, "") if by else literal(None)
    sums = [func.sum(getattr(r, name)).label(name) for name in (*ROLLUP_COUNTS, "handling_seconds")]
    stmt = (
        select(key.label("key"), *sums)
        .where(r.day >= first, r.day < stop, r.grouping == (by or "department"))
        .group_by(key)
    )
    return [_as_row(row.key, row._mapping) for row in await session.execute(stmt)]


def _full_days(start: datetime, end: datetime, tz: ZoneInfo) -> tuple[date, date]:
    """The local days ``[first, stop)`` that lie wholly inside ``[start, end)`` (empty when first ≥ stop)."""
    local = start.astimezone(tz)
    first = local.date() if local.time() == time() else local.date() + timedelta(days=1)
    return first, end.astimezone(tz).date()


async def _report(
    session: AsyncSession,
    start: datetime,
    end: datetime,
    by: str | None,
    now: datetime,
    rows: list[Row],
) -> dict[str, Any]:
    merged: dict[Any, Row] = {}
    for row in rows:
        into = merged.setdefault(
            row["key"], {"key": row["key"], **dict.fromkeys(COUNTS, 0), "handling_seconds": 0.0}
        )
        for name in (*COUNTS, "handling_seconds"):
            into[name] += row[name]
    groups = list(merged.values())
    total = {k: sum(g[k] for g in groups) for k in (*COUNTS, "handling_seconds")}
    out: dict[str, Any] = {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "now": now.isoformat(),
        "by": by,
        "total": _rates(total),
    }
    if by is not None:
        names: dict[str, str] = {}
        if by == "department":
            names = {
                code: name
                for code, name in await session.execute(select(Department.code, Department.name))
            }
        labelled = [
            {
                "key": g["key"],
                "label": UNSET_LABELS[by] if g["key"] is None else names.get(g["key"], g["key"]),
                **_rates(g),
            }
            for g in groups
            if g["received"]
        ]
        out["groups"] = sorted(labelled, key=lambda g: (-g["received"], g["key"] or ""))
    await session.commit()  # end the read transaction
    return out


async def metrics(
    session: AsyncSession,
    start: datetime,
    end: datetime,
    by: str | None = None,
    now: datetime | None = None,
    *,
    settings: Settings,
) -> dict[str, Any]:
    """The metrics of the tickets received in ``[start, end)``, in total and per group of ``by``.

    Whole local days come from the rollup plus their unsettled tickets; the partial days at the edges from the
    tickets table."""
    _check(start, end, now, by)
    tz = ZoneInfo(settings.timezone)
    now = now or datetime.now(tz)
    first, stop = _full_days(start, end, tz)
    if first >= stop:
        rows = await _ticket_rows(
            session,
            (Ticket.created_at >= start) & (Ticket.created_at < end),
            by,
            now,
            join_events=False,
        )
        return await _report(session, start, end, by, now, rows)
    lo, hi = datetime.combine(first, time(), tz), datetime.combine(stop, time(), tz)
    where = or_(
        and_(Ticket.created_at >= start, Ticket.created_at < lo),
        and_(Ticket.created_at >= hi, Ticket.created_at < end),
        and_(~Ticket.rolled_up, Ticket.created_at >= lo, Ticket.created_at < hi),
    )
    rows = await _ticket_rows(session, where, by, now, join_events=False)
    rows += await _rollup_rows(session, first, stop, by)
    return await _report(session, start, end, by, now, rows)


async def reference_metrics(
    session: AsyncSession,
    start: datetime,
    end: datetime,
    by: str | None = None,
    now: datetime | None = None,
    *,
    settings: Settings,
) -> dict[str, Any]:
    """:func:`metrics` computed directly over every ticket of the cohort (no rollup): the reference it must
    equal, and the way to check the rollup (``hotline metrics --check``)."""
    _check(start, end, now, by)
    now = now or datetime.now(ZoneInfo(settings.timezone))
    rows = await _ticket_rows(
        session, (Ticket.created_at >= start) & (Ticket.created_at < end), by, now, join_events=True
    )
    return await _report(session, start, end, by, now, rows)
