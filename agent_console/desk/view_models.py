"""What every ticket screen shares: who acts, which tickets a user may see, and the ticket as shown to a role.

A handler (承办人) sees only tickets its department leads or co-handles, a grid worker (网格员) only those filed
from its grid; for anything else every route answers 404, exactly as for a ticket that does not exist.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from agent_console.auth import record_audit
from agent_console.desk.schemas import (
    ActionOut,
    AttachmentOut,
    EventOut,
    MergeLinkOut,
    TicketList,
    TicketOut,
    TicketSummary,
)
from agent_console.errors import InvalidInput, NotFound
from agent_console.masking import caller_of, sees_confidential
from agent_console.roles import Role
from agent_console.routing import Call
from tickets import errors as ticket_errors
from tickets import models as m
from tickets.attachments import attachments_of
from tickets.queries import Page
from tickets.queries import TicketSummary as SummaryRow
from tickets.schemas import Actor
from tickets.services import MergeLink, get_ticket, merge_links, ticket_events
from tickets.states import ROLE_LABELS, STATE_LABELS, TRANSITIONS, State, allowed_actions
from tickets.warnings import LEVEL_LABELS, Level, reason_label, warnings_of

# Roles that work with tickets in the console (a grid worker reads its grid's; the loop's actions are not its).
# 班长 reads tickets like a leader (the calls on the board, their transfers) and acts on none (tickets.states)
TICKET_READERS = frozenset(
    {Role.AGENT, Role.DISPATCHER, Role.HANDLER, Role.LEADER, Role.SUPERVISOR, Role.ADMIN, Role.GRID}
)
EXTRA_ACTION_LABELS = {
    "create": "受理",
    "supervise": "督办",
    "merge_in": "并入工单",
    "confidential": "保密设置",
}
WARNING_RANK = {"yellow": 1, "red": 2}


def actor_of(call: Call[Any]) -> Actor:
    """The logged-in user as the ticket services' actor (name as shown in the audit trail)."""
    user = call.user
    return Actor(user.display_name[: m.NAME_MAX], user.role, user.department)


def may_see(call: Call[Any], ticket: m.Ticket) -> bool:
    scope = call.scope
    if scope.unrestricted:
        return True
    if scope.nothing:
        return False
    if scope.grid is not None:
        return ticket.grid == scope.grid
    return scope.department in (ticket.lead_department, *ticket.co_department_codes)


async def visible_ticket(call: Call[Any], db: AsyncSession, ticket_no: str) -> m.Ticket:
    """The ticket, or 404 when it does not exist or lies outside the user's scope (indistinguishable)."""
    try:
        ticket = await get_ticket(
            db, ticket_no, repeat_links=False
        )  # not shown on any ticket screen
    except ticket_errors.NotFound:
        raise NotFound(f"工单 {ticket_no} 不存在") from None
    if not may_see(call, ticket):
        raise NotFound(f"工单 {ticket_no} 不存在")
    return ticket


def confidential_filter(call: Call[Any], phone: str | None) -> bool | None:
    """The ``list_tickets`` ``confidential`` filter of a search by the caller's number (``phone``): a role that
    does not see confidential callers (保密) does not find their tickets by number either (it would tell who
    called)."""
    return False if phone and not sees_confidential(call.user.role) else None


def scope_filters(call: Call[Any], department: str | None) -> dict[str, str | None]:
    """The ``list_tickets`` filters a list must use: a handler's own department and a grid worker's own grid,
    whatever was asked."""
    scope = call.scope
    return {
        "department": scope.department if scope.department is not None else department,
        "grid": scope.grid,
    }


@contextmanager
def field_errors() -> Iterator[None]:
    """A ticket service's bad-input error as the console's 422 naming the field."""
    try:
        yield
    except ticket_errors.InvalidInput as exc:
        field = exc.field or "body"
        raise InvalidInput(
            exc.message, details=[{"field": field, "code": exc.code, "message": exc.message}]
        ) from None


async def audit_view(call: Call[Any], db: AsyncSession, ticket_no: str) -> None:
    """Views of a ticket (with the caller's personal data) go to the console audit trail (this commits: call it
    last, so one transaction holds the reads and the record)."""
    await record_audit(db, call.origin, "ticket.view", ticket_no, call.now, role=call.user.role)
    await db.commit()


def summary_out(row: SummaryRow, role: str) -> TicketSummary:
    caller = caller_of(row.caller_phone, row.caller_name, role, confidential=row.confidential)
    return TicketSummary(
        ticket_no=row.ticket_no,
        state=State(row.state),
        state_label=row.state_label,
        channel=row.channel,
        kind=row.kind,
        urgency=row.urgency,
        category=row.category,
        district=row.district,
        caller_phone=caller.phone,
        caller_name=caller.name,
        confidential=row.confidential,
        summary=row.summary,
        lead_department=row.lead_department,
        due_at=row.due_at,
        is_repeat=row.is_repeat,
        created_at=row.created_at,
        warning=row.warning,  # type: ignore[arg-type]
    )


def page_out(page: Page, role: str) -> TicketList:
    return TicketList(
        tickets=[summary_out(r, role) for r in page.items], next_cursor=page.next_cursor
    )


def action_label(action: str) -> str:
    t = TRANSITIONS.get(action)
    return t.label if t else EXTRA_ACTION_LABELS.get(action, action)


def actions_for(call: Call[Any], ticket: m.Ticket) -> list[ActionOut]:
    """The loop's actions this user may take now (the buttons), 即办 and 回访 excepted (own screens)."""
    user = call.user
    names = allowed_actions(
        State(ticket.state),
        user.role,
        department=user.department,
        lead_department=ticket.lead_department,
    )
    skip = {
        "close_instant",
        "callback_retry",
        "callback_close",
        "callback_redispatch",
        "merge",  # 并单 has its own form (the main ticket is chosen)
        "merge_settle",
    }
    if ticket.extension_requested_until is None:
        skip |= {"approve_extension", "reject_extension"}
    else:
        skip.add("request_extension")
    return [ActionOut(action=a, label=action_label(a)) for a in names if a not in skip]


async def ticket_out(call: Call[Any], db: AsyncSession, ticket: m.Ticket) -> TicketOut:
    """The full ticket as this user may see it: masked phone, audit trail, open warning, attachments, merge
    links (four queries: ``ticket`` as loaded is not read again)."""
    role = call.user.role
    events = await ticket_events(db, ticket)
    warnings = await warnings_of(db, ticket)
    files = await attachments_of(db, ticket)
    links = await merge_links(db, ticket)
    caller = caller_of(
        ticket.caller_phone, ticket.caller_name, role, confidential=ticket.confidential
    )
    level = max((w.level for w in warnings), key=lambda lv: WARNING_RANK.get(lv, 0), default=None)
    return TicketOut(
        ticket_no=ticket.ticket_no,
        state=State(ticket.state),
        state_label=STATE_LABELS[State(ticket.state)],
        channel=ticket.channel,
        kind=ticket.kind,
        urgency=ticket.urgency,
        category=ticket.category,
        district=ticket.district,
        caller_phone=caller.phone,
        caller_name=caller.name,
        confidential=ticket.confidential,
        merged_into=None if links.main is None else _link_out(links.main),
        merged=[_link_out(link) for link in links.merged],
        summary=ticket.content,
        content=ticket.content,
        lead_department=ticket.lead_department,
        due_at=ticket.due_at,
        sign_for_due=ticket.sign_for_due,
        extension_requested_until=ticket.extension_requested_until,
        created_at=ticket.created_at,
        updated_at=ticket.updated_at,
        is_repeat=ticket.is_repeat,
        return_count=ticket.return_count,
        warning=level,
        warning_reasons=[_warning_text(w) for w in warnings],
        version=ticket.version,
        address=ticket.address,
        street=ticket.street,
        grid=ticket.grid,
        transcript=ticket.transcript,
        dispatch_mode=ticket.dispatch_mode,
        co_departments=ticket.co_department_codes,
        answer=ticket.answer,
        reply=ticket.reply,
        satisfaction=ticket.satisfaction,
        callback_attempts=ticket.callback_attempts,
        dispatched_at=ticket.dispatched_at,
        signed_at=ticket.signed_at,
        replied_at=ticket.replied_at,
        closed_at=ticket.closed_at,
        actions=actions_for(call, ticket),
        events=[_event_out(e) for e in events],
        attachments=[
            AttachmentOut(
                id=f.id,
                file_name=f.file_name,
                content_type=f.content_type,
                size=f.size,
                actor=f.actor,
                at=f.at,
                url=f"/api/v1/console/tickets/{ticket.ticket_no}/attachments/{f.id}",
            )
            for f in files
        ],
    )


def _link_out(link: MergeLink) -> MergeLinkOut:
    return MergeLinkOut(
        ticket_no=link.ticket_no,
        state=State(link.state),
        state_label=STATE_LABELS[State(link.state)],
        version=link.version,
    )


def _warning_text(w: m.TicketWarning) -> str:
    return f"{LEVEL_LABELS[Level(w.level)]}：{reason_label(w.reason, w.level)}"


def _event_out(e: m.TicketEvent) -> EventOut:
    return EventOut(
        at=e.at,
        actor=e.actor,
        role=e.role,
        role_label=ROLE_LABELS.get(e.role, e.role),
        action=e.action,
        action_label=action_label(e.action),
        from_state=e.from_state,
        to_state=e.to_state,
        note=e.note,
        payload=dict(e.payload or {}),
    )


def local(value: datetime | None, tz: Any) -> str:
    return "—" if value is None else value.astimezone(tz).strftime("%Y-%m-%d %H:%M")
