"""Intake on PostgreSQL in two autocommitted statements (``tickets.services.create_ticket`` behind an engine).

1. :func:`number_and_candidates` — the day's counter bumped (:mod:`tickets.numbering`) and the repeat candidates
   read (:mod:`tickets.repeats`) in one statement, committed at once: the counter row is locked only while
   that statement runs.
2. :func:`insert_ticket` — the ticket, its ``create`` audit event and its 重复件 links in one statement (data-
   modifying CTEs), so they are written all together or not at all: one transaction, one round trip.

Each statement is its own transaction, so a creation costs two round trips in all instead of a transaction's
BEGIN, reads, writes and COMMIT; the numbers keep the gaps :mod:`tickets.numbering` describes.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, insert, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from tickets import numbering, repeats
from tickets.models import Ticket, TicketEvent

_TICKETS = cast(Table, Ticket.__table__)
_EVENTS = cast(Table, TicketEvent.__table__)
# Every column of a new ticket but its id: intake gives each a value (most are NULL until later steps).
TICKET_COLUMNS = tuple(c.name for c in _TICKETS.c if c.name != "id")
EVENT_COLUMNS = tuple(c.name for c in _EVENTS.c if c.name not in ("id", "ticket_id"))


@lru_cache(maxsize=2)
def _number_and_candidates(with_district: bool) -> Select[Any]:
    counter = numbering.bump("postgresql").cte("counter")
    found = repeats.candidates(with_district)
    return (
        select(counter.c.last, *repeats.candidate_columns(found))
        .select_from(counter.outerjoin(found, true()))
        .order_by(*repeats.in_order(found))
    )


async def number_and_candidates(
    conn: AsyncConnection, day: str, with_district: bool, params: dict[str, Any]
) -> tuple[int, list[Any]]:
    """The day's next sequence number and the repeat candidates (``repeats.candidate_params``) in
    ``repeats.in_order``: a row with a NULL id when there is none."""
    rows = list(await conn.execute(_number_and_candidates(with_district), {"day": day, **params}))
    return rows[0][0], [row[1:] for row in rows]


@lru_cache(maxsize=1)
def _insert_ticket() -> Select[Any]:
    ticket = (
        insert(_TICKETS)
        .values({name: bindparam(name, type_=_TICKETS.c[name].type) for name in TICKET_COLUMNS})
        .returning(_TICKETS.c.id)
        .cte("ticket")
    )
    event = (
        insert(_EVENTS)
        .from_select(
            ["ticket_id", *EVENT_COLUMNS],
            select(
                ticket.c.id,
                *(bindparam(f"event_{name}", type_=_EVENTS.c[name].type) for name in EVENT_COLUMNS),
            ),
        )
        .cte("event")
    )
    links = repeats.unnested_links(ticket.c.id, ticket).cte("links")
    return select(ticket.c.id).add_cte(event, links)


async def insert_ticket(
    conn: AsyncConnection,
    ticket: dict[str, Any],
    event: dict[str, Any],
    matches: Sequence[repeats.RepeatMatch],
) -> int:
    """Write the ticket (every column of :data:`TICKET_COLUMNS`), its audit event (:data:`EVENT_COLUMNS`) and
    its links in one statement; returns the ticket's id."""
    params = {
        **ticket,
        **{f"event_{k}": v for k, v in event.items()},
        **repeats.unnested_link_params(matches),
    }
    return (await conn.execute(_insert_ticket(), params)).scalar_one()
