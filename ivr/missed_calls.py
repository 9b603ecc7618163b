"""Missed-call call-back tasks (漏接电话回拨): no caller who hung up unanswered is lost.

Whenever the call log takes calls (:func:`ivr.calllog.write_entry`, live, replayed or after a resync), the
calls among them that ended **abandoned** (in the menu, the queue or while an agent rang) without a ticket are
counted into one task per caller number and local day (``ivr_missed_call``; a call is counted once, whatever
replays: the call log row keeps the task it went into). A withheld, anonymous or invalid number is counted in
the day's task of number ``""`` (state ``withheld``) and never called. A later call from the same number that
a person or the bot answered closes the day's open task (``closed_by_recall``); a ticket linked to a call counted
in an open task afterwards (a message the caller hung up on while recording, a bot ticket filed after the
hang-up) closes it (``closed_by_ticket``), and a call linked to a ticket is never counted.

Open tasks are rung by the call-back scheduler (:class:`ivr.callbacks.MissedCallJob`): within the call-back
hours, one attempt per number at a time, ``callback.max_attempts`` tries ``retry_interval_minutes`` apart.
The dialplan (``[hotline-missed-callback]``) apologises and queues the citizen ahead of new callers; the task
ends ``reached_agent`` when an agent took the call (the agent files the ticket from the screen pop: its
``call_id`` is the call-back's Uniqueid, :attr:`MissedCall.reached_call`), ``answered`` when the citizen
answered but left before an agent did, ``unreachable`` after the last unanswered attempt.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, CursorResult, Table, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from ivr.models import CallRecord, MissedCall
from tickets.phone import phone_or_unknown

OPEN, RINGING, WITHHELD = "open", "ringing", "withheld"
ANSWERED, REACHED_AGENT, UNREACHABLE, CLOSED_BY_RECALL = (
    "answered",
    "reached_agent",
    "unreachable",
    "closed_by_recall",
)
CLOSED_BY_TICKET = "closed_by_ticket"
STATES = {
    OPEN: "待回拨",
    RINGING: "回拨中",
    ANSWERED: "已接听（未转坐席）",
    REACHED_AGENT: "已转坐席",
    UNREACHABLE: "未接通",
    CLOSED_BY_RECALL: "来电人已再次来电",
    CLOSED_BY_TICKET: "来电已登记工单",
    WITHHELD: "未显示号码（不回拨）",
}
ATTEMPT_RESULTS = frozenset(
    {ANSWERED, REACHED_AGENT}
)  # what the dialplan reports for a call-back picked up
ANSWERED_OUTCOMES = frozenset(
    {"agent", "leader", "bot"}
)  # a call that closes the caller's open task
TICKET_OUTCOME = (
    "ticket: "  # the outcome of a task closed by a ticket: this, then the ticket number
)
KEY_PREFIX = (
    "missed-"  # a task's key in the call-back scheduler (and its attempts' ticket_no column)
)


def task_key(task_id: int) -> str:
    return f"{KEY_PREFIX}{task_id}"


def task_id_of(key: str) -> int:
    return int(key.removeprefix(KEY_PREFIX))


async def note_calls(
    session: AsyncSession, uniqueids: Collection[str], tz: ZoneInfo, now: datetime
) -> None:
    """Count the abandoned calls among ``uniqueids`` into their tasks, close the tasks of callers who got
    through since and of counted calls linked to a ticket since; one transaction, safe to repeat."""
    if not uniqueids:
        return
    rows = (
        await session.scalars(
            select(CallRecord)
            .where(CallRecord.uniqueid.in_(uniqueids), CallRecord.outcome.is_not(None))
            .order_by(CallRecord.started_at)
        )
    ).all()
    for row in rows:
        if row.outcome == "abandoned" and row.ticket_no is None and row.missed_call_id is None:
            await _count(session, row, tz, now)
        elif row.outcome in ANSWERED_OUTCOMES:
            await _close_by_recall(session, row, now)
    await close_by_ticket(session, rows, now)
    await session.commit()


async def _count(session: AsyncSession, call: CallRecord, tz: ZoneInfo, now: datetime) -> None:
    number = phone_or_unknown(call.caller_number)
    day = call.started_at.astimezone(tz).date()
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.execute(
        insert(cast(Table, MissedCall.__table__))
        .values(
            number=number,
            day=day,
            first_call=call.uniqueid,
            first_call_at=call.started_at,
            calls=0,
            state=OPEN if number else WITHHELD,
            attempts=0,
            outcome="",
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["number", "day"])
    )
    task_id = await session.scalar(
        select(MissedCall.id).where(MissedCall.number == number, MissedCall.day == day)
    )
    claimed = await session.execute(
        update(CallRecord)
        .where(CallRecord.id == call.id, CallRecord.missed_call_id.is_(None))
        .values(missed_call_id=task_id)
    )
    if cast(CursorResult[Any], claimed).rowcount:
        await session.execute(
            update(MissedCall)
            .where(MissedCall.id == task_id)
            .values(calls=MissedCall.calls + 1, updated_at=now)
        )


async def _close_by_recall(session: AsyncSession, call: CallRecord, now: datetime) -> None:
    number = phone_or_unknown(call.caller_number)
    if number:
        await session.execute(
            update(MissedCall)
            .where(
                MissedCall.number == number,
                MissedCall.state.in_((OPEN, RINGING)),
                MissedCall.first_call_at < call.started_at,
            )
            .values(
                state=CLOSED_BY_RECALL,
                outcome=f"recall: {call.uniqueid}"[:128],
                next_attempt_at=None,
                updated_at=now,
            )
        )


async def close_by_ticket(
    session: AsyncSession, calls: Iterable[CallRecord], now: datetime
) -> None:
    """Close the open tasks that ``calls`` were counted in when they are linked to a ticket: the caller's
    concern is filed, nobody need call back (in the caller's transaction)."""
    for call in calls:
        if call.ticket_no is not None and call.missed_call_id is not None:
            await session.execute(
                update(MissedCall)
                .where(
                    MissedCall.id == call.missed_call_id,
                    MissedCall.state.in_((OPEN, RINGING)),
                )
                .values(
                    state=CLOSED_BY_TICKET,
                    outcome=f"{TICKET_OUTCOME}{call.ticket_no}"[:128],
                    next_attempt_at=None,
                    updated_at=now,
                )
            )


def closing_ticket(task: MissedCall) -> str | None:
    """The number of the ticket that closed a ``closed_by_ticket`` task, else None."""
    return task.outcome.removeprefix(TICKET_OUTCOME) if task.state == CLOSED_BY_TICKET else None


# -- the call-back side (driven by ivr.callbacks.MissedCallJob) ---------------------------------------------------
async def due_tasks(session: AsyncSession, now: datetime) -> list[tuple[str, str]]:
    """``(key, number to dial)`` of the open tasks whose next attempt is due, oldest missed call first."""
    rows = (
        await session.execute(
            select(MissedCall.id, MissedCall.number)
            .where(MissedCall.state == OPEN, _attempt_due(now))
            .order_by(MissedCall.first_call_at, MissedCall.id)
        )
    ).all()
    return [(task_key(task_id), number.replace("-", "")) for task_id, number in rows]


def _attempt_due(now: datetime) -> ColumnElement[bool]:
    return or_(MissedCall.next_attempt_at.is_(None), MissedCall.next_attempt_at <= now)


async def mark_ringing(session: AsyncSession, key: str, now: datetime, *, due: bool) -> bool:
    """Claim the open task for an attempt (in the claim's transaction); ``due``: only if its next attempt is
    due (the scheduler's; the console's 立即回拨 rings an open task at once). False when it was not."""
    where = [MissedCall.id == task_id_of(key), MissedCall.state == OPEN]
    if due:
        where.append(_attempt_due(now))
    claimed = await session.execute(
        update(MissedCall).where(*where).values(state=RINGING, updated_at=now)
    )
    return bool(cast(CursorResult[Any], claimed).rowcount)


async def record_attempt(
    session: AsyncSession,
    key: str,
    uniqueid: str,
    result: str | None,
    reason: str,
    now: datetime,
    *,
    max_attempts: int,
    retry: timedelta,
) -> str | None:
    """The end of a ringing task's attempt: ``reached_agent`` / ``answered``; ``unreachable`` counts one attempt
    (the last allowed one ends the task, the others leave it open for ``retry``); None (outcome unknown, never
    sent) counts nothing. A task closed meanwhile (the citizen called in) stays closed. Returns the state."""
    task = await session.get(MissedCall, task_id_of(key))
    if task is None or task.state != RINGING:
        return task.state if task is not None else None
    task.outcome, task.updated_at = reason[:128], now
    if result is None:
        task.state = OPEN
    elif result in ATTEMPT_RESULTS:
        task.attempts += 1
        task.state, task.next_attempt_at = result, None
        task.reached_call = uniqueid if result == REACHED_AGENT else None
    else:
        task.attempts += 1
        last = task.attempts >= max_attempts
        task.state, task.next_attempt_at = (UNREACHABLE, None) if last else (OPEN, now + retry)
    await session.commit()
    return task.state


async def ringable_number(session: AsyncSession, key: str) -> str | None:
    """The number to dial for an open task (the console's 立即回拨); None when it is not waiting."""
    task = await session.get(MissedCall, task_id_of(key))
    return task.number.replace("-", "") if task is not None and task.state == OPEN else None


async def list_tasks(session: AsyncSession, *, since: datetime, limit: int) -> list[MissedCall]:
    """The tasks of the days from ``since`` (local midnight), newest day first, open ones first within a day."""
    open_first = MissedCall.state.not_in((OPEN, RINGING))
    return list(
        (
            await session.scalars(
                select(MissedCall)
                .where(MissedCall.day >= since.date())
                .order_by(MissedCall.day.desc(), open_first, MissedCall.first_call_at)
                .limit(limit)
            )
        ).all()
    )
