"""Voice messages (留言) as tickets: filed once per call, then given the text the speech recogniser heard.

:func:`file_message` files a message as a ticket on channel ``message`` with the text :data:`PENDING_TEXT`,
the recording's file name and the call's Uniqueid (``call_id``), plus its :class:`~tickets.models.VoiceMessage`
row and — when asked — an SMS with the ticket number in the outbox. A message from a withheld or invalid number
is filed too, without a number (:data:`~tickets.phone.UNKNOWN_PHONE`), its content marked
:data:`UNKNOWN_CALLER_MARK`, and no SMS. It is idempotent per call: a replayed
event, a resync or a sweep of the folder returns the ticket filed before. A ticket created by an attempt that
failed before its row was written is found by its ``call_id`` and reused, never doubled.

:func:`record_transcript` puts the recognised text into the ticket (content and transcript), or marks a
message without speech :data:`NO_SPEECH_TEXT`; one transaction with an audit event ``transcribe``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from tickets import outbox, repeats
from tickets.errors import NotFound
from tickets.models import CONTENT_MAX, TRANSCRIPT_MAX, Ticket, VoiceMessage
from tickets.phone import UNKNOWN_PHONE, UNKNOWN_PHONE_LABEL, phone_or_unknown
from tickets.schemas import Actor, TicketDraft
from tickets.services import create_ticket, record_note

CHANNEL = "message"
PENDING, TRANSCRIBED, NO_SPEECH = "pending", "transcribed", "no_speech"
TRANSCRIPTIONS = {PENDING: "转写中", TRANSCRIBED: "已转写", NO_SPEECH: "无语音"}
PENDING_TEXT = "语音留言（转写中）"
NO_SPEECH_TEXT = "语音留言（无语音）"
UNKNOWN_CALLER_MARK = (
    f"【{UNKNOWN_PHONE_LABEL}，无法回电】"  # leads the content of a message without a number
)
MESSAGE_ACTOR = Actor(name="语音留言", role="bot")
SMS_SUBJECT = "12345热线"


@dataclass(frozen=True)
class LeftMessage:
    """A recorded message as the PBX reported it (or as the folder shows it)."""

    call_id: str
    file: str
    caller_phone: str  # as the PBX gave it: normalised, or unknown when withheld or invalid
    record_status: str


@dataclass(frozen=True)
class Filed:
    ticket_no: str
    new: bool  # filed by this call (False: filed before)


@dataclass(frozen=True)
class PendingMessage:
    call_id: str
    file: str
    ticket_no: str


async def filed_ticket(session: AsyncSession, call_id: str) -> str | None:
    """The number of the ticket a call's message was filed as, or None."""
    return await session.scalar(
        select(Ticket.ticket_no)
        .join(VoiceMessage, VoiceMessage.ticket_id == Ticket.id)
        .where(VoiceMessage.call_id == call_id)
    )


async def filed_calls(session: AsyncSession, call_ids: list[str]) -> set[str]:
    """Which of ``call_ids`` have a filed message."""
    if not call_ids:
        return set()
    rows = await session.scalars(
        select(VoiceMessage.call_id).where(VoiceMessage.call_id.in_(call_ids))
    )
    return set(rows)


async def file_message(
    session: AsyncSession, message: LeftMessage, *, settings: Settings, now: datetime, sms: bool
) -> Filed:
    """The ticket of ``message``: the one filed before, or a new one with its row (and SMS) committed."""
    earlier = await filed_ticket(session, message.call_id)
    if earlier is not None:
        return Filed(earlier, new=False)
    ticket = await session.scalar(
        select(Ticket).where(Ticket.call_id == message.call_id, Ticket.channel == CHANNEL)
    )
    if ticket is None:
        phone = phone_or_unknown(message.caller_phone)
        draft = TicketDraft(
            channel=CHANNEL,
            caller_phone=phone,
            content=_marked(phone, PENDING_TEXT),
            recording=message.file,
            call_id=message.call_id,
        )
        ticket = await create_ticket(session, draft, MESSAGE_ACTOR, now=now, settings=settings)
    session.add(
        VoiceMessage(
            call_id=message.call_id,
            file=message.file,
            caller_phone=ticket.caller_phone,
            record_status=message.record_status[:16],
            ticket_id=ticket.id,
            transcription=PENDING,
            created_at=now,
        )
    )
    if sms and ticket.caller_phone != UNKNOWN_PHONE:
        outbox.enqueue(
            session,
            channel=outbox.SMS,
            recipient=ticket.caller_phone,
            subject=SMS_SUBJECT,
            body=f"您的留言已登记，工单号 {ticket.ticket_no}，我们会尽快办理并回复您。",
            now=now,
            ticket_id=ticket.id,
        )
    ticket_no = ticket.ticket_no
    try:
        await session.commit()
    except IntegrityError:  # filed meanwhile by another process
        await session.rollback()
        return Filed(await filed_ticket(session, message.call_id) or ticket_no, new=False)
    return Filed(ticket_no, new=True)


def _marked(phone: str, content: str) -> str:
    """``content``, led by :data:`UNKNOWN_CALLER_MARK` when the caller's number is unknown."""
    return UNKNOWN_CALLER_MARK + content if phone == UNKNOWN_PHONE else content


async def pending_messages(session: AsyncSession, limit: int = 10) -> list[PendingMessage]:
    """Messages waiting for their text, oldest first."""
    rows = await session.execute(
        select(VoiceMessage.call_id, VoiceMessage.file, Ticket.ticket_no)
        .join(Ticket, Ticket.id == VoiceMessage.ticket_id)
        .where(VoiceMessage.transcription == PENDING)
        .order_by(VoiceMessage.created_at, VoiceMessage.id)
        .limit(limit)
    )
    return [PendingMessage(*row) for row in rows.all()]


async def record_transcript(
    session: AsyncSession, call_id: str, text: str | None, *, now: datetime
) -> str:
    """The recognised ``text`` into the ticket (None or blank: no speech, marked :data:`NO_SPEECH_TEXT`); returns
    the state it leaves (``transcribed`` / ``no_speech``). A message transcribed before keeps its text."""
    row = await session.scalar(select(VoiceMessage).where(VoiceMessage.call_id == call_id))
    if row is None:
        raise NotFound(f"留言 {call_id} 不存在", code="ticket.no_message")
    if row.transcription != PENDING:
        return row.transcription
    ticket = await session.get(Ticket, row.ticket_id)
    if ticket is None:
        raise NotFound(f"留言 {call_id} 的工单不存在", code="ticket.no_message")
    spoken = (text or "").strip()
    if spoken:
        tokens = repeats.tokenize(spoken)
        ticket.content, ticket.transcript = (
            _marked(ticket.caller_phone, spoken)[:CONTENT_MAX],
            spoken[:TRANSCRIPT_MAX],
        )
        ticket.content_tokens, ticket.token_norm = (
            " ".join(tokens),
            repeats.TokenBag.of(tokens).norm,
        )
    else:
        ticket.content = _marked(ticket.caller_phone, NO_SPEECH_TEXT)
    # the placeholder's embedding no longer says what the ticket is about: hot topics embed the text when they
    # read it, repeat detection compares its words (tickets.repeats)
    ticket.content_vector = None
    ticket.updated_at = now
    row.transcription, row.transcribed_at = (TRANSCRIBED if spoken else NO_SPEECH), now
    record_note(
        session,
        ticket_id=ticket.id,
        state=ticket.state,
        action="transcribe",
        actor=MESSAGE_ACTOR,
        at=now,
        note="" if spoken else TRANSCRIPTIONS[NO_SPEECH],
        payload={"no_speech": not spoken},
    )
    await session.commit()
    return row.transcription


async def message_of(session: AsyncSession, ticket_id: int) -> VoiceMessage | None:
    """The voice message a ticket was filed from (the console's ticket page)."""
    return await session.scalar(select(VoiceMessage).where(VoiceMessage.ticket_id == ticket_id))
