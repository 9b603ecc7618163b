"""The notification outbox: warnings and letters are queued in the database, then handed to a sender.

Queuing is part of the transaction that raised the warning, so a notice is never lost nor sent for a warning
that was rolled back. :func:`deliver_outbox` drains pending messages oldest first, committing after each one:
a sender that raises leaves its message pending with ``attempts`` + 1 and the error text, and after
``settings.warnings.outbox_max_attempts`` failures the message is marked ``failed``.

Senders implement :class:`Sender`. The shipped default, :class:`LogSender`, writes each message to the log
(the console shows the outbox); a centre that has an SMS gateway or a mail server plugs them in through
:class:`SmsGateway` / :class:`MailGateway` and :class:`ChannelSender`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tickets import models as m
from tickets.models import OutboxMessage

_log = logging.getLogger(__name__)

SMS = "sms"  # short notice to the responsible person (承办人)
EMAIL = "email"  # letter (督办函) to the responsible leader
PENDING, SENT, FAILED = "pending", "sent", "failed"


@dataclass(frozen=True)
class Message:
    """What a sender gets: a detached copy of one outbox row."""

    id: int
    channel: str
    recipient: str
    subject: str
    body: str
    ticket_id: int | None


class Sender(Protocol):
    """Delivers one message or raises; the outbox records the outcome."""

    async def send(self, message: Message) -> None: ...


class SmsGateway(Protocol):
    """An SMS gateway of the centre (短信平台)."""

    async def send_sms(self, recipient: str, text: str) -> None: ...


class MailGateway(Protocol):
    """A mail server or the government office-automation system (公文系统)."""

    async def send_mail(self, recipient: str, subject: str, body: str) -> None: ...


class LogSender:
    """The default sender: logs the message; the outbox then marks it sent."""

    async def send(self, message: Message) -> None:
        _log.info("通知 #%d [%s] → %s：%s\n%s", message.id, message.channel, message.recipient, message.subject,
                  message.body)


class ChannelSender:
    """Routes SMS notices to ``sms`` and letters to ``mail``; a channel without a gateway goes to ``fallback``."""

    def __init__(self, *, sms: SmsGateway | None = None, mail: MailGateway | None = None,
                 fallback: Sender | None = None) -> None:
        self._sms, self._mail, self._fallback = sms, mail, fallback or LogSender()

    async def send(self, message: Message) -> None:
        if message.channel == SMS and self._sms is not None:
            await self._sms.send_sms(message.recipient, f"{message.subject}：{message.body}")
        elif message.channel == EMAIL and self._mail is not None:
            await self._mail.send_mail(message.recipient, message.subject, message.body)
        else:
            await self._fallback.send(message)


def enqueue(session: AsyncSession, *, channel: str, recipient: str, subject: str, body: str, now: datetime,
            ticket_id: int | None = None, warning_id: int | None = None) -> OutboxMessage:
    """Queue a message inside the caller's transaction (the caller commits)."""
    row = OutboxMessage(created_at=now, channel=channel, recipient=recipient[: m.RECIPIENT_MAX],
                        subject=subject[: m.SUBJECT_MAX], body=body, ticket_id=ticket_id, warning_id=warning_id,
                        status=PENDING, attempts=0)
    session.add(row)
    return row


@dataclass(frozen=True)
class DeliveryReport:
    sent: int
    retry: int  # failed this time, still pending
    failed: int  # failed for good this time

    def to_json(self) -> dict[str, int]:
        return {"sent": self.sent, "retry": self.retry, "failed": self.failed}


async def deliver_outbox(session: AsyncSession, sender: Sender, *, now: datetime, max_attempts: int = 5,
                         limit: int = 100) -> DeliveryReport:
    """Send up to ``limit`` pending messages, oldest first, committing the outcome of each one.

    Each message is locked while it is sent (FOR UPDATE SKIP LOCKED on PostgreSQL), so two workers never
    send the same message.
    """
    sent = retry = failed = 0
    last_id = 0
    for _ in range(limit):
        stmt = (select(OutboxMessage).where(OutboxMessage.status == PENDING, OutboxMessage.id > last_id)
                .order_by(OutboxMessage.id).limit(1).with_for_update(skip_locked=True))
        row = (await session.execute(stmt)).scalar_one_or_none()
        if row is None:
            break
        last_id = row.id
        message = Message(row.id, row.channel, row.recipient, row.subject, row.body, row.ticket_id)
        row.attempts += 1
        try:
            await sender.send(message)
        except Exception as exc:  # any sender fault is recorded on the message and retried
            row.last_error = f"{type(exc).__name__}: {exc}"[: m.ERROR_MAX]
            if row.attempts >= max_attempts:
                row.status = FAILED
                failed += 1
                _log.error("通知 #%d 发送失败 %d 次，不再重试：%s", row.id, row.attempts, row.last_error)
            else:
                retry += 1
                _log.warning("通知 #%d 发送失败（第 %d 次），稍后重试：%s", row.id, row.attempts, row.last_error)
        else:
            row.status, row.sent_at = SENT, now
            sent += 1
        await session.commit()
    await session.commit()  # ends the read transaction when there was nothing to send
    return DeliveryReport(sent, retry, failed)
