"""Performance metrics of the 接诉即办 loop (考核指标) for the leaders' cockpit and ``hotline metrics``.

The population is the *cohort* of tickets received (``created_at``) in ``[start, end)``; their state is taken as
stored now, and ``now`` decides only what counts as overdue and which sign-for deadlines have passed. One SQL
query with ``GROUP BY`` and ``FILTER`` computes everything; no ticket row is loaded.

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

from sqlalchemy import ColumnElement, case, extract, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings, load_settings
from tickets.categories import SEPARATOR
from tickets.errors import InvalidInput
from tickets.models import Department, Ticket, TicketEvent
from tickets.states import State

GroupBy = Literal["department", "category", "area"]
GROUPINGS: tuple[str, ...] = ("department", "category", "area")
SATISFIED = ("satisfied", "basically_satisfied")
UNSATISFIED_ACTION = "callback_redispatch"
UNSET_LABELS = {"department": "（未派发）", "category": "（未分类）", "area": "（未填区县）"}
COUNTS = ("received", "withdrawn", "closed", "open", "overdue", "dispatched", "sign_for_decided", "signed_in_time",
          "closed_on_time", "instant", "satisfied", "unsatisfied", "repeats", "handled_closed")


def day_range(first: date, last: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """``[first 00:00, the day after last 00:00)`` in ``tz``: the window of the inclusive dates."""
    if last < first:
        raise InvalidInput(f"结束日期 {last} 早于开始日期 {first}", code="metrics.bad_range", field="to")
    return datetime.combine(first, time(), tz), datetime.combine(last + timedelta(days=1), time(), tz)


def _group_key(by: str | None, dialect: str) -> ColumnElement[Any]:
    if by is None:
        return literal(None)
    if by == "department":
        return Ticket.lead_department
    if by == "area":
        return Ticket.district
    if by == "category":
        if dialect == "postgresql":
            return func.nullif(func.split_part(Ticket.category, SEPARATOR, 1), "")
        cut = func.instr(Ticket.category, SEPARATOR)
        return case((cut > 0, func.substr(Ticket.category, 1, cut - 1)), else_=Ticket.category)
    raise InvalidInput(f"未知的分组方式：{by!r}（可选：{'、'.join(GROUPINGS)}）", code="metrics.bad_group", field="by")


def _seconds(a: Any, b: Any, dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return extract("epoch", b - a)
    return (func.julianday(b) - func.julianday(a)) * 86400.0


def _rate(num: float, den: float, digits: int = 4) -> float | None:
    return round(num / den, digits) if den else None


def _with_rates(counts: dict[str, Any]) -> dict[str, Any]:
    c = counts
    surveyed = c["satisfied"] + c["unsatisfied"]
    return {
        **{k: c[k] for k in COUNTS},
        "surveyed": surveyed,
        "response_rate": _rate(c["signed_in_time"], c["sign_for_decided"]),
        "closure_rate": _rate(c["closed"], c["received"]),
        "on_time_rate": _rate(c["closed_on_time"], c["closed"]),
        "satisfaction_rate": _rate(c["satisfied"], surveyed),
        "instant_rate": _rate(c["instant"], c["received"]),
        "repeat_rate": _rate(c["repeats"], c["received"]),
        "avg_handling_hours": _rate(c["handling_seconds"], c["handled_closed"] * 3600.0, 2),
    }


async def metrics(session: AsyncSession, start: datetime, end: datetime, by: str | None = None,
                  now: datetime | None = None, *, settings: Settings | None = None) -> dict[str, Any]:
    """The metrics of the tickets received in ``[start, end)``, in total and per group of ``by``."""
    for value, name in ((start, "from"), (end, "to"), (now, "now")):
        if value is not None and value.tzinfo is None:
            raise InvalidInput("时间必须带时区", code="ticket.naive_time", field=name)
    if end <= start:
        raise InvalidInput("统计区间的结束时间须晚于开始时间", code="metrics.bad_range", field="to")
    settings = settings or load_settings()
    now = now or datetime.now(ZoneInfo(settings.timezone))
    dialect = session.get_bind().dialect.name
    key = _group_key(by, dialect).label("key")

    closed = Ticket.state == State.CLOSED.value
    is_open = Ticket.state.not_in([State.CLOSED.value, State.WITHDRAWN.value])
    dispatched = Ticket.dispatched_at.is_not(None)
    instant = closed & Ticket.answer.is_not(None)
    handled = closed & Ticket.answer.is_(None)
    unsatisfied = (select(TicketEvent.ticket_id, func.count().label("n"))
                   .where(TicketEvent.action == UNSATISFIED_ACTION).group_by(TicketEvent.ticket_id).subquery())
    count = func.count
    stmt = (
        select(
            key,
            count().label("received"),
            count().filter(Ticket.state == State.WITHDRAWN.value).label("withdrawn"),
            count().filter(closed).label("closed"),
            count().filter(is_open).label("open"),
            count().filter(is_open & (Ticket.due_at < now)).label("overdue"),
            count().filter(dispatched).label("dispatched"),
            count().filter(dispatched & (Ticket.signed_at.is_not(None) | (Ticket.sign_for_due < now)))
            .label("sign_for_decided"),
            count().filter(dispatched & (Ticket.signed_at <= Ticket.sign_for_due)).label("signed_in_time"),
            count().filter(closed & (Ticket.due_at.is_(None) | (Ticket.closed_at <= Ticket.due_at)))
            .label("closed_on_time"),
            count().filter(instant).label("instant"),
            count().filter(Ticket.satisfaction.in_(SATISFIED)).label("satisfied"),
            func.coalesce(func.sum(unsatisfied.c.n), 0).label("unsatisfied"),
            count().filter(Ticket.is_repeat).label("repeats"),
            count().filter(handled).label("handled_closed"),
            func.coalesce(func.sum(_seconds(Ticket.created_at, Ticket.closed_at, dialect)).filter(handled), 0)
            .label("handling_seconds"),
        )
        .select_from(Ticket)
        .outerjoin(unsatisfied, unsatisfied.c.ticket_id == Ticket.id)
        .where(Ticket.created_at >= start, Ticket.created_at < end)
        .group_by(key)
    )
    rows = [{"key": r.key, **{k: int(r._mapping[k]) for k in COUNTS},  # PostgreSQL sums are numeric
             "handling_seconds": float(r.handling_seconds)} for r in await session.execute(stmt)]
    total = {k: sum(r[k] for r in rows) for k in (*COUNTS, "handling_seconds")}
    out: dict[str, Any] = {"from": start.isoformat(), "to": end.isoformat(), "now": now.isoformat(), "by": by,
                           "total": _with_rates(total)}
    if by is not None:
        names: dict[str, str] = {}
        if by == "department":
            names = {code: name for code, name in await session.execute(select(Department.code, Department.name))}
        groups = [{"key": r["key"], "label": UNSET_LABELS[by] if r["key"] is None else names.get(r["key"], r["key"]),
                   **_with_rates(r)} for r in rows]
        out["groups"] = sorted(groups, key=lambda g: (-g["received"], g["key"] or ""))
    await session.commit()  # end the read transaction
    return out
