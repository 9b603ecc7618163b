"""Supervision (督办): a letter (督办函) to the responsible leader, recorded on the ticket with an audit event.

The warning scan supervises every ticket that gets a red warning (红牌); leaders and dispatchers can also
supervise a ticket by hand (:func:`supervise`). Each supervision writes a ``ticket_supervisions`` row, queues
the letter in the outbox (channel ``email``, addressed to the leader) and adds a ``supervise`` audit event
that leaves the ticket's state and version alone.

Who answers for a department comes from the dispatch catalogue (派单目录): the entry of the ticket's lead
department, preferring the one of the ticket's first-level category. A ticket without a department yet is the
dispatch desk's and the centre leader's (``settings.warnings``).

The letter template (``settings.warnings.letter_template``) is plain text with ``$placeholders``:
``$ticket_no $department $leader $leader_title $reason $summary $due_at $overdue $date``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from config.settings import SHIPPED_TOML
from tickets import outbox
from tickets.categories import SEPARATOR
from tickets.dispatch_catalogue import Catalogue, load_catalogue
from tickets.errors import Forbidden, IllegalTransition, InvalidInput, TicketError
from tickets.models import Department, Ticket, TicketSupervision
from tickets.queries import summarise
from tickets.schemas import Actor, check_actor, check_note
from tickets.services import get_ticket, record_note
from tickets.states import ROLE_LABELS, TERMINAL_STATES, Role

SYSTEM_ACTOR = Actor("预警系统", Role.SYSTEM.value)
MANUAL = "manual"  # reason of a supervision pressed by hand
MANUAL_LABEL = "领导督办"
SUPERVISORS = frozenset({Role.LEADER, Role.DISPATCHER, Role.ADMIN, Role.SYSTEM})
PLACEHOLDERS = (
    "ticket_no",
    "department",
    "leader",
    "leader_title",
    "reason",
    "summary",
    "due_at",
    "overdue",
    "date",
)


@dataclass(frozen=True)
class Responsible:
    """Who answers for a ticket: the department's responsible person (承办人) and leader (分管领导)."""

    department: str | None  # department code; None before dispatch
    department_name: str
    person: str
    person_title: str
    leader: str
    leader_title: str

    @property
    def person_address(self) -> str:
        return f"{self.department_name} {self.person}{self.person_title and '（' + self.person_title + '）'}"

    @property
    def leader_address(self) -> str:
        return f"{self.department_name} {self.leader}{self.leader_title and '（' + self.leader_title + '）'}"


def responsible_for(
    catalogue: Catalogue,
    settings: Settings,
    *,
    department: str | None,
    department_name: str | None,
    category: str | None,
) -> Responsible:
    """The catalogue's people for ``department`` (matched by code or name); placeholders when it has none."""
    desk = settings.warnings
    if department is None:
        return Responsible(None, desk.dispatch_desk, desk.dispatch_desk, "", desk.centre_leader, "")
    name = department_name or department
    entries = [e for e in catalogue.entries if e.department in (department, name)]
    top = (category or "").split(SEPARATOR)[0]
    entry = next((e for e in entries if e.name == top), entries[0] if entries else None)
    if entry is None:
        return Responsible(department, name, "12345联络人", "", "分管领导", "")
    return Responsible(
        department, name, entry.person, entry.person_title, entry.leader, entry.leader_title
    )


async def department_names(session: AsyncSession) -> dict[str, str]:
    """Department code → name."""
    return {
        code: name for code, name in await session.execute(select(Department.code, Department.name))
    }


def _span(seconds: float) -> str:
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} 天 {hours} 小时"
    return f"{hours} 小时 {mins} 分钟" if hours else f"{mins} 分钟"


def describe_deadline(due: datetime | None, now: datetime) -> str:
    """How the ticket stands against its deadline, in words (已超期 … / 距办理时限还有 …)."""
    if due is None:
        return "无办理时限"
    late = (now - due).total_seconds()
    return f"已超期 {_span(late)}" if late > 0 else f"距办理时限还有 {_span(-late)}"


def format_time(value: datetime | None, tz: ZoneInfo) -> str:
    return "无" if value is None else value.astimezone(tz).strftime("%Y年%m月%d日 %H:%M")


def load_template(settings: Settings) -> string.Template:
    """The letter template named by ``settings.warnings.letter_template``; every placeholder must be known."""
    path = Path(settings.warnings.letter_template)
    path = path if path.is_absolute() else SHIPPED_TOML.parent / path  # relative to config/
    try:
        template = string.Template(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TicketError(
            f"无法读取督办函模板 {path}：{exc.strerror}", code="supervision.template_missing"
        ) from exc
    unknown = sorted(set(template.get_identifiers()) - set(PLACEHOLDERS))
    if unknown or not template.is_valid():
        raise TicketError(
            f"督办函模板 {path} 含未知占位符：{'、'.join(unknown) or '格式错误'}"
            f"（可用：{'、'.join(PLACEHOLDERS)}）",
            code="supervision.template_invalid",
        )
    return template


def render_letter(
    template: string.Template,
    ticket: Ticket,
    responsible: Responsible,
    *,
    reason: str,
    now: datetime,
    settings: Settings,
) -> str:
    """The 督办函 for ``ticket``, addressed to its responsible leader."""
    tz = ZoneInfo(settings.timezone)
    return template.substitute(
        ticket_no=ticket.ticket_no,
        department=responsible.department_name,
        leader=responsible.leader,
        leader_title=responsible.leader_title or "负责同志",
        reason=reason,
        summary=summarise(ticket.content, settings.warnings.summary_chars),
        due_at=format_time(ticket.due_at, tz),
        overdue=describe_deadline(ticket.due_at, now),
        date=now.astimezone(tz).strftime("%Y年%m月%d日"),
    )


def add_supervision(
    session: AsyncSession,
    ticket: Ticket,
    responsible: Responsible,
    letter: str,
    *,
    actor: Actor,
    reason: str,
    now: datetime,
    warning_id: int | None = None,
    note: str = "",
) -> TicketSupervision:
    """Record a supervision inside the caller's transaction: the row, the letter in the outbox, the audit event."""
    row = TicketSupervision(
        ticket_id=ticket.id,
        warning_id=warning_id,
        at=now,
        actor=actor.name,
        role=actor.role,
        reason=reason,
        department=responsible.department,
        leader=responsible.leader_address,
        letter=letter,
        note=note,
    )
    session.add(row)
    outbox.enqueue(
        session,
        channel=outbox.EMAIL,
        recipient=responsible.leader_address,
        subject=f"督办函：工单 {ticket.ticket_no}",
        body=letter,
        now=now,
        ticket_id=ticket.id,
        warning_id=warning_id,
    )
    record_note(
        session,
        ticket_id=ticket.id,
        state=ticket.state,
        action="supervise",
        actor=actor,
        at=now,
        note=note,
        payload={"reason": reason, "leader": responsible.leader_address, "warning_id": warning_id},
    )
    return row


async def supervise(
    session: AsyncSession,
    ticket_no: str,
    actor: Actor,
    *,
    note: str = "",
    now: datetime | None = None,
    settings: Settings,
    catalogue: Catalogue | None = None,
) -> TicketSupervision:
    """督办 by hand: a leader, dispatcher or admin presses the ticket's department; one transaction."""
    check_actor(actor)
    if actor.role not in SUPERVISORS:
        raise Forbidden(
            f"{ROLE_LABELS.get(actor.role, actor.role)}无权督办工单", code="ticket.role_forbidden"
        )
    if now is not None and now.tzinfo is None:
        raise InvalidInput("时间必须带时区", code="ticket.naive_time", field="now")
    now = now or datetime.now(ZoneInfo(settings.timezone))
    note = check_note(note)
    catalogue = catalogue or load_catalogue(settings)
    template = load_template(settings)
    try:
        ticket = await get_ticket(session, ticket_no)
        if ticket.state in TERMINAL_STATES:
            raise IllegalTransition("已办结或撤销的工单不能督办", code="ticket.supervise_closed")
        names = await department_names(session)
        who = responsible_for(
            catalogue,
            settings,
            department=ticket.lead_department,
            department_name=names.get(ticket.lead_department or ""),
            category=ticket.category,
        )
        reason = f"{MANUAL_LABEL}（{note}）" if note else MANUAL_LABEL
        letter = render_letter(template, ticket, who, reason=reason, now=now, settings=settings)
        row = add_supervision(
            session, ticket, who, letter, actor=actor, reason=MANUAL, now=now, note=note
        )
        await session.commit()
    except BaseException:
        await session.rollback()
        raise
    return row


async def supervisions_of(session: AsyncSession, ticket_no: str) -> list[TicketSupervision]:
    """The ticket's supervisions, oldest first."""
    ticket = await get_ticket(session, ticket_no)
    rows = await session.execute(
        select(TicketSupervision)
        .where(TicketSupervision.ticket_id == ticket.id)
        .order_by(TicketSupervision.id)
    )
    return list(rows.scalars())
