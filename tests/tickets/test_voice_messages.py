"""Voice messages (留言) as tickets: filed once per call whatever repeats, the SMS with the number when asked, the
recognised text (or 无语音) put into the ticket with an audit event."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.settings_support import SETTINGS
from tests.tickets.loop_support import MONDAY_10AM
from tickets.errors import InvalidInput
from tickets.models import OutboxMessage, Ticket, VoiceMessage
from tickets.services import (
    TicketDraft,
    create_ticket,
    due_for_callback,
    replay_ticket,
    ticket_events,
)
from tickets.voice_messages import (
    MESSAGE_ACTOR,
    NO_SPEECH_TEXT,
    PENDING_TEXT,
    UNKNOWN_CALLER_MARK,
    LeftMessage,
    file_message,
    pending_messages,
    record_transcript,
)

CALLER = "13812345678"
MESSAGE = LeftMessage("1741053600.7", f"1741053600.7-{CALLER}.wav", CALLER, "SILENCE")


async def count(session: AsyncSession, model: type) -> int:
    return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_message_is_one_ticket_whatever_repeats(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with db() as session:
        first = await file_message(session, MESSAGE, settings=SETTINGS, now=MONDAY_10AM, sms=False)
    for _ in range(2):  # the replayed event, then the AstDB copy found by a sweep
        async with db() as session:
            again = await file_message(
                session, MESSAGE, settings=SETTINGS, now=MONDAY_10AM, sms=False
            )
        assert (again.ticket_no, again.new) == (first.ticket_no, False)
    assert first.new
    async with db() as session:
        assert (await count(session, Ticket), await count(session, VoiceMessage)) == (1, 1)
        ticket = await session.scalar(select(Ticket))
        assert ticket is not None
        assert (
            ticket.channel,
            ticket.caller_phone,
            ticket.content,
            ticket.recording,
            ticket.call_id,
            ticket.state,
        ) == ("message", CALLER, PENDING_TEXT, MESSAGE.file, MESSAGE.call_id, "accepted")
        [created] = await ticket_events(session, ticket)
        assert (created.action, created.actor) == ("create", MESSAGE_ACTOR.name)
        assert await count(session, OutboxMessage) == 0  # no SMS unless configured


async def test_a_ticket_filed_before_its_record_is_reused(
    db: async_sessionmaker[AsyncSession],
) -> None:
    """An attempt that failed after creating the ticket, before its row: the next one takes that ticket."""
    async with db() as session:
        earlier = await create_ticket(
            session,
            TicketDraft(
                channel="message",
                caller_phone=CALLER,
                content=PENDING_TEXT,
                call_id=MESSAGE.call_id,
            ),
            MESSAGE_ACTOR,
            now=MONDAY_10AM,
            settings=SETTINGS,
        )
        filed = await file_message(session, MESSAGE, settings=SETTINGS, now=MONDAY_10AM, sms=False)
    assert (filed.ticket_no, filed.new) == (earlier.ticket_no, True)
    async with db() as session:
        assert (await count(session, Ticket), await count(session, VoiceMessage)) == (1, 1)


async def test_the_caller_gets_the_number_by_sms_when_configured(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with db() as session:
        filed = await file_message(session, MESSAGE, settings=SETTINGS, now=MONDAY_10AM, sms=True)
        await file_message(
            session, MESSAGE, settings=SETTINGS, now=MONDAY_10AM, sms=True
        )  # once only
        [sms] = (await session.scalars(select(OutboxMessage))).all()
    assert (sms.channel, sms.recipient, sms.status) == ("sms", CALLER, "pending")
    assert filed.ticket_no in sms.body


async def test_the_text_goes_into_the_ticket_with_an_audit_event(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with db() as session:
        filed = await file_message(session, MESSAGE, settings=SETTINGS, now=MONDAY_10AM, sms=False)
        [pending] = await pending_messages(session)
        assert (pending.call_id, pending.file, pending.ticket_no) == (
            MESSAGE.call_id,
            MESSAGE.file,
            filed.ticket_no,
        )
        said = "幸福小区门口的垃圾好几天没人清理了"
        assert (
            await record_transcript(session, MESSAGE.call_id, said, now=MONDAY_10AM)
            == "transcribed"
        )
        assert (
            await record_transcript(session, MESSAGE.call_id, "", now=MONDAY_10AM) == "transcribed"
        )  # kept
        assert await pending_messages(session) == []
    async with db() as session:
        ticket = await session.scalar(select(Ticket))
        assert ticket is not None and (ticket.content, ticket.transcript) == (said, said)
        assert "垃圾" in ticket.content_tokens.split()  # repeat detection sees the words
        events = await ticket_events(session, ticket)
        assert [e.action for e in events] == ["create", "transcribe"]
        assert events[1].payload == {"no_speech": False}
        assert (
            await replay_ticket(session, filed.ticket_no) is not None
        )  # the audit trail still replays


async def test_a_message_without_speech_stays_a_ticket_marked_no_speech(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with db() as session:
        await file_message(session, MESSAGE, settings=SETTINGS, now=MONDAY_10AM, sms=False)
        assert (
            await record_transcript(session, MESSAGE.call_id, None, now=MONDAY_10AM) == "no_speech"
        )
    async with db() as session:
        ticket = await session.scalar(select(Ticket))
        row = await session.scalar(select(VoiceMessage))
        assert ticket is not None and row is not None
        assert (ticket.content, ticket.transcript, ticket.state) == (
            NO_SPEECH_TEXT,
            None,
            "accepted",
        )
        assert row.transcription == "no_speech" and row.transcribed_at is not None
        assert (await ticket_events(session, ticket))[-1].note == "无语音"


async def test_a_message_from_a_withheld_number_is_a_ticket_without_one(
    db: async_sessionmaker[AsyncSession],
) -> None:
    """No number (withheld, anonymous, invalid): still a ticket, marked, never texted, never a same-caller repeat
    of another unknown caller, never called back for satisfaction."""
    raw_numbers = ("", "anonymous", "12")
    async with db() as session:
        for n, raw in enumerate(raw_numbers):
            message = LeftMessage(f"1741053601.{n}", f"1741053601.{n}-.wav", raw, "HANGUP")
            assert (
                await file_message(session, message, settings=SETTINGS, now=MONDAY_10AM, sms=True)
            ).new
        assert await count(session, OutboxMessage) == 0
        assert (
            await record_transcript(session, "1741053601.0", "路灯坏了", now=MONDAY_10AM)
            == "transcribed"
        )
        assert (
            await record_transcript(session, "1741053601.1", None, now=MONDAY_10AM) == "no_speech"
        )
    async with db() as session:
        rows = (await session.scalars(select(Ticket).order_by(Ticket.call_id))).all()
        assert [(t.caller_phone, t.content, t.is_repeat) for t in rows] == [
            ("", UNKNOWN_CALLER_MARK + "路灯坏了", False),
            ("", UNKNOWN_CALLER_MARK + NO_SPEECH_TEXT, False),
            ("", UNKNOWN_CALLER_MARK + PENDING_TEXT, False),
        ]
        assert {m.caller_phone for m in (await session.scalars(select(VoiceMessage))).all()} == {""}
        known = await file_message(session, MESSAGE, settings=SETTINGS, now=MONDAY_10AM, sms=False)
        for ticket in (await session.scalars(select(Ticket))).all():
            ticket.state = "verified"
        await session.commit()
        assert [
            t.ticket_no for t in await due_for_callback(session, MONDAY_10AM, settings=SETTINGS)
        ] == [known.ticket_no]


def test_other_channels_still_need_a_valid_number() -> None:
    for channel in ("phone", "bot", "web"):
        with pytest.raises(InvalidInput) as refused:
            TicketDraft(channel=channel, caller_phone="", content="路灯坏了")
        assert refused.value.code == "ticket.invalid_phone"
