"""The call log (通话记录): idempotent writes keyed by Uniqueid, and the close-out of calls that ended unseen.

Every write is an ``INSERT … ON CONFLICT (uniqueid) DO UPDATE`` where a NULL never overwrites a known value
and an end time, once written, stays: replaying the same call after a reconnect changes nothing, and
concurrent writers cannot create two rows for one call. What the database does not take (an outage, a
failover) waits in a bounded :class:`CallLogSpool` and is written in order once it is back.

Several Asterisks (one controller each) share the log: each row names its PBX (``callcontrol.pbx``), and a
controller's close-out after a resync ends only its own PBX's calls. Their Uniqueids differ by the Asterisks'
``systemname`` (asterisk.conf), so two PBXs never write one row.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, CursorResult, Table, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from config.database import AwareDateTime
from config.settings import CallLogSettings
from ivr.missed_calls import close_by_ticket, note_calls
from ivr.models import CallRecord
from ivr.state import Call

log = logging.getLogger(__name__)

# columns where a later write wins over an earlier one (the others keep their first known value)
_LATEST_WINS = (
    "outcome",
    "answered_by",
    "agent_interface",
    "agent_name",
    "leader_name",
    "leader_account",
    "recording",
    "bot_uuid",
    "menu",
    "queue",
    "abandoned_in",
    "wrap_up_s",
    "ticket_no",
)
_FIRST_WINS = ("linkedid", "started_at", "answered_at", "ended_at", "talk_ended_at")
_TEXT_FIRST_WINS = ("channel", "caller_number", "dialled_number", "pbx")  # "" counts as unknown


def _row(call: Call, now: datetime, pbx: str) -> dict[str, Any]:
    return {
        "uniqueid": call.uniqueid,
        "pbx": pbx,
        "linkedid": call.linkedid,
        "channel": call.channel,
        "caller_number": call.caller_number,
        "dialled_number": call.dialled_number,
        "started_at": call.started_at,
        "answered_at": call.answered_at,
        "ended_at": call.ended_at,
        "queue_wait_s": round(call.queue_wait_s, 3),
        "outcome": call.outcome,
        "answered_by": call.answered_by,
        "agent_interface": call.agent_interface,
        "agent_name": call.agent_name,
        "leader_name": call.leader_name,
        "leader_account": call.leader_account or None,
        "bot_uuid": call.bot_uuid,
        "redirected_to_bot": call.redirected_at is not None,
        "recording": call.recording,
        "menu": call.menu,
        "closed_by_resync": call.closed_by_resync,
        "queue": call.queue,
        "abandoned_in": call.abandoned_in,
        "from_bot": call.from_bot,
        "talk_ended_at": call.talk_ended_at,
        "wrap_up_s": call.wrap_up_s,
        "ticket_no": call.ticket_no,
        "updated_at": now,
    }


def call_rows(calls: Iterable[Call], now: datetime, pbx: str = "") -> list[dict[str, Any]]:
    """The call-log rows of ``calls`` on ``pbx`` as known at ``now`` (what :func:`upsert_rows` writes)."""
    return [_row(call, now, pbx) for call in calls]


async def upsert_calls(
    session: AsyncSession, calls: Collection[Call], *, now: datetime | None = None, pbx: str = ""
) -> None:
    """Write calls of ``pbx`` in one transaction; safe to repeat with the same or newer facts."""
    await upsert_rows(session, call_rows(calls, now or datetime.now(UTC), pbx))


async def upsert_rows(session: AsyncSession, rows: Collection[dict[str, Any]]) -> None:
    """Write call-log rows in one transaction, keyed by Uniqueid: a row written twice is one row, unchanged."""
    if not rows:
        return
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = cast(Table, CallRecord.__table__)
    greatest = func.max if dialect == "sqlite" else func.greatest
    for row in rows:
        stmt = insert(table).values(**row)
        new = stmt.excluded
        sets: dict[str, Any] = {c: func.coalesce(new[c], table.c[c]) for c in _LATEST_WINS}
        sets |= {c: func.coalesce(table.c[c], new[c]) for c in _FIRST_WINS}
        sets |= {c: func.coalesce(func.nullif(table.c[c], ""), new[c]) for c in _TEXT_FIRST_WINS}
        sets["closed_by_resync"] = case(
            (table.c.ended_at.is_(None), new.closed_by_resync), else_=table.c.closed_by_resync
        )
        sets["redirected_to_bot"] = or_(table.c.redirected_to_bot, new.redirected_to_bot)
        sets["from_bot"] = or_(table.c.from_bot, new.from_bot)
        sets["queue_wait_s"] = greatest(table.c.queue_wait_s, new.queue_wait_s)
        sets["updated_at"] = new.updated_at
        await session.execute(stmt.on_conflict_do_update(index_elements=["uniqueid"], set_=sets))
    await session.commit()


async def close_unseen(
    session: AsyncSession, live: Collection[str], now: datetime, pbx: str = ""
) -> list[str]:
    """End every open call of ``pbx`` in the log absent from ``live`` (the Uniqueids that Asterisk has now):
    calls that ended while the controller was disconnected or down; another PBX's calls are not its to end.
    Their outcome stays the best known one, or ``abandoned`` when nothing was known (in the queue if it had
    reached one, else in the menu). Returns their Uniqueids."""
    query = select(CallRecord.uniqueid).where(CallRecord.ended_at.is_(None), CallRecord.pbx == pbx)
    open_ids = [u for u in (await session.scalars(query)).all() if u not in live]
    if open_ids:
        await session.execute(
            update(CallRecord)
            .where(CallRecord.uniqueid.in_(open_ids), CallRecord.ended_at.is_(None))
            .values(
                ended_at=now,
                closed_by_resync=True,
                updated_at=now,
                outcome=func.coalesce(CallRecord.outcome, "abandoned"),
                abandoned_in=case(
                    (CallRecord.outcome.is_not(None), CallRecord.abandoned_in),
                    (CallRecord.queue.is_(None), "menu"),
                    else_="queue",
                ),
            )
        )
        await session.commit()
    return open_ids


async def link_ticket(
    session: AsyncSession, uniqueid: str, ticket_no: str, *, now: datetime | None = None
) -> bool:
    """Attach a ticket number (工单号) to a call, closing the missed-call task it was counted in; False when the
    call is not in the log."""
    return await _link(session, CallRecord.uniqueid == uniqueid, ticket_no, now)


async def link_bot_ticket(
    session: AsyncSession, bot_uuid: str, ticket_no: str, *, now: datetime | None = None
) -> bool:
    """Attach the ticket the bot filed to the call of its session, as :func:`link_ticket`; False when no call of
    the log has it."""
    return await _link(session, CallRecord.bot_uuid == bot_uuid, ticket_no, now)


async def _link(
    session: AsyncSession, which: ColumnElement[bool], ticket_no: str, now: datetime | None
) -> bool:
    result = await session.execute(update(CallRecord).where(which).values(ticket_no=ticket_no))
    await close_by_ticket(
        session,
        (await session.scalars(select(CallRecord).where(which))).all(),
        now or datetime.now(UTC),
    )
    await session.commit()
    return bool(cast(CursorResult[Any], result).rowcount)


async def get_call(session: AsyncSession, uniqueid: str) -> CallRecord | None:
    return await session.scalar(select(CallRecord).where(CallRecord.uniqueid == uniqueid))


# -- entries and the spool: what the database did not take yet --------------------------------------------------
@dataclass(frozen=True)
class CallRows:
    """Call-log rows to upsert in one transaction."""

    rows: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class CloseUnseen:
    """The close-out after a resync: open calls of ``pbx`` in the log absent from ``live`` end at ``at``."""

    live: frozenset[str]
    at: datetime
    pbx: str = ""


CallLogEntry = CallRows | CloseUnseen
_TIMES = frozenset(
    c.name for c in CallRecord.__table__.columns if isinstance(c.type, AwareDateTime)
)


async def write_entry(
    session: AsyncSession, entry: CallLogEntry, tz: ZoneInfo, now: datetime
) -> list[str]:
    """Write one entry in one transaction, then note its settled calls in the missed-call tasks
    (:mod:`ivr.missed_calls`, local days in ``tz``); returns the Uniqueids a close-out ended."""
    closed: list[str] = []
    if isinstance(entry, CallRows):
        await upsert_rows(session, entry.rows)
        settled = [r["uniqueid"] for r in entry.rows if r["outcome"] is not None]
    else:
        closed = settled = await close_unseen(session, entry.live, entry.at, entry.pbx)
    await note_calls(session, settled, tz, now)
    return closed


def encode_entry(entry: CallLogEntry) -> bytes:
    """One JSON line (with its newline)."""
    data: dict[str, Any]
    if isinstance(entry, CallRows):
        rows = [
            {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
            for row in entry.rows
        ]
        data = {"kind": "rows", "rows": rows}
    else:
        data = {
            "kind": "close_unseen",
            "live": sorted(entry.live),
            "at": entry.at.isoformat(),
            "pbx": entry.pbx,
        }
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def decode_entry(line: bytes) -> CallLogEntry:
    data = json.loads(line)
    if data["kind"] == "close_unseen":
        return CloseUnseen(
            frozenset(data["live"]), datetime.fromisoformat(data["at"]), data.get("pbx", "")
        )
    return CallRows(
        tuple(
            {
                k: datetime.fromisoformat(v) if k in _TIMES and v is not None else v
                for k, v in row.items()
            }
            for row in data["rows"]
        )
    )


class CallLogSpool:
    """A bounded append-only JSON Lines file of call-log entries the database has not taken yet, oldest first.

    :meth:`append` is synchronous, so nothing is lost to a task switch and a process that dies keeps the file
    (flushed to the OS, not fsynced: it survives a controller crash or restart, not a power cut).
    :meth:`replay` writes the entries in order and removes the file once it is empty. An entry written just
    before the process died, while still in the file, is written again: harmless, every write is an upsert
    keyed by the call's Uniqueid. Beyond ``max_bytes`` new entries are dropped and counted in :attr:`dropped`.
    """

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.dropped = 0  # entries lost: the spool was full, or a line of it was unreadable
        self._size = self._repair()

    @classmethod
    def from_settings(cls, settings: CallLogSettings) -> CallLogSpool:
        return cls(Path(settings.spool_path), settings.spool_max_bytes)

    @property
    def size(self) -> int:
        """Bytes waiting (0: nothing spooled, records go straight to the database)."""
        return self._size

    def append(self, entries: Iterable[CallLogEntry]) -> None:
        """Add entries behind those already waiting; those that do not fit are dropped (ERROR, counted)."""
        kept: list[bytes] = []
        dropped = 0
        for line in map(encode_entry, entries):
            if self._size + len(line) > self.max_bytes:
                dropped += 1
                continue
            kept.append(line)
            self._size += len(line)
        if kept:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as f:
                f.write(b"".join(kept))
        if dropped:
            self.dropped += dropped
            log.error(
                "call-log spool %s is full (%d bytes): %d record(s) dropped, %d in all",
                self.path,
                self.max_bytes,
                dropped,
                self.dropped,
            )

    async def replay(self, write: Callable[[CallLogEntry], Awaitable[None]]) -> None:
        """Write every entry in order (also those appended meanwhile) and remove the file. When ``write`` fails,
        the file keeps the entries not written yet and the error propagates."""
        done = 0
        try:
            while True:
                with self.path.open("rb") as f:
                    f.seek(done)
                    lines = f.readlines(_REPLAY_CHUNK)
                if (
                    not lines
                ):  # seen empty and removed with no await between: no append slips through
                    self.path.unlink()
                    self._size = done = 0
                    return
                for line in lines:
                    entry = self._decode(line)
                    if entry is not None:
                        await write(entry)
                    done += len(line)
        finally:
            if done:
                self._cut(done)

    def _decode(self, line: bytes) -> CallLogEntry | None:
        try:
            return decode_entry(line)
        except (ValueError, KeyError, TypeError):
            self.dropped += 1
            log.error("call-log spool %s: unreadable line dropped: %r", self.path, line[:200])
            return None

    def _cut(self, done: int) -> None:
        """Remove the first ``done`` bytes (written entries); atomic: a crash leaves the old or the new file."""
        rest = self.path.read_bytes()[done:]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(rest)
        os.replace(tmp, self.path)
        self._size = len(rest)

    def _repair(self) -> int:
        """The size of what a previous run left, without a last line torn by a crash mid-write."""
        if not self.path.exists():
            return 0
        data = self.path.read_bytes()
        whole = data[: data.rfind(b"\n") + 1]
        if len(whole) < len(data):
            log.error(
                "call-log spool %s: torn last line (%d bytes) dropped",
                self.path,
                len(data) - len(whole),
            )
            self.dropped += 1
            self.path.write_bytes(whole)
        return len(whole)


_REPLAY_CHUNK = 1 << 20  # bytes of whole lines read from the spool at a time
