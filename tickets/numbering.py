"""Ticket numbers (工单编号) ``12345-YYYYMMDD-NNNNN``, a sequence per local day.

The day's counter row (``ticket_counters``) is bumped by one atomic upsert. Where that happens depends on
what serialises writers:

- PostgreSQL: in a transaction of its own — one autocommitted statement before the ticket is written (in
  ``tickets.intake_pg`` together with the read of the repeat candidates; for 即办 on a pooled connection of its
  own). The counter row is locked only while that statement runs, so concurrent creators do not queue behind
  each other's whole transactions. The price is gaps: a creation that fails after
  taking its number (a database error, a lost connection) leaves that number unused for ever. Numbers stay
  unique and increase in the order they were taken.
- SQLite (and a session bound to a single connection): inside the creating transaction, as its first write.
  The database write lock serialises writers anyway, and a rolled-back creation returns its number (gapless).
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from sqlalchemy import Insert, bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tickets.models import TicketCounter

PREFIX = "12345"
SEQUENCE_DIGITS = 5


def format_ticket_no(day: str, seq: int) -> str:
    return f"{PREFIX}-{day}-{seq:0{SEQUENCE_DIGITS}d}"


def local_day(now: datetime, tz: ZoneInfo) -> str:
    """The counter's day (``YYYYMMDD``) of ``now`` in ``tz``."""
    return now.astimezone(tz).strftime("%Y%m%d")


@lru_cache(maxsize=2)
def bump(dialect: str) -> Insert:
    """The upsert that returns the day's next sequence number, built once per dialect (parameter ``day``)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(TicketCounter)
        .values(day=bindparam("day"), last=1)
        .on_conflict_do_update(
            index_elements=[TicketCounter.day], set_={"last": TicketCounter.last + 1}
        )
        .returning(TicketCounter.last)
    )


async def next_ticket_no(session: AsyncSession, now: datetime, tz: ZoneInfo) -> str:
    """The next number of the local day of ``now``: on PostgreSQL behind an engine committed at once on a
    connection of its own, otherwise taken inside the session's current transaction."""
    day = local_day(now, tz)
    engine = session.bind
    if isinstance(engine, AsyncEngine) and engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            seq = (await conn.execute(bump("postgresql"), {"day": day})).scalar_one()
    else:
        seq = (
            await session.execute(bump(session.get_bind().dialect.name), {"day": day})
        ).scalar_one()
    return format_ticket_no(day, seq)
