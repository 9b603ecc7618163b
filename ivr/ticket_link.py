"""Calls ↔ tickets: which intake channel a call's ticket gets, and the call log's link to the ticket (工单号).

A call answered by a leader on a leader answering day (领导接听日) makes a ``leader-line`` ticket carrying the
leader's name; any other call makes a ``phone`` ticket. The console's ticket form and the bot wiring create
tickets from calls through :func:`create_ticket_for_call`, or link a ticket made otherwise with
:func:`link_call_ticket`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ivr.calllog import get_call, link_ticket
from ivr.models import CallRecord
from tickets.models import Ticket
from tickets.services import Actor, TicketDraft, create_ticket

TicketChannel = Literal["leader-line", "phone"]


def ticket_channel_for_call(call: CallRecord | None) -> tuple[TicketChannel, str | None]:
    """``("leader-line", leader_name)`` for a call a leader answered, else ``("phone", None)``."""
    if call is not None and call.answered_by == "leader" and call.leader_name:
        return "leader-line", call.leader_name
    return "phone", None


async def find_call(session: AsyncSession, *, uniqueid: str | None = None, bot_uuid: str | None = None
                    ) -> CallRecord | None:
    """The call log row of a call, by its Uniqueid or by the bot session (BOT_UUID) it had."""
    if uniqueid:
        return await get_call(session, uniqueid)
    if bot_uuid:
        return await session.scalar(select(CallRecord).where(CallRecord.bot_uuid == bot_uuid).limit(1))
    return None


async def call_draft_fields(session: AsyncSession, uniqueid: str) -> dict[str, str | None]:
    """What the ticket form is pre-filled with for a call: channel, leader, caller number, call id, recording."""
    call = await get_call(session, uniqueid)
    channel, leader = ticket_channel_for_call(call)
    return {"channel": channel, "leader_name": leader, "call_id": uniqueid,
            "caller_phone": call.caller_number if call else None, "recording": call.recording if call else None}


async def create_ticket_for_call(session: AsyncSession, draft: TicketDraft, actor: Actor, *,
                                 uniqueid: str | None = None, bot_uuid: str | None = None,
                                 now: datetime | None = None) -> Ticket:
    """受理 from a call: a leader's call becomes a ``leader-line`` ticket with the leader's name (whatever the
    form said), the call id and recording are filled in when missing, and the call log gets the ticket number."""
    call = await find_call(session, uniqueid=uniqueid, bot_uuid=bot_uuid)
    channel, leader = ticket_channel_for_call(call)
    update: dict[str, str | None] = {}
    if channel == "leader-line":
        update |= {"channel": channel, "leader_name": leader}
    if call is not None:
        update["call_id"] = draft.call_id or call.uniqueid
        update["recording"] = draft.recording or call.recording
    ticket = await create_ticket(session, draft.model_copy(update=update), actor, now=now)
    if call is not None:
        await link_ticket(session, call.uniqueid, ticket.ticket_no)
    return ticket


async def link_call_ticket(session: AsyncSession, ticket_no: str, *, uniqueid: str | None = None,
                           bot_uuid: str | None = None) -> bool:
    """Write ``ticket_no`` into the call log row of a call (by Uniqueid or bot session); False when unknown."""
    call = await find_call(session, uniqueid=uniqueid, bot_uuid=bot_uuid)
    return call is not None and await link_ticket(session, call.uniqueid, ticket_no)
