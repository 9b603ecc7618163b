"""The notification outbox: delivery, retries with a failing sender, channel routing, the periodic scan loop."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from tests.tickets.loop_support import AGENT, MONDAY_10AM
from tickets import outbox
from tickets.models import OutboxMessage
from tickets.outbox import ChannelSender, LogSender, Message, deliver_outbox, enqueue
from tickets.services import create_ticket
from tickets.warnings import run_warning_scans


class RaisingSender:
    """A sender whose gateway is down: every send raises."""

    def __init__(self) -> None:
        self.calls = 0

    async def send(self, message: Message) -> None:
        self.calls += 1
        raise ConnectionError("短信网关无响应")


class RecordingGateway:
    """An SMS and mail gateway that keeps what it was asked to send."""

    def __init__(self) -> None:
        self.sms: list[tuple[str, str]] = []
        self.mail: list[tuple[str, str, str]] = []

    async def send_sms(self, recipient: str, text: str) -> None:
        self.sms.append((recipient, text))

    async def send_mail(self, recipient: str, subject: str, body: str) -> None:
        self.mail.append((recipient, subject, body))


async def queue(session, n: int = 1, channel: str = outbox.SMS) -> None:
    for i in range(n):
        enqueue(session, channel=channel, recipient=f"收件人{i}", subject="黄牌预警", body=f"正文{i}", now=MONDAY_10AM)
    await session.commit()


async def stored(session) -> list[tuple[str, int, str | None]]:
    rows = await session.execute(select(OutboxMessage).order_by(OutboxMessage.id).execution_options(
        populate_existing=True))
    return [(m.status, m.attempts, m.last_error) for m in rows.scalars()]


async def test_failing_sender_keeps_the_message_pending_then_gives_up(session) -> None:
    await queue(session)
    sender = RaisingSender()
    report = await deliver_outbox(session, sender, now=MONDAY_10AM, max_attempts=3)
    assert report.to_json() == {"sent": 0, "retry": 1, "failed": 0}
    assert await stored(session) == [("pending", 1, "ConnectionError: 短信网关无响应")]
    await deliver_outbox(session, sender, now=MONDAY_10AM, max_attempts=3)
    report = await deliver_outbox(session, sender, now=MONDAY_10AM, max_attempts=3)
    assert report.to_json() == {"sent": 0, "retry": 0, "failed": 1}
    assert await stored(session) == [("failed", 3, "ConnectionError: 短信网关无响应")]
    assert (await deliver_outbox(session, LogSender(), now=MONDAY_10AM)).sent == 0  # failed ones are not retried
    assert sender.calls == 3


async def test_log_sender_marks_messages_sent_oldest_first_within_the_limit(session, caplog) -> None:
    await queue(session, 3)
    caplog.set_level("INFO", logger="tickets.outbox")
    report = await deliver_outbox(session, LogSender(), now=MONDAY_10AM, limit=2)
    assert report.sent == 2
    assert await stored(session) == [("sent", 1, None), ("sent", 1, None), ("pending", 0, None)]
    assert "收件人0" in caplog.text and "收件人2" not in caplog.text
    await deliver_outbox(session, LogSender(), now=MONDAY_10AM)
    rows = (await session.execute(select(OutboxMessage))).scalars().all()
    assert {m.status for m in rows} == {"sent"} and {m.sent_at for m in rows} == {MONDAY_10AM}


async def test_channel_sender_routes_sms_and_letters_to_their_gateways(session) -> None:
    await queue(session, 1, outbox.SMS)
    await queue(session, 1, outbox.EMAIL)
    gateway = RecordingGateway()
    await deliver_outbox(session, ChannelSender(sms=gateway, mail=gateway), now=MONDAY_10AM)
    assert gateway.sms == [("收件人0", "黄牌预警：正文0")]
    assert gateway.mail == [("收件人0", "黄牌预警", "正文0")]


async def test_periodic_scan_raises_warnings_and_delivers_until_stopped(db, draft, settings, catalogue) -> None:
    async with db() as session:
        await create_ticket(session, draft(), AGENT, now=MONDAY_10AM - timedelta(days=30))  # long overdue
    delivered = asyncio.Event()

    class SignallingSender:
        def __init__(self) -> None:
            self.messages: list[Message] = []

        async def send(self, message: Message) -> None:
            self.messages.append(message)
            delivered.set()

    sender, stop = SignallingSender(), asyncio.Event()
    task = asyncio.create_task(run_warning_scans(db, settings, stop, sender=sender, catalogue=catalogue))
    await asyncio.wait_for(delivered.wait(), timeout=30)
    stop.set()
    await asyncio.wait_for(task, timeout=30)
    assert {m.channel for m in sender.messages} == {"sms", "email"}  # red: a notice and a letter
