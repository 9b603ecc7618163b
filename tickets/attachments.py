"""Reply attachments (反馈附件): the record of a file a department attached to a ticket it is working on.

Storing the bytes is the caller's job (the console keeps them under ``<data_dir>/attachments`` named by their
SHA-256); this module checks who may attach and records the file, one transaction per call.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tickets import models as m
from tickets.errors import Forbidden, IllegalTransition, InvalidInput, NotFound
from tickets.models import TicketAttachment
from tickets.schemas import Actor, check_actor
from tickets.services import get_ticket
from tickets.states import Role, State

ATTACHABLE_STATES = frozenset({State.SIGNED, State.IN_PROGRESS})  # while the department works on it


async def add_attachment(
    session: AsyncSession,
    ticket_no: str,
    actor: Actor,
    *,
    file_name: str,
    content_type: str,
    size: int,
    sha256: str,
    now: datetime,
) -> TicketAttachment:
    """Record a file attached by a handler of the ticket's lead department while it is being worked on."""
    check_actor(actor)
    if not file_name.strip() or len(file_name) > m.FILE_NAME_MAX:
        raise InvalidInput(
            f"附件文件名须为 1–{m.FILE_NAME_MAX} 字", code="ticket.invalid_attachment", field="file"
        )
    try:
        ticket = await get_ticket(session, ticket_no)
        if actor.role != Role.HANDLER or actor.department != ticket.lead_department:
            raise Forbidden("只能为本单位主办的工单上传附件", code="ticket.not_own_department")
        if State(ticket.state) not in ATTACHABLE_STATES:
            raise IllegalTransition(
                "工单签收后、反馈前才能上传附件", code="ticket.attachment_state"
            )
        row = TicketAttachment(
            ticket_id=ticket.id,
            at=now,
            actor=actor.name,
            department=actor.department,
            file_name=file_name.strip(),
            content_type=content_type,
            size=size,
            sha256=sha256,
        )
        session.add(row)
        await session.commit()
    except BaseException:
        await session.rollback()
        raise
    return row


async def attachments_of(session: AsyncSession, ticket: str | m.Ticket) -> list[TicketAttachment]:
    """The attachments of a ticket (by number, or the ticket already loaded: not read again), oldest first."""
    if isinstance(ticket, str):
        ticket = await get_ticket(session, ticket, repeat_links=False)
    rows = await session.execute(
        select(TicketAttachment)
        .where(TicketAttachment.ticket_id == ticket.id)
        .order_by(TicketAttachment.id)
    )
    return list(rows.scalars())


async def get_attachment(
    session: AsyncSession, ticket_no: str, attachment_id: int
) -> TicketAttachment:
    ticket = await get_ticket(session, ticket_no, repeat_links=False)
    row = await session.get(TicketAttachment, attachment_id)
    if row is None or row.ticket_id != ticket.id:
        raise NotFound(f"工单 {ticket_no} 没有编号为 {attachment_id} 的附件")
    return row
