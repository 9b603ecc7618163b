"""Self-service intake (市民自助提交: website, WeChat, grid app): a submission is filed once, whatever the retries.

A retry is recognised only among the tickets of the submission's own phone number, so a key or a text that
someone else used never returns another caller's ticket:

- the same ``Idempotency-Key`` within :data:`IDEMPOTENCY_TTL` (its SHA-256 is kept in the ticket's creation
  event, so it lives as long as the ticket's audit trail);
- the same channel, content and address within :data:`REPLAY_WINDOW`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from tickets.errors import InvalidInput
from tickets.models import Ticket, TicketEvent
from tickets.schemas import Actor, TicketDraft
from tickets.services import create_ticket

IDEMPOTENCY_TTL = timedelta(hours=24)
REPLAY_WINDOW = timedelta(
    minutes=10
)  # an identical submission within this time is the same request
KEY_MAX = 128


@dataclass(frozen=True)
class Submission:
    """The ticket a submission was filed as; ``duplicate``: filed earlier, this was a retry."""

    ticket_no: str
    duplicate: bool


def submission_key(key: str) -> str:
    """The stored form of an idempotency key (SHA-256, hex); InvalidInput past :data:`KEY_MAX` characters."""
    if len(key) > KEY_MAX:
        raise InvalidInput(
            f"Idempotency-Key 过长（最多 {KEY_MAX} 个字符）",
            code="ticket.key_too_long",
            field="Idempotency-Key",
        )
    return hashlib.sha256(key.encode()).hexdigest()


async def file_submission(
    session: AsyncSession,
    draft: TicketDraft,
    actor: Actor,
    *,
    key: str | None,
    now: datetime,
    settings: Settings,
) -> Submission:
    """The ticket of this submission: an earlier one of the same phone (same key, or same content lately), or
    a new one (:func:`tickets.services.create_ticket`) remembering the key."""
    digest = submission_key(key) if key else None
    earlier = (
        await _filed_with_key(session, draft.caller_phone, digest, now) if digest else None
    ) or await _filed_lately(session, draft, now)
    if earlier is not None:
        return Submission(earlier, duplicate=True)
    ticket = await create_ticket(
        session, draft, actor, now=now, settings=settings, submission_key=digest
    )
    return Submission(ticket.ticket_no, duplicate=False)


async def _filed_with_key(
    session: AsyncSession, phone: str, digest: str, now: datetime
) -> str | None:
    t, e = Ticket, TicketEvent
    return await session.scalar(
        select(t.ticket_no)
        .join(e, e.ticket_id == t.id)
        .where(
            t.caller_phone == phone,
            t.created_at >= now - IDEMPOTENCY_TTL,
            e.action == "create",
            e.payload["submission_key"].as_string() == digest,
        )
        .order_by(t.created_at)
        .limit(1)
    )


async def _filed_lately(session: AsyncSession, draft: TicketDraft, now: datetime) -> str | None:
    t = Ticket
    return await session.scalar(
        select(t.ticket_no)
        .where(
            t.caller_phone == draft.caller_phone,
            t.created_at >= now - REPLAY_WINDOW,
            t.channel == draft.channel,
            t.content == draft.content,
            t.address.is_not_distinct_from(draft.address),
        )
        .order_by(t.created_at.desc())
        .limit(1)
    )
