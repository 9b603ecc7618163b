"""The notification outbox: delivery, retries and backoff, leases between concurrent deliverers, send timeouts,
message ids for gateways, log lines without message text, the periodic scan loop."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from config.settings import WarningSettings
from tests.tickets.loop_support import AGENT, MONDAY_10AM
from tickets import outbox
from tickets.models import OutboxMessage
from tickets.outbox import (
    ChannelSender,
    LogSender,
    Message,
    deliver_outbox,
    enqueue,
    masked_recipient,
)
from tickets.services import create_ticket
from tickets.warnings import run_warning_scans

WAIT = 30.0  # generous bound for what should happen promptly (PostgreSQL on a busy machine)
T = MONDAY_10AM
SECRET = "机密正文：幸福小区业主张某反映的问题"


class RaisingSender:
    """A sender whose gateway is down: every send raises (its error echoes the text, as gateways do)."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    async def send(self, message: Message) -> None:
        self.keys.append(message.key)
        raise ConnectionError(f"短信网关无响应：{message.body}")


class RecordingGateway:
    """An SMS and mail gateway that keeps what it was asked to send, with the message id."""

    def __init__(self) -> None:
        self.sms: list[tuple[str, str, str]] = []
        self.mail: list[tuple[str, str, str, str]] = []

    async def send_sms(self, recipient: str, text: str, *, message_id: str) -> None:
        self.sms.append((recipient, text, message_id))

    async def send_mail(self, recipient: str, subject: str, body: str, *, message_id: str) -> None:
        self.mail.append((recipient, subject, body, message_id))


class HangingSender:
    """A gateway that never answers the first ``hang`` sends (and sends the later ones)."""

    def __init__(self, hang: int = 1) -> None:
        self.hang = hang
        self.keys: list[str] = []
        self.hanging = asyncio.Event()

    async def send(self, message: Message) -> None:
        self.keys.append(message.key)
        if len(self.keys) <= self.hang:
            self.hanging.set()
            await asyncio.Event().wait()


class OverlapSender:
    """Holds the first send until a second one has begun: the deliverers certainly overlap."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.second = asyncio.Event()

    async def send(self, message: Message) -> None:
        self.sent.append(message.id)
        if len(self.sent) == 1:
            await self.second.wait()
        else:
            self.second.set()


def rules(**changes: float) -> WarningSettings:
    return WarningSettings(**changes)  # type: ignore[arg-type]


async def queue(
    session, n: int = 1, channel: str = outbox.SMS, recipient: str = "收件人", body: str = "正文"
) -> None:
    for i in range(n):
        enqueue(
            session,
            channel=channel,
            recipient=f"{recipient}{i}",
            subject="黄牌预警",
            body=f"{body}{i}",
            now=T,
        )
    await session.commit()


async def stored(session) -> list[tuple[str, int, str | None]]:
    rows = await session.execute(
        select(OutboxMessage).order_by(OutboxMessage.id).execution_options(populate_existing=True)
    )
    return [(m.status, m.attempts, m.last_error) for m in rows.scalars()]


async def keys(session) -> list[str]:
    return list(
        (
            await session.execute(select(OutboxMessage.message_key).order_by(OutboxMessage.id))
        ).scalars()
    )


async def test_failing_sender_is_retried_with_backoff_and_the_same_id_then_given_up(
    session,
) -> None:
    await queue(session)
    sender, policy = RaisingSender(), rules(outbox_max_attempts=3, outbox_retry_s=60)
    report = await deliver_outbox(session, sender, now=T, rules=policy)
    assert report.to_json() == {"sent": 0, "retry": 1, "failed": 0}
    assert await stored(session) == [("pending", 1, "ConnectionError: 短信网关无响应：正文0")]
    assert (
        await deliver_outbox(session, sender, now=T + timedelta(seconds=59), rules=policy)
    ).retry == 0  # not due
    assert (
        await deliver_outbox(session, sender, now=T + timedelta(seconds=60), rules=policy)
    ).retry == 1
    assert (
        await deliver_outbox(session, sender, now=T + timedelta(seconds=179), rules=policy)
    ).retry == 0  # 2 min
    report = await deliver_outbox(session, sender, now=T + timedelta(seconds=180), rules=policy)
    assert report.to_json() == {"sent": 0, "retry": 0, "failed": 1}
    assert await stored(session) == [("failed", 3, "ConnectionError: 短信网关无响应：正文0")]
    assert (
        await deliver_outbox(session, LogSender(), now=T + timedelta(days=1))
    ).sent == 0  # failed: not retried
    assert sender.keys == (await keys(session)) * 3


async def test_log_sender_marks_messages_sent_oldest_first_within_the_batch(
    session, caplog
) -> None:
    await queue(session, 3)
    caplog.set_level("INFO", logger="tickets.outbox")
    report = await deliver_outbox(session, LogSender(), now=T, rules=rules(outbox_batch=2))
    assert report.sent == 2
    assert await stored(session) == [("sent", 1, None), ("sent", 1, None), ("pending", 0, None)]
    first, _, third = await keys(session)
    assert first in caplog.text and third not in caplog.text
    await deliver_outbox(session, LogSender(), now=T)
    rows = (await session.execute(select(OutboxMessage))).scalars().all()
    assert {m.status for m in rows} == {"sent"} and {m.sent_at for m in rows} == {T}


async def test_channel_sender_routes_sms_and_letters_to_their_gateways_with_the_message_id(
    session,
) -> None:
    await queue(session, 1, outbox.SMS)
    await queue(session, 1, outbox.EMAIL)
    gateway = RecordingGateway()
    await deliver_outbox(session, ChannelSender(sms=gateway, mail=gateway), now=T)
    sms_key, mail_key = await keys(session)
    assert gateway.sms == [("收件人0", "黄牌预警：正文0", sms_key)]
    assert gateway.mail == [("收件人0", "黄牌预警", "正文0", mail_key)]


async def test_two_deliverers_at_once_send_each_message_exactly_once(db) -> None:
    async with db() as session:
        await queue(session, 4)
    sender = OverlapSender()
    async with db() as one, db() as two, asyncio.timeout(WAIT):
        reports = await asyncio.gather(
            deliver_outbox(one, sender, now=T), deliver_outbox(two, sender, now=T)
        )
    assert sorted(sender.sent) == [1, 2, 3, 4]  # none twice, none left
    assert all(r.sent >= 1 for r in reports) and sum(r.sent for r in reports) == 4
    async with db() as session:
        assert await stored(session) == [("sent", 1, None)] * 4


async def test_a_hanging_sender_is_timed_out_and_the_message_retried_later_with_the_same_id(
    session,
) -> None:
    await queue(session)
    sender, policy = HangingSender(), rules(outbox_send_timeout_s=0.2, outbox_retry_s=60)
    async with asyncio.timeout(WAIT):
        report = await deliver_outbox(session, sender, now=T, rules=policy)
    assert report.to_json() == {"sent": 0, "retry": 1, "failed": 0}
    assert await stored(session) == [("pending", 1, "TimeoutError: 发送超过 0.2 秒未完成")]
    assert (
        await deliver_outbox(session, sender, now=T + timedelta(seconds=60), rules=policy)
    ).sent == 1
    assert await stored(session) == [
        ("sent", 2, "TimeoutError: 发送超过 0.2 秒未完成")
    ]  # the last fault is kept
    assert sender.keys == (await keys(session)) * 2


async def test_a_deliverer_that_dies_mid_send_holds_the_message_until_its_lease_runs_out(
    db,
) -> None:
    async with db() as session:
        await queue(session)
    base = datetime(2025, 3, 3, 2, 0, tzinfo=UTC)
    policy = rules(outbox_send_timeout_s=30)  # lease: 60 s
    dying = HangingSender()
    async with db() as one:
        task = asyncio.create_task(
            deliver_outbox(one, dying, now=T, rules=policy, clock=lambda: base)
        )
        async with asyncio.timeout(WAIT):
            await dying.hanging.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    gateway = RecordingGateway()
    async with db() as two:
        held = await deliver_outbox(
            two,
            ChannelSender(sms=gateway),
            now=T,
            rules=policy,
            clock=lambda: base + timedelta(seconds=59),
        )
        assert held.sent == 0 and gateway.sms == []
        freed = await deliver_outbox(
            two,
            ChannelSender(sms=gateway),
            now=T,
            rules=policy,
            clock=lambda: base + timedelta(seconds=61),
        )
        assert freed.sent == 1
        assert [k for *_, k in gateway.sms] == dying.keys == await keys(two)
        assert await stored(two) == [("sent", 2, None)]


async def test_log_lines_name_messages_without_their_text_or_full_recipient(
    session, caplog
) -> None:
    caplog.set_level("DEBUG", logger="tickets.outbox")
    enqueue(
        session,
        channel=outbox.SMS,
        recipient="13812345678",
        subject="红牌预警 12345-20250303-00001",
        body=SECRET,
        now=T,
    )
    enqueue(
        session,
        channel=outbox.EMAIL,
        recipient="区住房和城乡建设局 王联络（物业科科长）",
        subject="督办函",
        body=SECRET,
        now=T,
    )
    await session.commit()
    await deliver_outbox(session, RaisingSender(), now=T, rules=rules(outbox_max_attempts=2))
    await deliver_outbox(
        session, RaisingSender(), now=T + timedelta(minutes=1), rules=rules(outbox_max_attempts=2)
    )
    await deliver_outbox(session, LogSender(), now=T + timedelta(minutes=1))  # nothing left to send
    enqueue(
        session,
        channel=outbox.SMS,
        recipient="ops@hotline.gov.cn",
        subject="黄牌预警",
        body=SECRET,
        now=T,
    )
    await session.commit()
    await deliver_outbox(session, LogSender(), now=T)
    text = caplog.text
    assert "138****5678" in text and "o***@hotline.gov.cn" in text and "区住房和城乡***" in text
    for private in (SECRET, "红牌预警", "督办函", "13812345678", "王联络", "ops@"):
        assert private not in text
    assert all(f"#{n} " in text for n in (1, 2, 3))


def test_recipients_are_masked_for_log_lines() -> None:
    assert masked_recipient("13812345678") == "138****5678"
    assert masked_recipient("leader@example.gov.cn") == "l***@example.gov.cn"
    assert masked_recipient("收件人0") == "收***"


async def test_periodic_scan_raises_warnings_and_delivers_until_stopped(
    db, draft, settings, catalogue
) -> None:
    async with db() as session:
        await create_ticket(
            session, draft(), AGENT, now=MONDAY_10AM - timedelta(days=30), settings=settings
        )  # long overdue
    delivered = asyncio.Event()

    class SignallingSender:
        def __init__(self) -> None:
            self.messages: list[Message] = []

        async def send(self, message: Message) -> None:
            self.messages.append(message)
            delivered.set()

    sender, stop = SignallingSender(), asyncio.Event()
    task = asyncio.create_task(
        run_warning_scans(db, settings, stop, sender=sender, catalogue=catalogue)
    )
    await asyncio.wait_for(delivered.wait(), timeout=30)
    stop.set()
    await asyncio.wait_for(task, timeout=30)
    assert {m.channel for m in sender.messages} == {"sms", "email"}  # red: a notice and a letter
