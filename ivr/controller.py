"""The AMI controller: AMI events → state → call log, overflow to the bot, leader answering windows.

It runs the loops that tie the parts together (the tick that decides on overflow, the leader windows, the
call-log writer with its spool); the parts are elsewhere: the connection :mod:`ivr.ami`, the state
:mod:`ivr.state`, decisions :mod:`ivr.overflow` and :mod:`ivr.leaders`, storage :mod:`ivr.calllog`.
The constructor only stores what it is given: :meth:`HotlineController.subscribe` takes the AMI client's events,
and the wiring (:func:`hotline.wiring.subscribe`) registers the plug-ins (call-back schedulers, the console feed)
with :meth:`HotlineController.add_listener` for domain events (``CallbackResult`` …); they place calls with
:meth:`HotlineController.originate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from panoramisk.message import Message
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.settings import Settings
from ivr import events as ev
from ivr.ami import (
    AmiActionError,
    AmiClient,
    AmiError,
    AmiInvalidAction,
    AmiNotConnected,
    AmiTimeout,
)
from ivr.bot_hosts import BotHostBoard
from ivr.calllog import (
    CallLogEntry,
    CallLogSpool,
    CallRows,
    CloseUnseen,
    call_rows,
    link_bot_ticket,
    link_ticket,
    write_entry,
)
from ivr.estimator import HandleTimeAverage, WaitEstimate, estimate_wait
from ivr.leaders import active_shifts, on_duty, plan, scheduled_interfaces
from ivr.overflow import Decision, OverflowInputs, WaitingCaller, decide, in_office_hours, in_peak
from ivr.state import Call, HotlineState, Resync, Update

log = logging.getLogger(__name__)
decision_log = logging.getLogger("ivr.overflow.decisions")

Listener = Callable[[ev.DomainEvent], Awaitable[None] | None]
ResyncListener = Callable[[frozenset[str]], Awaitable[None]]
ORIGINATE_RESPONSE_FILTER = "Event: OriginateResponse"  # results of originate() (call-backs 回访)
_WAKING = (
    ev.MemberState,
    ev.MemberRemoved,
    ev.AsteriskBooted,
)  # events that re-decide without a call change
_EVALUATION_GAP_S = (
    0.002  # at most one overflow evaluation per 2 ms: bounds its CPU, adds ≤ 2 ms of latency
)


class HotlineController:
    """One controller per Asterisk. ``subscribe()`` once, then ``start()`` connects and serves until ``stop()``."""

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        ami: AmiClient,
        *,
        is_working_day: Callable[[date], bool],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        bot_hosts: BotHostBoard | None = None,
    ) -> None:
        self.settings = settings
        self.cfg = settings.overflow
        self.sessionmaker = sessionmaker
        self.ami = ami
        self.is_working_day = is_working_day
        self.clock = clock
        self.bot_hosts = bot_hosts  # several bots: each overflow caller gets its order of hosts
        self.tz = ZoneInfo(settings.timezone)
        self.state = HotlineState(self.cfg.queue)
        self.handle_time = HandleTimeAverage(self.cfg.talk_time_alpha, self.cfg.default_talk_time_s)
        self.decisions: deque[Decision] = deque(maxlen=self.cfg.decision_ring_size)
        self.resyncs = 0
        self.evaluations = 0  # overflow decisions taken (one per tick or wake-up)
        self._listeners: list[Listener] = []
        self._resync_listeners: list[ResyncListener] = []
        self._jobs: asyncio.Queue[CallLogEntry] = asyncio.Queue()
        self.spool = CallLogSpool.from_settings(settings.calllog)
        self._spool_drained = asyncio.Event()  # set while nothing waits in the spool
        if not self.spool.size:
            self._spool_drained.set()
        self.calllog_refused = 0  # records the database refused (not an outage): logged and dropped
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._resync_wanted = False
        self._listener_tasks: set[asyncio.Future[None]] = set()
        self._leader_interfaces: set[str] = (
            set()
        )  # endpoints ever scheduled or added as leaders by us
        self._astdb_answers: dict[str, asyncio.Future[str]] = {}  # DBGet ActionID → its value
        self.subscribed = False

    # -- public API --------------------------------------------------------------------------------------------
    def subscribe(self) -> None:
        """Take the AMI client's events: the subscribed ones and DBGet answers, through Asterisk's event filters,
        and a resync after every login. The wiring (:func:`hotline.wiring.subscribe`) calls it once, before
        :meth:`start`; a second call changes nothing."""
        if self.subscribed:
            return
        self.ami.on_connected = self._on_connected
        self.ami.event_filters = [*ev.AMI_FILTERS, ORIGINATE_RESPONSE_FILTER]
        self.ami.on_event("DBGetResponse", self._on_astdb_value)
        for name in ev.SUBSCRIBED:
            self.ami.on_event(name, self._on_message)
        self.subscribed = True

    def add_listener(self, listener: Listener) -> None:
        """Receive every domain event after the state has taken it (sync or async callable)."""
        self._listeners.append(listener)

    def add_resync_listener(self, listener: ResyncListener) -> None:
        """Be called after every resync (each AMI (re)connect) with the Uniqueids of the live calls."""
        self._resync_listeners.append(listener)

    async def start(self) -> None:
        if not self.subscribed:
            raise ControllerNotSubscribed("call subscribe() before start()")
        self._tasks = [
            asyncio.create_task(self._writer(), name="ivr-calllog-writer"),
            asyncio.create_task(self._ticker(), name="ivr-ticker"),
            asyncio.create_task(self._leader_loop(), name="ivr-leaders"),
        ]
        if self.bot_hosts is not None:
            self._tasks.append(asyncio.create_task(self.bot_hosts.run(), name="ivr-bot-hosts"))
        self.ami.start()

    async def stop(self) -> None:
        await self.ami.stop()
        await (
            self._jobs.join()
        )  # written, or spooled while the database is away (the next start writes them)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def flush(self) -> None:
        """Wait until every call-log write queued so far is in the database (spooled ones included)."""
        await self._jobs.join()
        await self._spool_drained.wait()

    async def originate(
        self,
        channel: str,
        context: str,
        exten: str = "s",
        *,
        variables: dict[str, str] | None = None,
        caller_id: str = "",
        timeout_s: float = 30.0,
        channel_id: str = "",
        action_id: str = "",
    ) -> Message:
        """Place a call (call-backs 回访): Async Originate; the result arrives as an OriginateResponse event
        (``on_originate_response``) carrying ``action_id``. ``channel_id`` becomes the new channel's Uniqueid."""
        action: dict[str, Any] = {
            "Action": "Originate",
            "Channel": channel,
            "Context": context,
            "Exten": exten,
            "Priority": 1,
            "Async": "true",
            "Timeout": int(timeout_s * 1000),
        }
        if caller_id:
            action["CallerID"] = caller_id
        if channel_id:
            action["ChannelId"] = channel_id
        if action_id:
            action["ActionID"] = action_id
        if variables:
            action["Variable"] = [f"{k}={v}" for k, v in variables.items()]
        reply = await self.ami.action(action)
        assert isinstance(reply, Message)
        return reply

    async def astdb_get(self, family: str, key: str) -> str | None:
        """What Asterisk's own database (AstDB) holds under ``family/key``; None for nothing.

        AMI DBGet (Getvar of ``DB()`` is refused without the "system" right): sent as a single action, since
        its "not found" error would never complete a list, and its value taken from the DBGetResponse event
        that follows the reply."""
        action_id = f"astdb-{uuid.uuid4()}"
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._astdb_answers[action_id] = answer
        try:
            await self.ami.action(
                {"Action": "DBGet", "Family": family, "Key": key, "ActionID": action_id}
            )
            async with asyncio.timeout(self.ami.action_timeout_s):
                return await answer
        except AmiActionError as exc:
            if "not found" in exc.detail.lower():
                return None
            raise
        except TimeoutError:
            raise AmiTimeout(f"DBGet {family}/{key}: no DBGetResponse") from None
        finally:
            del self._astdb_answers[action_id]

    def _on_astdb_value(self, message: Message) -> None:
        answer = self._astdb_answers.get(str(message.get("ActionID", "")))
        if answer is not None and not answer.done():
            answer.set_result(str(message.get("Val", "")))

    def on_originate_response(self, callback: Callable[[Message], None]) -> None:
        """Receive the OriginateResponse event of every Originate (``Response`` Success/Failure, ``Reason``)."""
        self.ami.on_event("OriginateResponse", callback)

    async def set_bot_next(self, bot_uuid: str, value: str) -> bool:
        """Tell the dialplan what follows the bot (``hangup`` or ``requeue``); False when the call is gone."""
        call = self.state.find_by_bot(bot_uuid)
        if call is None or call.ended_at is not None:
            return False
        try:
            await self.ami.action(
                {
                    "Action": "Setvar",
                    "Channel": call.channel,
                    "Variable": "BOT_NEXT",
                    "Value": value,
                }
            )
        except (
            AmiActionError
        ):  # hung up before its Hangup event reached us: Asterisk has no such channel
            return False
        return True

    async def link_bot_ticket(self, bot_uuid: str, ticket_no: str) -> None:
        """The bot filed ``ticket_no`` on its session ``bot_uuid``: the call-log row shows it. A call this
        controller knows (also after its hang-up) keeps the number and is written again in order behind its earlier
        rows (spooled while the database is away), so a row not written yet gets it too; one it does not know (a
        restart since) is updated in the log by its bot UUID."""
        call = self.state.find_by_bot(bot_uuid)
        if call is not None:
            call.ticket_no = ticket_no
            self._queue_write([call])
            return
        async with self.sessionmaker() as session:
            if not await link_bot_ticket(session, bot_uuid, ticket_no, now=self.clock()):
                log.warning(
                    "bot call %s: no call in the log, ticket %s not linked", bot_uuid, ticket_no
                )

    async def link_ticket(self, uniqueid: str, ticket_no: str) -> None:
        """A ticket was filed on the call ``uniqueid`` (a voice message): the call-log row shows it, so the call
        counts as no missed call, and a missed-call task it was counted in closes. A live call keeps the number
        and is written again in order behind its earlier rows; one that ended is linked in the log once the rows
        queued before are written."""
        call = self.state.calls.get(uniqueid)
        if call is not None:
            call.ticket_no = ticket_no
            self._queue_write([call])
            return
        await self.flush()
        async with self.sessionmaker() as session:
            if not await link_ticket(session, uniqueid, ticket_no, now=self.clock()):
                log.warning("call %s: not in the log, ticket %s not linked", uniqueid, ticket_no)

    async def add_agent(self, interface: str, name: str) -> None:
        """Log an agent (坐席) into the queue with ``agent_penalty`` (leaders keep precedence)."""
        await self.ami.action(
            {
                "Action": "QueueAdd",
                "Queue": self.cfg.queue,
                "Interface": interface,
                "Penalty": self.cfg.agent_penalty,
                "MemberName": name,
                "StateInterface": interface,
            }
        )

    async def remove_agent(self, interface: str) -> None:
        await self.ami.action(
            {"Action": "QueueRemove", "Queue": self.cfg.queue, "Interface": interface}
        )

    async def pause_agent(self, interface: str, paused: bool, reason: str = "") -> None:
        """示忙 / 话后整理 (paused, with the reason) or 示闲 (ready) for an agent's queue membership."""
        await self.ami.action(
            {
                "Action": "QueuePause",
                "Queue": self.cfg.queue,
                "Interface": interface,
                "Paused": "true" if paused else "false",
                "Reason": reason,
            }
        )

    def estimate(self) -> WaitEstimate:
        now = self.clock()
        staffed = [m for m in self.state.members.values() if m.available]
        elapsed = [
            (now - c.answered_at).total_seconds()
            for c in self.state.talking_calls()
            if c.answered_at
        ]
        return estimate_wait(
            len(self.state.waiting_calls()),
            len(staffed),
            sum(m.free for m in staffed),
            elapsed,
            self.handle_time.aged(elapsed),
        )

    def status(self) -> dict[str, Any]:
        """What the console shows: connection, queue, estimate, recent decisions."""
        now = self.clock()
        est = self.estimate()
        return {
            "connected": self.ami.connected.is_set(),
            "ami": self.ami.stats.as_dict(),
            "resyncs": self.resyncs,
            "calllog": {
                "spooled_bytes": self.spool.size,
                "dropped": self.spool.dropped,
                "refused": self.calllog_refused,
            },
            "waiting": [
                {
                    "uniqueid": c.uniqueid,
                    "caller": c.caller_number,
                    "wait_s": round(c.wait_so_far(now), 1),
                    "from_bot": c.from_bot,
                }
                for c in self.state.waiting_calls()
            ],
            "members": [
                {
                    "interface": m.interface,
                    "name": m.name,
                    "penalty": m.penalty,
                    "paused": m.paused,
                    "free": m.free,
                    "leader": m.interface in self.state.leaders,
                }
                for m in self.state.members.values()
            ],
            "handle_time_s": round(est.handle_time_s, 1),
            "estimated_wait_s": est.newest_wait_s,
            "decisions": [d.as_log() for d in list(self.decisions)[-20:]],
        }

    # -- events ------------------------------------------------------------------------------------------------
    def _on_message(self, message: Message) -> None:
        domain = ev.parse_event(message, self.clock())
        if domain is None:
            return
        update = self.state.apply(domain, int(getattr(message, "seq", 0) or 0))
        self._take(update)
        if isinstance(domain, ev.AsteriskBooted) and self.resyncs:
            self._resync_wanted = True
        if (
            update.calls or update.talk_s is not None or isinstance(domain, _WAKING)
        ):  # the queue's picture changed
            self._wake.set()
        for listener in self._listeners:
            result = listener(domain)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._listener_tasks.add(task)
                task.add_done_callback(self._listener_tasks.discard)

    def _take(self, update: Update) -> None:
        if update.talk_s is not None:
            self.handle_time.add(update.talk_s)
        if update.calls:
            self._queue_write(update.calls)

    def _queue_write(self, calls: Iterable[Call]) -> None:
        rows = call_rows(calls, self.clock(), self.settings.callcontrol.pbx)
        self._enqueue(CallRows(tuple(rows)))

    def _enqueue(self, entry: CallLogEntry) -> None:
        if self.spool.size:  # the database is away: behind what waits in the spool, in order
            self._spool([entry])
        else:
            self._jobs.put_nowait(entry)

    async def _writer(self) -> None:
        """Write the call log in order: straight to the database, or — while it is away — through the spool,
        replayed with backoff (a spool left by a previous run first)."""
        while True:
            if self.spool.size:
                await self._replay_spool()
                continue
            entry = await self._jobs.get()
            try:
                await self._write(entry)
            except Exception as exc:  # _write raises only for an outage
                log.warning(
                    "call-log database unavailable (%s): records go to the spool %s",
                    exc,
                    self.spool.path,
                )
                self._spool([entry, *self._take_queued()])
            finally:
                self._jobs.task_done()

    def _spool(self, entries: list[CallLogEntry]) -> None:
        self.spool.append(entries)
        if self.spool.size:
            self._spool_drained.clear()

    async def _replay_spool(self) -> None:
        delay = self.settings.calllog.retry_min_s
        while True:
            try:
                await self.spool.replay(self._write)
            except Exception as exc:  # _write raises only for an outage
                log.warning(
                    "call-log database still unavailable (%s): %d bytes spooled, retry in %.1fs",
                    exc,
                    self.spool.size,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.calllog.retry_max_s)
                continue
            log.info("call-log spool written to the database")
            self._spool_drained.set()
            return

    def _take_queued(self) -> list[CallLogEntry]:
        taken: list[CallLogEntry] = []
        while not self._jobs.empty():
            taken.append(self._jobs.get_nowait())
            self._jobs.task_done()
        return taken

    async def _write(self, entry: CallLogEntry) -> None:
        """Write one entry; a record the database refuses (not an outage) is logged and dropped, an outage
        raises."""
        try:
            async with self.sessionmaker() as session:
                closed = await write_entry(session, entry, self.tz, self.clock())
        except (IntegrityError, DataError):
            self._refused(entry)
            return
        except (DBAPIError, OSError, TimeoutError):
            raise
        except Exception:  # a record that can never be written must not hold up those behind it
            self._refused(entry)
            return
        if closed:
            log.warning(
                "closed %d call(s) that ended while the controller was not listening: %s",
                len(closed),
                ", ".join(closed),
            )

    def _refused(self, entry: CallLogEntry) -> None:
        self.calllog_refused += 1
        what = (
            ", ".join(r["uniqueid"] for r in entry.rows)
            if isinstance(entry, CallRows)
            else "close-out"
        )
        log.exception("call-log record refused, dropped: %s", what)

    # -- resync after every (re)connect ---------------------------------------------------------------------------
    async def _on_connected(self, ami: AmiClient) -> None:
        await self._resync()

    async def _resync(self) -> None:
        """Rebuild calls and queue from CoreShowChannels + QueueStatus, close calls that ended unseen, tell the
        resync listeners (call-back reconciliation) and put the leader members right."""
        channels = await self.ami.action({"Action": "CoreShowChannels"}, as_list=True)
        queue = await self.ami.action(
            {"Action": "QueueStatus", "Queue": self.cfg.queue}, as_list=True
        )
        assert isinstance(channels, list) and isinstance(queue, list)
        records = [ev.parse_snapshot(m) for m in channels + queue]
        now = self.clock()
        snap = Resync(
            channels=[r for r in records if isinstance(r, ev.ChannelSnapshot)],
            channels_seq=int(getattr(channels[-1], "seq", 0) or 0),
            waiting=[r for r in records if isinstance(r, ev.QueueWaiting)],
            members=[r for r in records if isinstance(r, ev.MemberState)],
            params=[r for r in records if isinstance(r, ev.QueueParams)],
            queue_seq=int(getattr(queue[-1], "seq", 0) or 0),
        )
        self._take(self.state.resync(snap, now))
        if self.state.asterisk_talk_time_s:
            self.handle_time.seed(self.state.asterisk_talk_time_s)
        live = frozenset(self.state.calls)
        self._enqueue(CloseUnseen(live, now, self.settings.callcontrol.pbx))
        self.resyncs += 1
        log.info(
            "resync #%d: %d live calls, %d waiting, %d members",
            self.resyncs,
            len(live),
            len(self.state.waiting_calls()),
            len(self.state.members),
        )
        for listener in self._resync_listeners:
            task = asyncio.ensure_future(listener(live))
            self._listener_tasks.add(task)
            task.add_done_callback(self._listener_tasks.discard)
        await self._reconcile_leaders()
        self._wake.set()

    # -- periodic work ---------------------------------------------------------------------------------------------
    async def _ticker(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that races the wake-up, and
            # stop() would then wait for this loop forever
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.cfg.tick_s):
                    await self._wake.wait()
            self._wake.clear()
            if not self.ami.connected.is_set():
                continue
            try:
                if self._resync_wanted:
                    self._resync_wanted = False
                    await self._resync()
                self.evaluations += 1
                await self._overflow()
            except AmiError as exc:
                log.warning("controller tick interrupted: %s", exc)
            except Exception:  # one failed tick must not stop the controller
                log.exception("controller tick failed")
            await asyncio.sleep(
                _EVALUATION_GAP_S
            )  # an event flood is decided on in batches, not per read

    async def _leader_loop(self) -> None:
        """Leader windows every tick, apart from the event-driven ticker: a database read never delays an
        overflow decision."""
        while True:
            await asyncio.sleep(self.cfg.tick_s)
            if not self.ami.connected.is_set():
                continue
            try:
                await self._reconcile_leaders()
            except AmiError as exc:
                log.warning("leader reconciliation interrupted: %s", exc)
            except Exception:  # the database may be briefly unavailable: next tick
                log.exception("leader reconciliation failed")

    async def _reconcile_leaders(self) -> None:
        now = self.clock()
        async with self.sessionmaker() as session:
            shifts = await active_shifts(session, now, self.tz, self.settings.callcontrol.pbx)
            known = await scheduled_interfaces(session, now, self.tz)
        duty = on_duty(shifts)
        self.state.set_leaders((d.interface, d.leader_name, d.account) for d in duty)
        self._leader_interfaces |= known | {d.interface for d in duty}
        changes = plan(duty, self.state.members, self.cfg.leader_penalty, self._leader_interfaces)
        for interface in changes.remove:
            log.info("leader window closed: removing %s from queue %s", interface, self.cfg.queue)
            if await self._queue_member_action(
                {"Action": "QueueRemove", "Queue": self.cfg.queue, "Interface": interface}
            ):
                self.state.apply(
                    ev.MemberRemoved(self.clock(), self.cfg.queue, interface), self.ami.stats.frames
                )
        for d in changes.add:
            log.info(
                "leader window open: adding %s (%s) to queue %s",
                d.interface,
                d.member_name,
                self.cfg.queue,
            )
            added = await self._queue_member_action(
                {
                    "Action": "QueueAdd",
                    "Queue": self.cfg.queue,
                    "Interface": d.interface,
                    "Penalty": self.cfg.leader_penalty,
                    "MemberName": d.member_name,
                    "StateInterface": d.interface,
                }
            )
            if added:
                member = ev.MemberState(
                    at=self.clock(),
                    queue=self.cfg.queue,
                    interface=d.interface,
                    name=d.member_name,
                    state_interface=d.interface,
                    penalty=self.cfg.leader_penalty,
                    paused=False,
                    status=0,
                    in_call=False,
                )
                self.state.apply(member, self.ami.stats.frames)

    async def _queue_member_action(self, action: dict[str, Any]) -> bool:
        """False when the action could not be sent at all; Asterisk's refusals ("Already there" / "Not there") mean
        the state was stale and count as done: the next event fixes the state."""
        try:
            await self.ami.action(action)
        except AmiNotConnected:
            raise
        except (
            AmiInvalidAction
        ) as exc:  # a schedule row that slipped past validation: never sent, never retried
            log.error("%s refused before sending: %s", action["Action"], exc.detail)
            return False
        except AmiError as exc:
            log.info("%s %s: %s", action["Action"], action["Interface"], exc.detail)
        return True

    async def _overflow(self) -> None:
        now = self.clock()
        local = now.astimezone(self.tz)
        callers = tuple(
            WaitingCaller(
                c.uniqueid, c.channel, c.queue_joined_at or c.started_at, c.overflow_eligible()
            )
            for c in self.state.waiting_calls()
        )
        inputs = OverflowInputs(
            at=now,
            peak=in_peak(local, self.cfg.peak_windows),
            office_hours=in_office_hours(
                local, self.settings.office_hours, self.is_working_day(local.date())
            ),
            callers=callers,
            estimate=self.estimate(),
        )
        decision = decide(inputs, self.cfg)
        self._record(decision)
        for caller in decision.redirect:
            await self._redirect(caller, now)

    def _record(self, decision: Decision) -> None:
        last = self.decisions[-1] if self.decisions else None
        if decision.redirect or not decision.same_situation(last):
            self.decisions.append(decision)
            level = logging.INFO if decision.redirect else logging.DEBUG
            if decision_log.isEnabledFor(level):  # the JSON costs more than the decision
                decision_log.log(
                    level, "overflow %s", json.dumps(decision.as_log(), ensure_ascii=False)
                )

    async def _redirect(self, caller: WaitingCaller, now: datetime) -> None:
        """Send ``caller`` to the bot context; with several bot hosts, first ``BOT_HOSTS`` on its channel (the
        hosts least loaded first, :mod:`ivr.bot_hosts`)."""
        self.state.mark_redirected(caller.uniqueid, now)
        try:
            if self.bot_hosts is not None:
                await self.ami.action(
                    {
                        "Action": "Setvar",
                        "Channel": caller.channel,
                        "Variable": "BOT_HOSTS",
                        "Value": self.bot_hosts.choose(),
                    }
                )
                if not self._still_waiting(caller.uniqueid):
                    return
            await self.ami.action(
                {
                    "Action": "Redirect",
                    "Channel": caller.channel,
                    "Context": self.cfg.bot_context,
                    "Exten": "s",
                    "Priority": 1,
                }
            )
        except AmiNotConnected:
            call = self.state.calls.get(caller.uniqueid)
            if call is not None:
                call.redirected_at = None  # never sent: may be decided again after the resync
            raise
        except AmiError as exc:  # the caller hung up or was answered meanwhile: never retried
            log.warning(
                "redirect of %s to %s failed: %s", caller.channel, self.cfg.bot_context, exc.detail
            )
            return
        call = self.state.calls.get(caller.uniqueid)
        if call is not None:
            self._queue_write([replace(call)])

    def _still_waiting(self, uniqueid: str) -> bool:
        """Whether the caller is still only waiting after an await: one an agent began to ring for (or who was
        answered, or left) meanwhile is not taken away; it may be decided on again later."""
        call = self.state.calls.get(uniqueid)
        if call is not None and call.waiting and not call.ringing:
            return True
        if call is not None:
            call.redirected_at = None
        log.info("overflow of %s dropped: offered to an agent or gone meanwhile", uniqueid)
        return False


class ControllerNotSubscribed(AmiError):
    code = "ami.not_subscribed"
    message = "AMI 控制器尚未订阅事件，无法启动"


class AmiCredentialsMissing(AmiError):
    code = "ami.no_credentials"
    message = "未配置 AMI 账号，且本机 PBX 未运行"


class AmiCredentialsAccountMissing(AmiError):
    code = "ami.no_credentials_account"
    message = "未配置写入软电话密码的 AMI 账号 (ami.credentials_username)，或它与控制账号相同"


# The controller's AMI account, or the one that only writes the softphones' passwords into AstDB (write = system)
AmiAccount = Literal["controller", "credentials"]


def resolve_ami_credentials(
    settings: Settings, account: AmiAccount = "controller"
) -> tuple[str, str]:
    """The login of ``account``: from settings.ami, or (when ami.username is empty) the generated one of the
    running local PBX, read anew at every call: the local PBX gets new secrets each time it starts."""
    ami = settings.ami
    if account == "credentials" and ami.credentials_username:
        if ami.credentials_username == ami.username:  # the controller's account with `system`
            raise AmiCredentialsAccountMissing("ami.credentials_username = ami.username")
        return ami.credentials_username, ami.credentials_secret
    if ami.username:
        if account == "credentials":
            raise AmiCredentialsAccountMissing("ami.username set, ami.credentials_username empty")
        return ami.username, ami.secret
    from ivr.pbx.harness import LocalPbx  # the harness is only needed for the local PBX

    info = LocalPbx(settings, instance=local_instance(settings)).status()
    if info is None:
        raise AmiCredentialsMissing(
            "settings.ami.username is empty and `hotline pbx start` is not running"
        )
    if account == "controller":
        return info.ami_username, info.ami_secret
    if not info.credentials_username:
        raise AmiCredentialsAccountMissing("the local PBX predates it: `hotline pbx restart`")
    return info.credentials_username, info.credentials_secret


def local_instance(settings: Settings) -> str:
    """The local PBX of a controller without an AMI login of its own: the named instance (``pbx.instances``) that
    its ``callcontrol.pbx`` names, else the default one ("")."""
    pbx = settings.callcontrol.pbx
    return pbx if pbx in settings.pbx.instances else ""


def build_controller(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    credentials: Callable[[], tuple[str, str]] | None = None,
) -> HotlineController:
    """A controller on the statutory working-day calendar (调休 included); AMI credentials are asked for
    before every login (default: :func:`resolve_ami_credentials`); with ``[bot] hosts``, the bots' load board."""
    from tickets.worktime import WorkCalendar

    ami = AmiClient.from_settings(
        settings.ami, credentials=credentials or (lambda: resolve_ami_credentials(settings))
    )
    calendar = WorkCalendar.from_settings(settings)
    bot_hosts = BotHostBoard(settings.bot, sessionmaker) if settings.bot.hosts else None
    return HotlineController(
        settings,
        sessionmaker,
        ami,
        is_working_day=calendar.is_working_day,
        bot_hosts=bot_hosts,
    )
