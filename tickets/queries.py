"""Ticket lists and searches for the console: filters, newest first, keyset pagination; the caller's history.

Every filter has an index to start from (``tickets`` indexes: state, lead department + created_at, caller phone
+ created_at, district + created_at, created_at, ticket_no — with ``text_pattern_ops`` on PostgreSQL for the
prefix search); pages are cut by ``(created_at, id) < cursor``, so page 1000 costs what page 1 costs.
The text search is ``LIKE '%…%'`` on the content: it walks the newest tickets until a page is full, which is
fast for common words and slow for a rare word over millions of rows — combine it with another filter. (A
pg_trgm GIN index would make it fast on PostgreSQL; it is left out because it needs the extension.)
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from tickets.categories import SEPARATOR
from tickets.errors import InvalidInput
from tickets.models import Ticket, TicketCoDepartment, TicketWarning
from tickets.phone import normalise_phone
from tickets.states import STATE_LABELS, State

MAX_LIMIT = 200
SUMMARY_CHARS = 80
WARNING_FILTERS = ("yellow", "red", "any")
_LEVEL_RANK = {"yellow": 1, "red": 2}
_NEWEST_FIRST = (Ticket.created_at.desc(), Ticket.id.desc())

SUMMARY_COLUMNS = (
    Ticket.id,
    Ticket.ticket_no,
    Ticket.created_at,
    Ticket.state,
    Ticket.channel,
    Ticket.kind,
    Ticket.urgency,
    Ticket.category,
    Ticket.district,
    Ticket.caller_phone,
    Ticket.caller_name,
    Ticket.content,
    Ticket.lead_department,
    Ticket.due_at,
    Ticket.is_repeat,
    Ticket.version,
    Ticket.sign_for_due,
    Ticket.return_count,
    Ticket.extension_requested_until,
    Ticket.confidential,
)


@dataclass(frozen=True)
class TicketSummary:
    """One line of a ticket list."""

    ticket_no: str
    created_at: datetime
    state: str
    channel: str
    kind: str
    urgency: str
    category: str | None
    district: str | None
    caller_phone: str
    caller_name: str | None
    summary: str
    lead_department: str | None
    due_at: datetime | None
    is_repeat: bool  # 重复件
    warning: str | None  # highest open warning: "red" 红牌 / "yellow" 黄牌
    # What the desks show beside a line (so they need not load each ticket); not part of to_json().
    version: int = 0
    sign_for_due: datetime | None = None  # 签收时限
    return_count: int = 0  # 退回次数
    extension_requested_until: datetime | None = None  # 待审批的延期申请
    confidential: bool = False  # 保密: name and number only for the roles that call back

    @property
    def state_label(self) -> str:
        return STATE_LABELS[State(self.state)]

    def to_json(self) -> dict[str, Any]:
        return {
            "ticket_no": self.ticket_no,
            "created_at": self.created_at.isoformat(),
            "state": self.state,
            "state_label": self.state_label,
            "channel": self.channel,
            "kind": self.kind,
            "urgency": self.urgency,
            "category": self.category,
            "district": self.district,
            "caller_phone": self.caller_phone,
            "caller_name": self.caller_name,
            "summary": self.summary,
            "lead_department": self.lead_department,
            "due_at": self.due_at.isoformat() if self.due_at else None,
            "is_repeat": self.is_repeat,
            "warning": self.warning,
        }


@dataclass(frozen=True)
class Page:
    items: list[TicketSummary]
    next_cursor: str | None  # pass as ``cursor`` for the next (older) page; None on the last page

    def to_json(self) -> dict[str, Any]:
        return {"items": [t.to_json() for t in self.items], "next_cursor": self.next_cursor}


def summarise(content: str, chars: int) -> str:
    """The first ``chars`` characters of a request, on one line."""
    flat = " ".join(content.split())
    return flat if len(flat) <= chars else flat[:chars] + "…"


def encode_cursor(created_at: datetime, ticket_id: int) -> str:
    raw = f"{created_at.isoformat()}|{ticket_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, ticket_id = raw.rsplit("|", 1)
        at = datetime.fromisoformat(stamp)
        if at.tzinfo is None:
            raise ValueError("naive")
        return at, int(ticket_id)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidInput(
            "翻页标记无效，请从第一页重新查询", code="ticket.invalid_cursor", field="cursor"
        ) from None


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _states(state: str | None, states: Iterable[str] | None) -> list[str]:
    wanted = ([state] if state else []) + list(states or [])
    known = {s.value for s in State}
    bad = [s for s in wanted if s not in known]
    if bad:
        raise InvalidInput(
            f"未知的工单状态：{'、'.join(bad)}（可选：{'、'.join(sorted(known))}）",
            code="ticket.invalid_choice",
            field="state",
        )
    return wanted


def _ticket_no_prefix(prefix: str, dialect: str) -> ColumnElement[bool]:
    if dialect == "postgresql":  # LIKE 'p%' uses the text_pattern_ops index whatever the collation
        return Ticket.ticket_no.like(_like_escape(prefix) + "%", escape="\\")
    # SQLite compares with BINARY collation: a range on the unique index is exactly the prefix.
    return and_(Ticket.ticket_no >= prefix, Ticket.ticket_no < prefix + "\U0010ffff")


def _open_warning(level: str) -> ColumnElement[bool]:
    cond = (TicketWarning.ticket_id == Ticket.id) & TicketWarning.cleared_at.is_(None)
    if level != "any":
        cond = cond & (TicketWarning.level == level)
    return exists().where(cond)


async def list_tickets(
    session: AsyncSession,
    *,
    state: str | None = None,
    states: Iterable[str] | None = None,
    department: str | None = None,
    caller_phone: str | None = None,
    text: str | None = None,
    ticket_no: str | None = None,
    district: str | None = None,
    category: str | None = None,
    grid: str | None = None,
    warning: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    confidential: bool | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page:
    """Tickets matching every given filter, newest first, ``limit`` per page.

    ``department`` matches the lead or a co-handling department; ``caller_phone`` is normalised first;
    ``ticket_no`` is a prefix; ``text`` a substring of the content; ``category`` a first-level name (its
    children included) or a full ``一级/二级`` path; ``warning`` is ``yellow``, ``red`` or ``any`` open warning;
    ``created_from`` ≤ created_at < ``created_to``; ``grid`` the 网格 the ticket was filed from;
    ``confidential`` False leaves out the 保密 tickets.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(
            f"每页条数须在 1–{MAX_LIMIT} 之间", code="ticket.invalid_limit", field="limit"
        )
    conds: list[ColumnElement[bool]] = []
    if wanted := _states(state, states):
        conds.append(Ticket.state.in_(wanted))
    if caller_phone:
        conds.append(Ticket.caller_phone == normalise_phone(caller_phone))
    if confidential is not None:
        conds.append(Ticket.confidential.is_(confidential))
    if text and text.strip():
        conds.append(Ticket.content.like(f"%{_like_escape(text.strip())}%", escape="\\"))
    if ticket_no and ticket_no.strip():
        conds.append(_ticket_no_prefix(ticket_no.strip(), session.get_bind().dialect.name))
    if district:
        conds.append(Ticket.district == district)
    if grid:
        conds.append(Ticket.grid == grid)
    if category:
        conds.append(
            or_(
                Ticket.category == category,
                Ticket.category.like(_like_escape(category) + SEPARATOR + "%", escape="\\"),
            )
        )
    if warning:
        if warning not in WARNING_FILTERS:
            raise InvalidInput(
                f"预警筛选取值无效：{warning!r}（可选：{'、'.join(WARNING_FILTERS)}）",
                code="ticket.invalid_choice",
                field="warning",
            )
        conds.append(_open_warning(warning))
    for value, name in ((created_from, "created_from"), (created_to, "created_to")):
        if value is not None and value.tzinfo is None:
            raise InvalidInput("时间必须带时区", code="ticket.naive_time", field=name)
    if created_from is not None:
        conds.append(Ticket.created_at >= created_from)
    if created_to is not None:
        conds.append(Ticket.created_at < created_to)
    if cursor:
        at, ticket_id = decode_cursor(cursor)
        conds.append(
            or_(Ticket.created_at < at, and_(Ticket.created_at == at, Ticket.id < ticket_id))
        )
    if department:
        conds = [_of_department(department, conds, limit + 1)]
    stmt = select(*SUMMARY_COLUMNS).where(*conds).order_by(*_NEWEST_FIRST).limit(limit + 1)
    rows = list(await session.execute(stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    items = await _summaries(session, rows)
    await session.commit()  # end the read transaction
    last = rows[-1] if rows else None
    return Page(
        items, encode_cursor(last.created_at, last.id) if more and last is not None else None
    )


def _of_department(
    department: str, conds: list[ColumnElement[bool]], n: int
) -> ColumnElement[bool]:
    """The newest ``n`` matches led by ``department`` united with the newest ``n`` it co-handles: each half
    walks its own index, so a department with few tickets is as fast as a busy one."""
    lead = (
        select(Ticket.id)
        .where(Ticket.lead_department == department, *conds)
        .order_by(*_NEWEST_FIRST)
        .limit(n)
    )
    co = (
        select(Ticket.id)
        .join(TicketCoDepartment, TicketCoDepartment.ticket_id == Ticket.id)
        .where(TicketCoDepartment.department_code == department, *conds)
        .order_by(*_NEWEST_FIRST)
        .limit(n)
    )
    lead_ids, co_ids = lead.subquery(), co.subquery()
    return Ticket.id.in_(union(select(lead_ids.c.id), select(co_ids.c.id)))


async def caller_history(session: AsyncSession, phone: str, limit: int = 10) -> list[TicketSummary]:
    """The caller's earlier tickets, newest first (the agent's screen pop, 来电弹屏), each with its repeat flag."""
    return (await list_tickets(session, caller_phone=phone, limit=limit)).items


async def _summaries(session: AsyncSession, rows: list[Any]) -> list[TicketSummary]:
    levels: dict[int, str] = {}
    if rows:
        found = await session.execute(
            select(TicketWarning.ticket_id, TicketWarning.level).where(
                TicketWarning.ticket_id.in_([r.id for r in rows]),
                TicketWarning.cleared_at.is_(None),
            )
        )
        for ticket_id, level in found:
            if _LEVEL_RANK.get(level, 0) > _LEVEL_RANK.get(levels.get(ticket_id, ""), 0):
                levels[ticket_id] = level
    return [
        TicketSummary(
            ticket_no=r.ticket_no,
            created_at=r.created_at,
            state=r.state,
            channel=r.channel,
            kind=r.kind,
            urgency=r.urgency,
            category=r.category,
            district=r.district,
            caller_phone=r.caller_phone,
            caller_name=r.caller_name,
            summary=summarise(r.content, SUMMARY_CHARS),
            lead_department=r.lead_department,
            due_at=r.due_at,
            is_repeat=r.is_repeat,
            warning=levels.get(r.id),
            version=r.version,
            sign_for_due=r.sign_for_due,
            return_count=r.return_count,
            extension_requested_until=r.extension_requested_until,
            confidential=r.confidential,
        )
        for r in rows
    ]


async def tickets_of_calls(session: AsyncSession, call_ids: Iterable[str]) -> dict[str, str]:
    """Call id (Asterisk Uniqueid) → the number of the first ticket filed from that call."""
    ids = [c for c in call_ids if c]
    if not ids:
        return {}
    rows = (
        await session.execute(
            select(Ticket.call_id, Ticket.ticket_no)
            .where(Ticket.call_id.in_(ids))
            .order_by(Ticket.id.desc())
        )
    ).all()
    return {call_id: ticket_no for call_id, ticket_no in rows if call_id}


async def withdrawn_by_caller(
    session: AsyncSession, since: datetime, min_count: int
) -> dict[str, int]:
    """Caller phone → how many of its tickets filed since ``since`` were withdrawn (撤销, how an invalid or abusive
    request is closed), for the numbers with at least ``min_count``; withheld numbers are left out."""
    count = func.count(Ticket.id)
    rows = await session.execute(
        select(Ticket.caller_phone, count)
        .where(
            Ticket.created_at >= since,
            Ticket.state == State.WITHDRAWN,
            Ticket.caller_phone != "",
        )
        .group_by(Ticket.caller_phone)
        .having(count >= min_count)
    )
    return {phone: int(n) for phone, n in rows.all()}
