"""The notification outbox: warnings and letters are queued in the database, then handed to a sender.

Queuing is part of the transaction that raised the warning, so a notice is never lost nor sent for a warning
that was rolled back. :func:`deliver_outbox` drains due messages oldest first, on SQLite and PostgreSQL alike and
with any number of deliverers at once, each message in three steps:

1. **claim** — one short committed transaction leases the message to this deliverer (``lease_owner``,
   ``lease_until``) with an UPDATE that matches only a pending message nobody holds: atomic on both databases,
   so exactly one deliverer wins it;
2. **send** — outside any transaction, bounded by ``warnings.outbox_send_timeout_s``; the sender gets the
   message's stable key (:attr:`Message.key`, the same on every attempt) for the gateway to drop a repeat;
3. **settle** — a second short transaction marks it ``sent``; a failure releases the lease and schedules a retry
   ``warnings.outbox_retry_s`` later (doubling per failure), and after ``warnings.outbox_max_attempts``
   attempts the message is ``failed``.

A deliverer that dies while sending leaves a lease that expires, and the message is then sent again with the
same key. Log lines name a message by id, key, channel and masked recipient, never by its text.

Senders implement :class:`Sender`. The shipped default, :class:`LogSender`, only logs that a message was
handed over (the text stays in the database); a centre that has an SMS gateway or a mail server plugs them in
through :class:`SmsGateway` / :class:`MailGateway` and :class:`ChannelSender`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from config.pii import mask_phone
from config.settings import WarningSettings
from tickets import models as m
from tickets.models import OutboxMessage

_log = logging.getLogger(__name__)

SMS = "sms"  # short notice to the responsible person (承办人)
EMAIL = "email"  # letter (督办函) to the responsible leader
PENDING, SENT, FAILED = "pending", "sent", "failed"
LEASE_TIMEOUTS = 2  # a lease lasts this many send timeouts: the send plus the commits around it
RETRY_MAX = timedelta(hours=1)

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Message:
    """What a sender gets: a detached copy of one outbox row and the number of this attempt."""

    id: int
    key: str  # the message id for the gateway: the same on every attempt
    channel: str
    recipient: str
    subject: str
    body: str
    ticket_id: int | None
    attempt: int = 1


class Sender(Protocol):
    """Delivers one message or raises; the outbox records the outcome."""

    async def send(self, message: Message) -> None: ...


class SmsGateway(Protocol):
    """An SMS gateway of the centre (短信平台); ``message_id`` repeats on a retry of the same message."""

    async def send_sms(self, recipient: str, text: str, *, message_id: str) -> None: ...


class MailGateway(Protocol):
    """A mail server or the government office-automation system (公文系统); ``message_id`` as for SMS."""

    async def send_mail(
        self, recipient: str, subject: str, body: str, *, message_id: str
    ) -> None: ...


def masked_recipient(recipient: str) -> str:
    """A recipient as log lines show it: a phone number masked, a mailbox or a name cut to its beginning."""
    local, at, domain = recipient.rpartition("@")
    if at:
        return f"{local[:1]}***@{domain}"
    masked = mask_phone(recipient)
    if masked != recipient:
        return masked
    return recipient[: max(1, len(recipient) // 3)] + "***"


def describe(message: Message) -> str:
    """``#id key [channel → masked recipient]``: how log lines name a message."""
    return (
        f"#{message.id} {message.key} [{message.channel} → {masked_recipient(message.recipient)}]"
    )


class LogSender:
    """The default sender: logs that the message was handed over (not its text); the outbox marks it sent."""

    async def send(self, message: Message) -> None:
        _log.info("通知 %s 已交付（默认发送方式：仅记录，正文见通知库）", describe(message))


class ChannelSender:
    """Routes SMS notices to ``sms`` and letters to ``mail``; a channel without a gateway goes to ``fallback``."""

    def __init__(
        self,
        *,
        sms: SmsGateway | None = None,
        mail: MailGateway | None = None,
        fallback: Sender | None = None,
    ) -> None:
        self._sms, self._mail, self._fallback = sms, mail, fallback or LogSender()

    async def send(self, message: Message) -> None:
        if message.channel == SMS and self._sms is not None:
            await self._sms.send_sms(
                message.recipient, f"{message.subject}：{message.body}", message_id=message.key
            )
        elif message.channel == EMAIL and self._mail is not None:
            await self._mail.send_mail(
                message.recipient, message.subject, message.body, message_id=message.key
            )
        else:
            await self._fallback.send(message)


def enqueue(
    session: AsyncSession,
    *,
    channel: str,
    recipient: str,
    subject: str,
    body: str,
    now: datetime,
    ticket_id: int | None = None,
    warning_id: int | None = None,
) -> OutboxMessage:
    """Queue a message inside the caller's transaction (the caller commits)."""
    row = OutboxMessage(
        created_at=now,
        channel=channel,
        recipient=recipient[: m.RECIPIENT_MAX],
        subject=subject[: m.SUBJECT_MAX],
        body=body,
        ticket_id=ticket_id,
        warning_id=warning_id,
        status=PENDING,
        attempts=0,
        message_key=str(uuid.uuid4()),
    )
    session.add(row)
    return row


@dataclass(frozen=True)
class DeliveryReport:
    sent: int
    retry: int  # failed this time, still pending
    failed: int  # failed for good this time

    def to_json(self) -> dict[str, int]:
        return {"sent": self.sent, "retry": self.retry, "failed": self.failed}


def _utc_now() -> datetime:
    return datetime.now(UTC)


def deliverer_name() -> str:
    """This deliverer's lease owner: host, process and a random part (two rounds never share one)."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


async def deliver_outbox(
    session: AsyncSession,
    sender: Sender,
    *,
    now: datetime,
    rules: WarningSettings | None = None,
    clock: Clock = _utc_now,
) -> DeliveryReport:
    """Send up to ``rules.outbox_batch`` due messages, oldest first: claim, send, settle (module docstring).

    ``now`` is the round's time (due retries, ``sent_at``, the next retry); leases run on ``clock``, read
    afresh for every claim, because a round with slow gateways can last long.
    """
    rules = rules or WarningSettings()
    owner = deliverer_name()
    outcomes: Counter[str] = Counter()
    for message in await _due(session, now, clock(), rules.outbox_batch):
        if not await _claim(session, message, owner, clock(), rules):
            continue  # another deliverer has it, or has just settled it
        error = await _attempt(sender, message, rules.outbox_send_timeout_s)
        outcomes[await _settle(session, message, owner, error, now, rules)] += 1
    return DeliveryReport(outcomes[SENT], outcomes[PENDING], outcomes[FAILED])


async def _due(
    session: AsyncSession, now: datetime, lease_now: datetime, limit: int
) -> list[Message]:
    """Pending messages due now and held by nobody, as their next attempt; ends the read transaction."""
    o = OutboxMessage
    stmt = (
        select(
            o.id, o.message_key, o.channel, o.recipient, o.subject, o.body, o.ticket_id, o.attempts
        )
        .where(
            o.status == PENDING,
            or_(o.next_attempt_at.is_(None), o.next_attempt_at <= now),
            or_(o.lease_until.is_(None), o.lease_until < lease_now),
        )
        .order_by(o.id)
        .limit(limit)
    )
    rows = (await session.execute(stmt)).all()
    await session.commit()
    return [Message(*row[:-1], attempt=row.attempts + 1) for row in rows]


async def _claim(
    session: AsyncSession, message: Message, owner: str, lease_now: datetime, rules: WarningSettings
) -> bool:
    """Lease ``message`` and count the attempt, in one committed UPDATE; False if someone else was first.

    The attempt count in the WHERE clause also refuses a message another deliverer tried since it was read
    (its retry is not yet due)."""
    o = OutboxMessage
    lease = timedelta(seconds=rules.outbox_send_timeout_s * LEASE_TIMEOUTS)
    stmt = (
        update(o)
        .where(
            o.id == message.id,
            o.status == PENDING,
            o.attempts == message.attempt - 1,
            or_(o.lease_until.is_(None), o.lease_until < lease_now),
        )
        .values(lease_owner=owner, lease_until=lease_now + lease, attempts=o.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    result = await session.execute(stmt)
    await session.commit()
    return _rowcount(result) == 1


async def _attempt(sender: Sender, message: Message, timeout_s: float) -> BaseException | None:
    """Hand ``message`` to the sender within ``timeout_s``; the fault if it raised or took longer."""
    try:
        async with asyncio.timeout(timeout_s):
            await sender.send(message)
    except Exception as exc:  # any sender fault is recorded on the message and retried
        return exc
    return None


async def _settle(
    session: AsyncSession,
    message: Message,
    owner: str,
    error: BaseException | None,
    now: datetime,
    rules: WarningSettings,
) -> str:
    """Record the attempt's outcome in a second short transaction; returns the message's new status."""
    o = OutboxMessage
    released = {"lease_owner": None, "lease_until": None}
    if error is None:  # sent is a fact, whoever holds the lease by now
        status, retry_at = SENT, None
        stmt = (
            update(o)
            .where(o.id == message.id, o.status == PENDING)
            .values(status=SENT, sent_at=now, next_attempt_at=None, **released)
        )
    else:
        status = FAILED if message.attempt >= rules.outbox_max_attempts else PENDING
        backoff = min(
            timedelta(seconds=rules.outbox_retry_s) * 2 ** (message.attempt - 1), RETRY_MAX
        )
        retry_at = now + backoff if status == PENDING else None
        stmt = (
            update(o)
            .where(o.id == message.id, o.status == PENDING, o.lease_owner == owner)
            .values(
                status=status,
                last_error=_error_text(error, rules)[: m.ERROR_MAX],
                next_attempt_at=retry_at,
                **released,
            )
        )
    result = await session.execute(stmt.execution_options(synchronize_session=False))
    await session.commit()
    fault = type(error).__name__
    if _rowcount(result) != 1:
        _log.warning(
            "通知 %s：结果未记录，租约已过期并由其他发送者接手（网关可按消息编号去重）",
            describe(message),
        )
    elif status == FAILED:
        _log.error(
            "通知 %s 发送失败 %d 次（%s），不再重试", describe(message), message.attempt, fault
        )
    elif retry_at is not None:
        _log.warning(
            "通知 %s 第 %d 次发送失败（%s），%s 后重试",
            describe(message),
            message.attempt,
            fault,
            retry_at.isoformat(),
        )
    return status


def _error_text(error: BaseException, rules: WarningSettings) -> str:
    if isinstance(error, TimeoutError) and not str(error):
        return f"TimeoutError: 发送超过 {rules.outbox_send_timeout_s:g} 秒未完成"
    return f"{type(error).__name__}: {error}"


def _rowcount(result: object) -> int:
    assert isinstance(result, CursorResult)
    return result.rowcount
