"""The call-back scheduler (回访): rings citizens whose ticket waits for a satisfaction survey.

Every tick (:meth:`CallbackScheduler.run_once`), within the allowed hours, the tickets
``tickets.services.due_for_callback`` names are rung by AMI Originate into ``hotline-callback`` (channel from
``settings.callback.channel_template``, ``TICKET_NO`` as a channel variable). The dialplan reports the
citizen's digit as ``UserEvent HotlineCallback`` and the result goes into the ticket through
``tickets.services.record_callback``: 1 满意 → 办结, 2 基本满意 → 办结, 3 不满意 → 二次派单. No answer, busy,
no digit and an originate failure count as one 未接通 attempt; the ticket keeps the count
(``callback_attempts``, ``last_callback_at``), so a restart resets nothing, and the last allowed attempt closes
it as ``unreachable``.

The dialplan also stores the result in Asterisk's database (AstDB ``hotline-callback/<Uniqueid>``), so a
result whose UserEvent was lost (AMI dropped, controller restarted) is not lost: it is read back after every
(re)connect for the open attempts, and when a call-back hangs up without a result. An attempt whose outcome
stays unknown is never counted: it stays open, and after ``attempt_timeout_s`` it is closed uncounted and the
ticket is rung again.

One citizen is never rung twice, however many controllers share the database: an in-memory reservation
(taken before any ``await``) guards this process; across processes the claim is a lease in the database. It
writes the open-attempt row of ``ivr_callback_attempt`` first (partial unique indexes on the number and the
key: a second open attempt is refused, and one being closed is waited for), then checks in the same
transaction that the key is still due (:meth:`CallbackJob.claim`). An attempt is closed in the transaction
that records its result, so a scheduler whose due list was read before another controller rang the citizen
sees that attempt open, or its result recorded: never neither.

What is rung and where its result goes is the scheduler's :class:`CallbackJob`: :class:`SurveyJob` (回访, the
default) or :class:`MissedCallJob` (漏接电话回拨, :mod:`ivr.missed_calls`, dialplan ``hotline-missed-callback``). A
process runs one scheduler per job; each concludes only its own kind of attempt, and both share the number lease.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast
from zoneinfo import ZoneInfo

from panoramisk.message import Message
from sqlalchemy import ColumnElement, CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.errors import CodedError
from config.pii import mask_phone
from config.settings import Settings
from ivr import events as ev
from ivr import missed_calls
from ivr.ami import AmiActionError, AmiError
from ivr.controller import HotlineController
from ivr.models import CallbackAttempt
from ivr.state import CALLBACK_CONTEXT, CALLBACK_ID_PREFIX, MISSED_CALLBACK_CONTEXT
from tickets.errors import TicketError
from tickets.services import Actor, due_for_callback, get_ticket, record_callback
from tickets.states import State

log = logging.getLogger(__name__)

SURVEY_RESULTS = frozenset(
    {"satisfied", "basically_satisfied", "unsatisfied"}
)  # 满意 基本满意 不满意
UNREACHABLE = "unreachable"  # 未接通
SYSTEM_ACTOR = Actor(name="自动回访", role="system")
_DIALLABLE = re.compile(r"^\+?[0-9]{3,32}$")
RESULT_FAMILY = "hotline-callback"  # AstDB family of the dialplan's stored results, keyed by the attempt's Uniqueid


class CallbackError(CodedError):
    """A call-back request refused."""

    code = "callback.error"


class OutsideCallbackHours(CallbackError):
    code = "callback.outside_hours"


class NumberBusy(CallbackError):
    code = "callback.number_busy"


class NotWaitingForCallback(CallbackError):
    code = "callback.not_due"


class CallbackJob(Protocol):
    """What a scheduler rings (keys and numbers), into which dialplan context, and where results go."""

    kind: str  # ivr_callback_attempt.kind of its attempts
    context: str  # the dialplan context the citizen's leg runs

    async def due(self, session: AsyncSession, now: datetime) -> list[tuple[str, str]]:
        """``(key, number)`` to ring now (inside the call-back hours)."""

    async def number_for(self, session: AsyncSession, key: str) -> str:
        """The number to ring for ``key`` at once (the console's button); raises :class:`CallbackError`."""

    def variables(self, key: str, number: str) -> dict[str, str]:
        """Channel variables of the Originate."""

    def result_of(self, reported: str) -> str:
        """The result for what the dialplan reported (UserEvent or AstDB)."""

    async def claim(self, session: AsyncSession, key: str, now: datetime, *, due: bool) -> bool:
        """Take ``key`` for the attempt being written (same transaction, after its row). ``due``: the
        scheduler's ring, the key must still be due (False: another controller rang it since the due list was
        read); else the console's, the key must still wait for a call-back."""

    async def record(
        self,
        session: AsyncSession,
        attempt: Attempt,
        result: str | None,
        reason: str,
        now: datetime,
    ) -> str | None:
        """Record how an attempt ended (``result`` None: not counted) in the transaction that closes it;
        returns the key's state after it."""


class SurveyJob:
    """Satisfaction call-backs (回访) of tickets waiting for one; the result goes into the ticket."""

    kind, context = "survey", CALLBACK_CONTEXT

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def due(self, session: AsyncSession, now: datetime) -> list[tuple[str, str]]:
        return [
            (t.ticket_no, t.caller_phone)
            for t in await due_for_callback(session, now, settings=self.settings)
        ]

    async def number_for(self, session: AsyncSession, key: str) -> str:
        ticket = await get_ticket(session, key)
        if ticket.state not in (State.VERIFIED, State.CALLBACK):
            raise NotWaitingForCallback(f"工单 {key} 不在待回访状态")
        return ticket.caller_phone

    def variables(self, key: str, number: str) -> dict[str, str]:
        return {"TICKET_NO": key}

    def result_of(self, reported: str) -> str:
        return reported if reported in SURVEY_RESULTS else UNREACHABLE

    async def claim(self, session: AsyncSession, key: str, now: datetime, *, due: bool) -> bool:
        """Still due (still waiting); the ticket keeps its state until the result."""
        if due:
            return bool(await due_for_callback(session, now, settings=self.settings, ticket_no=key))
        ticket = await get_ticket(session, key, repeat_links=False)
        return ticket.state in (State.VERIFIED, State.CALLBACK)

    async def record(
        self,
        session: AsyncSession,
        attempt: Attempt,
        result: str | None,
        reason: str,
        now: datetime,
    ) -> str | None:
        if result is None:
            return None
        current = await get_ticket(session, attempt.ticket_no, repeat_links=False)
        if current.state not in (State.VERIFIED, State.CALLBACK):  # withdrawn, recorded by hand
            log.warning(
                "call-back result %s of ticket %s not recorded: the ticket is %s",
                result,
                attempt.ticket_no,
                current.state,
            )
            return None
        try:
            ticket = await record_callback(
                session, attempt.ticket_no, result, SYSTEM_ACTOR, now=now, settings=self.settings
            )
        except TicketError as exc:  # changed at this very moment: rolled back, the attempt with it
            log.warning(
                "call-back result %s of ticket %s not recorded: %s; the attempt stays open until it "
                "expires",
                result,
                attempt.ticket_no,
                exc,
            )
            return None
        log.info(
            "call-back of ticket %s: %s (%s) → %s, attempt %d",
            attempt.ticket_no,
            result,
            reason,
            ticket.state,
            ticket.callback_attempts,
        )
        return ticket.state


class MissedCallJob:
    """Missed-call call-backs (漏接电话回拨, :mod:`ivr.missed_calls`): the citizen is queued for an agent."""

    kind, context = "missed", MISSED_CALLBACK_CONTEXT

    def __init__(self, settings: Settings) -> None:
        self.cfg = settings.callback

    async def due(self, session: AsyncSession, now: datetime) -> list[tuple[str, str]]:
        return await missed_calls.due_tasks(session, now)

    async def number_for(self, session: AsyncSession, key: str) -> str:
        number = await missed_calls.ringable_number(session, key)
        if number is None:
            raise NotWaitingForCallback(f"漏接来电 {key} 不在待回拨状态")
        return number

    def variables(self, key: str, number: str) -> dict[str, str]:
        return {
            "MISSED_CALL": key,
            "CITIZEN_NUMBER": number,
        }  # the agent's screen pop shows the citizen

    def result_of(self, reported: str) -> str:
        return reported if reported in missed_calls.ATTEMPT_RESULTS else UNREACHABLE

    async def claim(self, session: AsyncSession, key: str, now: datetime, *, due: bool) -> bool:
        return await missed_calls.mark_ringing(session, key, now, due=due)

    async def record(
        self,
        session: AsyncSession,
        attempt: Attempt,
        result: str | None,
        reason: str,
        now: datetime,
    ) -> str | None:
        state = await missed_calls.record_attempt(
            session,
            attempt.ticket_no,
            attempt.uniqueid,
            result,
            reason,
            now,
            max_attempts=self.cfg.max_attempts,
            retry=timedelta(minutes=self.cfg.retry_interval_minutes),
        )
        log.info("missed-call call-back %s: %s (%s) → %s", attempt.ticket_no, result, reason, state)
        return state


@dataclass(frozen=True)
class Attempt:
    """A call-back call in flight, placed by this process (``ticket_no``: the job's key)."""

    row_id: int
    ticket_no: str
    number: str
    uniqueid: str  # ChannelId of the originated channel (the one running hotline-callback)
    action_id: str


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended (kept in :attr:`CallbackScheduler.recent` for the console)."""

    ticket_no: str  # the job's key
    result: str | None  # None: not counted (never sent, or the outcome stayed unknown)
    reason: str
    at: datetime
    ticket_state: str | None  # the ticket's (the task's) state after the result was recorded


class CallbackScheduler:
    """Places call-backs and records their results; ``run()`` ticks forever, ``run_once(now)`` once. Results
    arrive through :meth:`on_event`, :meth:`on_originate_response` and :meth:`reconcile`, which the wiring
    (:func:`hotline.wiring.subscribe`) registers with the controller."""

    def __init__(
        self,
        controller: HotlineController,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        job: CallbackJob | None = None,
    ) -> None:
        self.controller = controller
        self.job: CallbackJob = job or SurveyJob(settings)
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.cfg = settings.callback
        self.clock = clock
        self.tz = ZoneInfo(settings.timezone)
        self.originated = 0  # Originate actions sent (console status, tests)
        self._by_number: dict[str, Attempt | None] = {}  # None: reserved, not yet written
        self._by_uniqueid: dict[str, Attempt] = {}
        self._by_action: dict[str, Attempt] = {}
        self._finishing: set[asyncio.Task[None]] = set()
        self.recent: deque[Outcome] = deque(maxlen=200)
        self._concluded = asyncio.Condition()

    # -- public API ------------------------------------------------------------------------------------------
    def in_allowed_hours(self, now: datetime) -> bool:
        t = now.astimezone(self.tz).time()
        return self.cfg.allowed_start <= t < self.cfg.allowed_end

    @property
    def in_flight(self) -> list[Attempt]:
        return list(self._by_uniqueid.values())

    async def run(self) -> None:
        """Tick every ``callback.tick_s`` until cancelled; a failed tick is logged and the next one tried."""
        while True:
            try:
                await self.run_once(self.clock())
            except (
                Exception
            ):  # one failed tick (database away, AMI down) must not end the scheduler
                log.exception("call-back tick failed")
            await asyncio.sleep(self.cfg.tick_s)

    async def run_once(self, now: datetime) -> list[str]:
        """Count stale attempts as 未接通, then ring due tickets (up to ``max_concurrent`` at once).
        Returns the ticket numbers rung."""
        await self._expire(now)
        if not self.in_allowed_hours(now) or not self.controller.ami.connected.is_set():
            return []
        async with self.sessionmaker() as session:
            due = await self.job.due(session, now)
        rung: list[str] = []
        for ticket_no, number in due:
            if len(self._by_number) >= self.cfg.max_concurrent:
                break
            if await self._ring(ticket_no, number, now, due=True):
                rung.append(ticket_no)
        return rung

    async def start_callback(self, ticket_no: str) -> None:
        """Ring one key now (the console's 发起自动回访 button); refused outside the hours, for a key not
        waiting for a call-back, or while its number is being called."""
        now = self.clock()
        if not self.in_allowed_hours(now):
            raise OutsideCallbackHours(
                f"当前不在回访时段（{self.cfg.allowed_start:%H:%M}–{self.cfg.allowed_end:%H:%M}）"
            )
        async with self.sessionmaker() as session:
            number = await self.job.number_for(session, ticket_no)
        if not await self._ring(ticket_no, number, now, due=False):
            raise NumberBusy(f"号码 {number} 正在回访中，请稍后再试")

    async def wait_outcomes(
        self, ticket_no: str, count: int = 1, *, timeout_s: float = 60
    ) -> list[Outcome]:
        """The outcomes of ``ticket_no``'s attempts, once there are at least ``count`` (recorded in the ticket)."""
        async with asyncio.timeout(timeout_s), self._concluded:
            while True:
                mine = [o for o in self.recent if o.ticket_no == ticket_no]
                if len(mine) >= count:
                    return mine
                await self._concluded.wait()

    # -- placing a call --------------------------------------------------------------------------------------
    async def _ring(self, ticket_no: str, number: str, now: datetime, *, due: bool) -> bool:
        if number in self._by_number:
            return False
        self._by_number[number] = (
            None  # reserved before the first await: concurrent ticks cannot both pass
        )
        try:
            attempt = await self._claim(ticket_no, number, now, due=due)
            if attempt is None:
                return False
            self._by_number[number] = attempt
            self._by_uniqueid[attempt.uniqueid] = attempt
            self._by_action[attempt.action_id] = attempt
        finally:
            if self._by_number.get(number) is None:
                del self._by_number[number]
        if not _DIALLABLE.match(number):
            await self._finish(attempt, UNREACHABLE, "invalid_number")
            return True
        self.originated += 1
        try:
            await self.controller.originate(
                self.cfg.channel_template.format(number=number),
                self.job.context,
                "s",
                variables=self.job.variables(ticket_no, number),
                caller_id=self.cfg.caller_id,
                timeout_s=self.cfg.ring_timeout_s,
                channel_id=attempt.uniqueid,
                action_id=attempt.action_id,
            )
        except (
            AmiActionError
        ) as exc:  # Asterisk refused the call: an attempt like any unanswered one
            await self._finish(attempt, UNREACHABLE, f"originate_refused: {exc.detail}"[:128])
        except (
            AmiError
        ) as exc:  # never reached Asterisk (not connected, lost): not the citizen's attempt
            await self._finish(attempt, None, f"not_sent: {exc.code}")
        log.info(
            "call-back of ticket %s to %s placed (%s)",
            ticket_no,
            mask_phone(number),
            attempt.uniqueid,
        )
        return True

    async def _claim(
        self, ticket_no: str, number: str, now: datetime, *, due: bool
    ) -> Attempt | None:
        """Write the open attempt, then take the key (the lease, see the module's docstring); None when another
        attempt is open for this number or key, or the key is no longer due (any process)."""
        uniqueid = f"{CALLBACK_ID_PREFIX}{uuid.uuid4()}"
        row = CallbackAttempt(
            kind=self.job.kind,
            ticket_no=ticket_no,
            number=number,
            uniqueid=uniqueid,
            started_at=now,
        )
        async with self.sessionmaker() as session:
            session.add(row)
            try:  # the flush waits for another controller's attempt being written or closed
                await session.flush()
            except IntegrityError:
                await session.rollback()
                log.info(
                    "call-back of ticket %s skipped: %s is already being called",
                    ticket_no,
                    mask_phone(number),
                )
                return None
            if not await self.job.claim(session, ticket_no, now, due=due):
                await session.rollback()
                log.info("call-back of ticket %s skipped: not due any more", ticket_no)
                return None
            await session.commit()
            return Attempt(row.id, ticket_no, number, uniqueid, action_id=uniqueid)

    # -- results ---------------------------------------------------------------------------------------------
    def on_event(self, event: ev.DomainEvent) -> None:
        """The controller's domain events: a call-back's survey result, or its channel hanging up."""
        if isinstance(event, ev.CallbackResult):
            attempt = self._by_uniqueid.get(event.chan.uniqueid) or next(
                (a for a in self._by_uniqueid.values() if a.ticket_no == event.ticket_no), None
            )
            if attempt is not None:
                result, reason = (
                    self.job.result_of(event.result),
                    f"{self.job.kind}: {event.result}",
                )
                self._spawn(attempt, lambda a: self._conclude(a, result, reason))
        elif isinstance(event, ev.ChannelHungUp):
            attempt = self._by_uniqueid.get(event.chan.uniqueid)
            if attempt is not None:
                self._spawn(
                    attempt, lambda a: self._settle_hangup(a, f"hangup: {event.cause}"[:128])
                )

    def on_originate_response(self, message: Message) -> None:
        """An Originate's result: a failed one (no answer, busy, congestion) is one 未接通 attempt."""
        attempt = self._by_action.get(str(message.get("ActionID", "")))
        if attempt is not None and str(message.get("Response", "")).lower() != "success":
            code = str(message.get("Reason", ""))
            reason = f"originate: {_ORIGINATE_REASONS.get(code, code)}"
            self._spawn(attempt, lambda a: self._conclude(a, UNREACHABLE, reason))

    def _spawn(self, attempt: Attempt, settle: Callable[[Attempt], Awaitable[None]]) -> None:
        if attempt.uniqueid not in self._by_uniqueid:
            return
        self._forget(
            attempt
        )  # at once: a later event of the same call (the hangup after the survey) is ignored
        task = asyncio.ensure_future(settle(attempt))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def _settle_hangup(self, attempt: Attempt, reason: str) -> None:
        """A call-back ended before its survey result arrived: the result the dialplan stored (its UserEvent was
        lost), or — none stored — the citizen never answered (未接通). Unknown (AMI away): left open for
        :meth:`reconcile` or :meth:`_expire`."""
        try:
            stored = await self._stored_result(attempt.uniqueid)
        except AmiError as exc:
            log.warning(
                "call-back attempt %s of ticket %s ended, result unknown (%s): kept open",
                attempt.uniqueid,
                attempt.ticket_no,
                exc.code,
            )
            return
        if stored is None:
            await self._conclude(attempt, UNREACHABLE, reason)
        else:
            await self._conclude(attempt, self.job.result_of(stored), f"stored: {stored}")

    async def _stored_result(self, uniqueid: str) -> str | None:
        """The result the dialplan stored for the attempt (None: none, the citizen never got to the survey)."""
        return await self.controller.astdb_get(RESULT_FAMILY, uniqueid)

    async def reconcile(self, live: frozenset[str]) -> None:
        """After every AMI (re)connect: open attempts (of any controller) no longer live whose result the dialplan
        stored are concluded with it; the others stay open (a live call still reports, a lost one expires)."""
        try:
            for attempt in await self._open_attempts(CallbackAttempt.ended_at.is_(None)):
                if attempt.uniqueid in live:
                    continue
                stored = await self._stored_result(attempt.uniqueid)
                if stored is not None:
                    self._forget_uniqueid(attempt.uniqueid)
                    log.info(
                        "call-back attempt %s of %s: result %s recovered after a reconnect",
                        attempt.uniqueid,
                        attempt.ticket_no,
                        stored,
                    )
                    await self._conclude(attempt, self.job.result_of(stored), f"stored: {stored}")
        except Exception:  # AMI or database away again: the next resync or the expiry tries again
            log.exception("call-back reconciliation failed")

    async def _finish(self, attempt: Attempt, result: str | None, reason: str) -> None:
        self._forget(attempt)
        await self._conclude(attempt, result, reason)

    def _forget_uniqueid(self, uniqueid: str) -> None:
        mine = self._by_uniqueid.get(uniqueid)
        if mine is not None:
            self._forget(mine)

    def _forget(self, attempt: Attempt) -> None:
        self._by_uniqueid.pop(attempt.uniqueid, None)
        self._by_action.pop(attempt.action_id, None)
        if self._by_number.get(attempt.number) is attempt:
            del self._by_number[attempt.number]

    async def _conclude(self, attempt: Attempt, result: str | None, reason: str) -> None:
        """Close the attempt row (once, whoever gets there first) and record the result through the job, in one
        transaction (the job commits it)."""
        now = self.clock()
        async with self.sessionmaker() as session:
            closed = await session.execute(
                update(CallbackAttempt)
                .where(CallbackAttempt.id == attempt.row_id, CallbackAttempt.ended_at.is_(None))
                .values(ended_at=now, result=result, reason=reason)
            )
            if not cast(CursorResult[Any], closed).rowcount:
                await session.rollback()
                return
            state = await self.job.record(session, attempt, result, reason, now)
            await session.commit()
        async with self._concluded:
            self.recent.append(Outcome(attempt.ticket_no, result, reason, now, state))
            self._concluded.notify_all()

    async def _expire(self, now: datetime) -> None:
        """Attempts open longer than ``attempt_timeout_s`` (result lost, or their controller died) — this
        process's as well as other processes' — end with the result the dialplan stored; with none, the outcome
        is unknown: closed without counting, so the ticket is rung again. Not while AMI is away (the stored
        result cannot be read): they stay open."""
        if not self.controller.ami.connected.is_set():
            return
        cutoff = now - timedelta(seconds=self.cfg.attempt_timeout_s)
        stale = await self._open_attempts(
            CallbackAttempt.ended_at.is_(None), CallbackAttempt.started_at < cutoff
        )
        for attempt in stale:
            stored = await self._stored_result(attempt.uniqueid)
            self._forget_uniqueid(attempt.uniqueid)
            if stored is not None:
                await self._conclude(attempt, self.job.result_of(stored), f"stored: {stored}")
            else:
                log.warning(
                    "call-back attempt %s of %s never reported: outcome unknown, not counted",
                    attempt.uniqueid,
                    attempt.ticket_no,
                )
                await self._conclude(attempt, None, "unknown")

    async def _open_attempts(self, *where: ColumnElement[bool]) -> list[Attempt]:
        """This job's attempt rows matching ``where`` (of any controller)."""
        async with self.sessionmaker() as session:
            rows = (
                await session.execute(
                    select(
                        CallbackAttempt.id,
                        CallbackAttempt.ticket_no,
                        CallbackAttempt.number,
                        CallbackAttempt.uniqueid,
                    ).where(CallbackAttempt.kind == self.job.kind, *where)
                )
            ).all()
        return [
            Attempt(row_id, key, number, uniqueid, action_id=uniqueid)
            for row_id, key, number, uniqueid in rows
        ]


# OriginateResponse Reason: the AST_CONTROL_* cause of the failure.
_ORIGINATE_REASONS = {
    "0": "failed",
    "1": "hangup",
    "3": "no_answer",
    "5": "busy",
    "8": "congestion",
}
