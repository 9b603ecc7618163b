"""Ticket numbers (工单编号) ``12345-YYYYMMDD-NNNNN``, a sequence per local day.

The day's counter row is bumped by one atomic upsert inside the creating transaction: on PostgreSQL the row
lock, on SQLite the database write lock, serialise concurrent creators, and a rolled-back creation returns its
number. Run it as the transaction's first write so that SQLite never has to upgrade a stale read snapshot.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from tickets.models import TicketCounter

PREFIX = "12345"
SEQUENCE_DIGITS = 5


def format_ticket_no(day: str, seq: int) -> str:
    return f"{PREFIX}-{day}-{seq:0{SEQUENCE_DIGITS}d}"


async def next_ticket_no(session: AsyncSession, now: datetime, tz: ZoneInfo) -> str:
    """The next number of the local day of ``now`` (within the session's current transaction)."""
    day = now.astimezone(tz).strftime("%Y%m%d")
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    bump = (
        insert(TicketCounter)
        .values(day=day, last=1)
        .on_conflict_do_update(index_elements=[TicketCounter.day], set_={"last": TicketCounter.last + 1})
        .returning(TicketCounter.last)
    )
    seq = (await session.execute(bump)).scalar_one()
    return format_ticket_no(day, seq)
