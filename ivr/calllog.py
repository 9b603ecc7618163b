"""The call log (通话记录): idempotent writes keyed by Uniqueid, and the close-out of calls that ended unseen.

Every write is an ``INSERT … ON CONFLICT (uniqueid) DO UPDATE`` where a NULL never overwrites a known value
and an end time, once written, stays: replaying the same call after a reconnect changes nothing, and
concurrent writers cannot create two rows for one call.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Table, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from ivr.models import CallRecord
from ivr.state import Call

# columns where a later write wins over an earlier one (the others keep their first known value)
_LATEST_WINS = ("outcome", "answered_by", "agent_interface", "agent_name", "leader_name", "recording",
                "bot_uuid", "menu")
_FIRST_WINS = ("linkedid", "started_at", "answered_at", "ended_at")
_TEXT_FIRST_WINS = ("channel", "caller_number", "dialled_number")  # "" counts as unknown


def _row(call: Call, now: datetime) -> dict[str, Any]:
    return {
        "uniqueid": call.uniqueid, "linkedid": call.linkedid, "channel": call.channel,
        "caller_number": call.caller_number, "dialled_number": call.dialled_number,
        "started_at": call.started_at, "answered_at": call.answered_at, "ended_at": call.ended_at,
        "queue_wait_s": round(call.queue_wait_s, 3), "outcome": call.outcome, "answered_by": call.answered_by,
        "agent_interface": call.agent_interface, "agent_name": call.agent_name, "leader_name": call.leader_name,
        "bot_uuid": call.bot_uuid, "redirected_to_bot": call.redirected_at is not None,
        "recording": call.recording, "menu": call.menu, "closed_by_resync": call.closed_by_resync,
        "updated_at": now,
    }


async def upsert_calls(session: AsyncSession, calls: Collection[Call], *, now: datetime | None = None) -> None:
    """Write calls in one transaction; safe to repeat with the same or newer facts."""
    if not calls:
        return
    now = now or datetime.now(UTC)
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = cast(Table, CallRecord.__table__)
    greatest = func.max if dialect == "sqlite" else func.greatest
    for call in calls:
        stmt = insert(table).values(**_row(call, now))
        new = stmt.excluded
        sets: dict[str, Any] = {c: func.coalesce(new[c], table.c[c]) for c in _LATEST_WINS}
        sets |= {c: func.coalesce(table.c[c], new[c]) for c in _FIRST_WINS}
        sets |= {c: func.coalesce(func.nullif(table.c[c], ""), new[c]) for c in _TEXT_FIRST_WINS}
        sets["closed_by_resync"] = case((table.c.ended_at.is_(None), new.closed_by_resync),
                                        else_=table.c.closed_by_resync)
        sets["redirected_to_bot"] = or_(table.c.redirected_to_bot, new.redirected_to_bot)
        sets["queue_wait_s"] = greatest(table.c.queue_wait_s, new.queue_wait_s)
        sets["updated_at"] = new.updated_at
        await session.execute(stmt.on_conflict_do_update(index_elements=["uniqueid"], set_=sets))
    await session.commit()


async def close_unseen(session: AsyncSession, live: Collection[str], now: datetime) -> list[str]:
    """End every open call of the log absent from ``live`` (the Uniqueids Asterisk has now): calls that
    ended while the controller was disconnected or down. Their outcome stays the best known one, or
    ``abandoned`` when nothing was known. Returns their Uniqueids."""
    query = select(CallRecord.uniqueid).where(CallRecord.ended_at.is_(None))
    open_ids = [u for u in (await session.scalars(query)).all() if u not in live]
    if open_ids:
        await session.execute(
            update(CallRecord).where(CallRecord.uniqueid.in_(open_ids), CallRecord.ended_at.is_(None)).values(
                ended_at=now, closed_by_resync=True, updated_at=now,
                outcome=func.coalesce(CallRecord.outcome, "abandoned"),
            )
        )
        await session.commit()
    return open_ids


async def link_ticket(session: AsyncSession, uniqueid: str, ticket_no: str) -> bool:
    """Attach a ticket number (工单号) to a call; False when the call is not in the log."""
    result = await session.execute(
        update(CallRecord).where(CallRecord.uniqueid == uniqueid).values(ticket_no=ticket_no)
    )
    await session.commit()
    return bool(cast(CursorResult[Any], result).rowcount)


async def get_call(session: AsyncSession, uniqueid: str) -> CallRecord | None:
    return await session.scalar(select(CallRecord).where(CallRecord.uniqueid == uniqueid))
