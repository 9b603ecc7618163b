"""The blocklist of nuisance callers (恶意骚扰来电): add, lift, look up, list, and the candidates to consider.

A number is blocked from ``created_at`` until ``expires_at`` (none: permanent) unless lifted; an expired entry
simply no longer blocks. Numbers are stored normalised (:func:`tickets.phone.normalise_phone`) and looked up
exactly, so ``+86 138-1234-5678`` and ``13812345678`` are one number. Every change is one transaction with an
immutable audit event (:class:`ivr.models.BlockedCallerEvent`: who, role, when, what, why).

Candidates (the repeat detection suggests, people decide): a number not blocked now with at least
``candidate_min_calls`` inbound calls in the last ``candidate_window_hours`` (the call log; call-backs and
already refused calls not counted), or at least ``candidate_min_withdrawn`` tickets withdrawn (撤销 — how an
invalid or abusive request is closed) among those filed in the last ``candidate_window_days``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from config.errors import CodedError
from config.settings import BlocklistSettings
from ivr.ami import has_control_characters
from ivr.models import BLOCK_REASON_MAX, BlockedCaller, BlockedCallerEvent, CallRecord
from tickets.errors import InvalidInput
from tickets.phone import normalise_phone, phone_or_unknown
from tickets.queries import withdrawn_by_caller

NOT_COUNTED_OUTCOMES = (
    "callback",
    "blocked",
)  # outbound call-backs and calls the blocklist refused
SYSTEM_ACTOR = "system"


class BlocklistError(CodedError):
    """A blocklist change refused; nothing was written."""

    code = "blocklist.invalid"


class InvalidBlock(BlocklistError):
    code = "blocklist.invalid_input"


class AlreadyBlocked(BlocklistError):
    code = "blocklist.duplicate"


class BlockNotFound(BlocklistError):
    code = "blocklist.not_found"


class AlreadyLifted(BlocklistError):
    code = "blocklist.already_lifted"


@dataclass(frozen=True)
class Candidate:
    """A number the repeat detection suggests blocking, with the counts that made it one."""

    phone: str
    calls: int  # inbound calls within the calls window
    withdrawn: int  # tickets withdrawn (撤销) within the tickets window


def _active(now: datetime) -> ColumnElement[bool]:
    return and_(
        BlockedCaller.lifted_at.is_(None),
        or_(BlockedCaller.expires_at.is_(None), BlockedCaller.expires_at > now),
    )


def _phone(raw: str) -> str:
    try:
        return normalise_phone(raw)
    except InvalidInput as exc:
        raise InvalidBlock(exc.message) from None


def _reason(raw: str) -> str:
    reason = raw.strip()
    if not reason:
        raise InvalidBlock("请填写加入黑名单的原因")
    if len(reason) > BLOCK_REASON_MAX:
        raise InvalidBlock(f"原因太长：最多 {BLOCK_REASON_MAX} 个字")
    if has_control_characters(reason):
        raise InvalidBlock("原因含有控制字符")
    return reason


def _audit(
    session: AsyncSession,
    block: BlockedCaller,
    action: str,
    *,
    at: datetime,
    actor: str,
    role: str,
    note: str = "",
    payload: dict[str, Any] | None = None,
) -> None:
    session.add(
        BlockedCallerEvent(
            blocked_id=block.id,
            at=at,
            actor=actor,
            role=role,
            action=action,
            note=note,
            payload=payload or {},
        )
    )


async def is_blocked(session: AsyncSession, raw_phone: str, at: datetime) -> bool:
    """Whether calls from ``raw_phone`` are refused at ``at``; a withheld or invalid number never is."""
    phone = phone_or_unknown(raw_phone)
    if not phone:
        return False
    found = await session.scalar(
        select(BlockedCaller.id).where(BlockedCaller.phone == phone, _active(at)).limit(1)
    )
    return found is not None


async def add_block(
    session: AsyncSession,
    raw_phone: str,
    reason: str,
    *,
    expires_at: datetime | None,
    actor: str,
    role: str,
    now: datetime,
) -> BlockedCaller:
    """Block ``raw_phone`` until ``expires_at`` (None: permanent). A number blocked now is refused
    (``blocklist.duplicate``); an earlier entry that has expired is closed first (audit ``expire``)."""
    phone, why = _phone(raw_phone), _reason(reason)
    if expires_at is not None and expires_at <= now:
        raise InvalidBlock("到期时间必须晚于现在")
    earlier = await session.scalar(
        select(BlockedCaller).where(BlockedCaller.phone == phone, BlockedCaller.lifted_at.is_(None))
    )
    if earlier is not None:
        if earlier.expires_at is None or earlier.expires_at > now:
            raise AlreadyBlocked("该号码已在黑名单中")
        earlier.lifted_at, earlier.lifted_by = earlier.expires_at, SYSTEM_ACTOR
        _audit(session, earlier, "expire", at=now, actor=SYSTEM_ACTOR, role=SYSTEM_ACTOR)
        await session.flush()  # the partial unique index allows one entry not lifted per number
    block = BlockedCaller(
        phone=phone, reason=why, expires_at=expires_at, created_by=actor, created_at=now
    )
    session.add(block)
    await session.flush()
    _audit(
        session,
        block,
        "add",
        at=now,
        actor=actor,
        role=role,
        note=why,
        payload={"expires_at": expires_at.isoformat() if expires_at else None},
    )
    await session.commit()
    return block


async def lift_block(
    session: AsyncSession, block_id: int, *, actor: str, role: str, note: str = "", now: datetime
) -> BlockedCaller:
    """Lift an entry (解除): its number's calls go through again."""
    why = note.strip()
    if len(why) > BLOCK_REASON_MAX or has_control_characters(why):
        raise InvalidBlock(f"解除说明最多 {BLOCK_REASON_MAX} 个字，且不能含控制字符")
    block = await session.get(BlockedCaller, block_id)
    if block is None:
        raise BlockNotFound("黑名单中没有该记录")
    if block.lifted_at is not None:
        raise AlreadyLifted("该记录已解除")
    block.lifted_at, block.lifted_by = now, actor
    _audit(session, block, "lift", at=now, actor=actor, role=role, note=why)
    await session.commit()
    return block


async def list_blocks(
    session: AsyncSession, *, now: datetime, include_inactive: bool = False, limit: int = 500
) -> list[BlockedCaller]:
    """The entries blocking now (or all, newest first, with ``include_inactive``)."""
    stmt = select(BlockedCaller).order_by(BlockedCaller.created_at.desc(), BlockedCaller.id.desc())
    if not include_inactive:
        stmt = stmt.where(_active(now))
    return list(await session.scalars(stmt.limit(limit)))


async def block_events(session: AsyncSession, block_id: int) -> list[BlockedCallerEvent]:
    """The audit trail of one entry, oldest first."""
    return list(
        await session.scalars(
            select(BlockedCallerEvent)
            .where(BlockedCallerEvent.blocked_id == block_id)
            .order_by(BlockedCallerEvent.id)
        )
    )


async def _calls_by_caller(
    session: AsyncSession, since: datetime, min_calls: int
) -> dict[str, int]:
    """Normalised number → inbound calls since ``since``, for the numbers the carrier sent in one spelling at
    least ``min_calls`` times (the threshold is applied per spelling, in the database)."""
    count = func.count(CallRecord.id)
    rows = await session.execute(
        select(CallRecord.caller_number, count)
        .where(
            CallRecord.started_at >= since,
            CallRecord.caller_number != "",
            or_(CallRecord.outcome.is_(None), CallRecord.outcome.not_in(NOT_COUNTED_OUTCOMES)),
        )
        .group_by(CallRecord.caller_number)
        .having(count >= min_calls)
    )
    calls: dict[str, int] = {}
    for raw, n in rows.all():
        if phone := phone_or_unknown(raw):
            calls[phone] = calls.get(phone, 0) + int(n)
    return calls


async def candidates(
    session: AsyncSession, rule: BlocklistSettings, *, now: datetime
) -> list[Candidate]:
    """The numbers the rule (module docstring) suggests, not blocked now; most calls first."""
    calls = await _calls_by_caller(
        session, now - timedelta(hours=rule.candidate_window_hours), rule.candidate_min_calls
    )
    withdrawn = await withdrawn_by_caller(
        session, now - timedelta(days=rule.candidate_window_days), rule.candidate_min_withdrawn
    )
    phones = set(calls) | set(withdrawn)
    if not phones:
        return []
    blocked = set(
        await session.scalars(
            select(BlockedCaller.phone).where(BlockedCaller.phone.in_(phones), _active(now))
        )
    )
    found = [
        Candidate(phone, calls.get(phone, 0), withdrawn.get(phone, 0)) for phone in phones - blocked
    ]
    return sorted(found, key=lambda c: (-c.calls, -c.withdrawn, c.phone))
