"""Call and queue state, rebuilt from domain events. Pure: events in, state (and what changed) out.

A *call* is the caller's channel: the one whose Uniqueid equals its Linkedid (agent legs, the second half
of Local channels and bot legs share the caller's Linkedid and are not calls of their own).

Every entity remembers the sequence number of the AMI frame that last changed it. A resync snapshot
(CoreShowChannels, QueueStatus) taken at frame *s* overrides only entities last changed before *s*, so events
that arrive while the snapshot is being read are never undone by it, and a call is never ended by a stale
snapshot nor revived after its hangup.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from copy import copy
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from ivr import events as ev

Outcome = Literal["agent", "bot", "leader", "abandoned", "callback", "blocked"]
AbandonStage = Literal[
    "menu", "queue", "ringing"
]  # where an abandoned call ended: 菜单 / 排队 / 振铃
WRAP_UP_REASON = (
    "话后整理"  # the QueuePause reason of an agent's wrap-up (the console's 话后整理 button)
)
CALLBACK_CONTEXT = "hotline-callback"
MISSED_CALLBACK_CONTEXT = "hotline-missed-callback"  # missed-call call-backs (漏接电话回拨)
CALLBACK_ID_PREFIX = (
    "callback-"  # Uniqueid (Originate ChannelId) of call-backs placed by ivr.callbacks
)
_CALLBACK_CONTEXTS = (CALLBACK_CONTEXT, MISSED_CALLBACK_CONTEXT)
# Uniqueid (Originate ChannelId) of the legs call control places (ivr.callcontrol): a department joining a
# three-way call, a supervisor's spy leg. They are parts of an agent's call, never calls of their own.
CONTROL_ID_PREFIX = "control-"
_TOMBSTONES = 10_000


@dataclass
class Call:
    """One caller's call as the controller knows it (the call log row is written from this)."""

    uniqueid: str
    linkedid: str
    channel: str
    caller_number: str
    dialled_number: str
    started_at: datetime
    seq: int = 0
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    queue: str | None = None
    queue_joined_at: datetime | None = None
    queue_wait_s: float = 0.0
    agent_interface: str | None = None
    agent_name: str | None = None
    agent_channel: str | None = None  # the answering agent's leg (AgentConnect DestChannel)
    answered_by: Literal["agent", "leader"] | None = None
    leader_name: str | None = None
    leader_account: str | None = (
        None  # the leader's console account: the leader line (领导接听) finds the call by it
    )
    bot_uuid: str | None = None
    from_bot: bool = False  # came back from the bot (requeue): never overflowed again
    redirected_at: datetime | None = None  # the controller sent it to the bot
    is_callback: bool = False
    recording: str | None = None
    menu: str | None = None
    closed_by_resync: bool = False
    ringing: frozenset[str] = (
        frozenset()
    )  # members being rung for this caller now (AgentCalled, no answer yet)
    left_ringing: bool = False  # an agent was ringing when the caller last left the queue
    talk_ended_at: datetime | None = (
        None  # AgentComplete, or the caller's hang-up before it: the agent's or leader's part ended
    )
    wrap_up_s: float | None = None  # the answering agent's wrap-up (话后整理) after this call
    ticket_no: str | None = None  # the ticket the bot or a voice message filed on it (工单号)
    blocked: bool = False  # refused by the blocklist ([hotline-blocked]): never offered to anyone

    @property
    def outcome(self) -> Outcome | None:
        """The best known outcome; None while the call is in progress and nothing is decided yet."""
        if self.is_callback:
            return "callback"
        if self.blocked:
            return "blocked"
        if self.answered_by is not None:
            return self.answered_by
        if self.bot_uuid is not None:
            return "bot"
        return "abandoned" if self.ended_at is not None else None

    @property
    def abandoned_in(self) -> AbandonStage | None:
        """Where an abandoned call was given up: before any queue (menu), waiting, or while an agent rang."""
        if self.outcome != "abandoned":
            return None
        if self.queue is None:
            return "menu"
        return "ringing" if self.left_ringing else "queue"

    @property
    def waiting(self) -> bool:
        return self.queue_joined_at is not None

    def wait_so_far(self, now: datetime) -> float:
        current = (now - self.queue_joined_at).total_seconds() if self.queue_joined_at else 0.0
        return self.queue_wait_s + max(0.0, current)

    def overflow_eligible(self) -> bool:
        """May go to the bot now: waiting, not being offered to an agent (an agent's phone rings for it: a
        redirect would take it away from an agent about to answer), never sent before, not a call-back."""
        return (
            self.waiting
            and not self.ringing
            and not self.from_bot
            and self.redirected_at is None
            and not self.is_callback
        )


@dataclass
class Member:
    """A queue member (坐席 or a leader on an answering day)."""

    interface: str
    name: str
    state_interface: str
    penalty: int
    paused: bool
    status: int
    in_call: bool
    seq: int = 0
    paused_reason: str = ""

    @property
    def wrapping_up(self) -> bool:
        """Paused for wrap-up (话后整理) after a call."""
        return self.paused and self.paused_reason == WRAP_UP_REASON

    @property
    def available(self) -> bool:
        """Logged in, not paused, and reachable (it can take calls, now or after its current one)."""
        return not self.paused and self.status not in (ev.DEVICE_INVALID, ev.DEVICE_UNAVAILABLE)

    @property
    def free(self) -> bool:
        """Available and idle right now."""
        return self.available and not self.in_call and self.status in (0, ev.DEVICE_NOT_INUSE)


@dataclass(frozen=True)
class Resync:
    """What CoreShowChannels and QueueStatus returned, with the frame sequence each list completed at."""

    channels: list[ev.ChannelSnapshot]
    channels_seq: int
    waiting: list[ev.QueueWaiting]
    members: list[ev.MemberState]
    params: list[ev.QueueParams]
    queue_seq: int


@dataclass
class Update:
    """What an event or a resync changed: calls to write to the call log, a talk-time sample."""

    calls: list[Call] = field(default_factory=list)
    talk_s: float | None = None
    members_changed: bool = False


# Asterisk's running average talk time seeds the controller's handle time after a (re)connect only when it
# rests on this many calls: one short call must not make every wait look short (and stop overflow).
MIN_CALLS_FOR_TALK_TIME = 5


class HotlineState:
    """Calls by Uniqueid and the watched queue's members; ``apply`` is the only way in besides ``resync``."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.calls: dict[str, Call] = {}
        self.members: dict[str, Member] = {}
        # interface → (leader name, console account), for the windows active now
        self.leaders: dict[str, tuple[str, str]] = {}
        self.asterisk_talk_time_s: float | None = None
        self._ended: OrderedDict[str, int] = OrderedDict()  # tombstones: uniqueid → seq of its end
        self._bots: OrderedDict[str, Call] = (
            OrderedDict()
        )  # bot session uuid → its call, kept after the call ends
        self._last_call: dict[
            str, Call
        ] = {}  # member interface → the call it last completed (its wrap-up's call)
        self._wrap_since: dict[str, datetime] = {}  # member interface → start of its wrap-up now

    # -- queries -----------------------------------------------------------------------------------------------
    def waiting_calls(self) -> list[Call]:
        """Callers waiting in the watched queue, longest waiting first."""
        waiting = [c for c in self.calls.values() if c.queue == self.queue and c.waiting]
        return sorted(waiting, key=lambda c: c.queue_joined_at or c.started_at)

    def talking_calls(self) -> list[Call]:
        """Calls an agent or leader of the queue is talking to now."""
        return [
            c
            for c in self.calls.values()
            if c.answered_by is not None and c.ended_at is None and c.talk_ended_at is None
        ]

    def find_by_bot(self, bot_uuid: str) -> Call | None:
        """The call of a bot session, also after the caller hung up (the bot files its ticket after that)."""
        return self._bots.get(bot_uuid)

    def mark_redirected(self, uniqueid: str, at: datetime) -> None:
        call = self.calls.get(uniqueid)
        if call is not None:
            call.redirected_at = at

    # -- events ------------------------------------------------------------------------------------------------
    def apply(self, event: ev.DomainEvent, seq: int) -> Update:
        """Fold one domain event into the state; idempotent for repeated delivery of the same event."""
        if isinstance(event, ev.MemberState):
            return self._member(event, seq)
        if isinstance(event, ev.MemberRemoved):
            if event.queue == self.queue and self.members.pop(event.interface, None) is not None:
                return Update(members_changed=True)
            return Update()
        if isinstance(event, ev.AsteriskBooted | ev.AttendedTransferEnded):
            return Update()
        if isinstance(event, ev.ChannelHungUp) and event.chan.uniqueid != event.chan.linkedid:
            return self._leg_hangup(event)
        if event.chan.uniqueid != event.chan.linkedid or event.chan.uniqueid.startswith(
            CONTROL_ID_PREFIX
        ):
            return Update()
        if isinstance(event, ev.ChannelHungUp):
            return self._hangup(event, seq)
        if event.chan.uniqueid in self._ended:
            return Update()
        call, created = self._call(event.chan, event.at, seq)
        changed = self._annotate(call, event)
        update = Update(
            calls=[copy(call)] if (created or changed) else []
        )  # copy: faster than replace
        if isinstance(event, ev.AgentCompleted) and event.queue == self.queue:
            self._last_call[event.interface] = call
            if event.talk_s > 0:
                update.talk_s = event.talk_s
        return update

    def _call(self, chan: ev.ChannelInfo, at: datetime, seq: int) -> tuple[Call, bool]:
        call = self.calls.get(chan.uniqueid)
        created = call is None
        if call is None:
            call = Call(chan.uniqueid, chan.linkedid, chan.channel, chan.caller_number, "", at)
            self.calls[chan.uniqueid] = call
        call.seq = max(call.seq, seq)
        # an originated call shows its dialplan context only once answered; an unanswered one only its id
        if chan.context in _CALLBACK_CONTEXTS or chan.uniqueid.startswith(CALLBACK_ID_PREFIX):
            call.is_callback = True
        if not call.dialled_number and chan.exten.isdigit():
            call.dialled_number = chan.exten
        if not call.caller_number and chan.caller_number:
            call.caller_number = chan.caller_number
        if chan.menu:
            call.menu = chan.menu
        if chan.recording and not call.recording:
            call.recording = chan.recording
        if chan.bot_uuid and not call.bot_uuid:  # ChanVariable: a bot call seen first in a resync
            self._remember_bot(call, chan.bot_uuid)
        return call, created

    def _remember_bot(self, call: Call, bot_uuid: str) -> None:
        call.bot_uuid = bot_uuid
        self._bots[bot_uuid] = call
        while len(self._bots) > _TOMBSTONES:
            self._bots.popitem(last=False)

    def _annotate(self, call: Call, event: ev.DomainEvent) -> bool:
        """Apply a channel event to its call; True when the change belongs in the call log."""
        match event:
            case ev.CallerJoined(at=at, queue=queue):
                if call.queue_joined_at is not None and call.queue == queue:
                    return False
                call.queue, call.queue_joined_at = queue, at
                if (
                    call.bot_uuid is not None
                ):  # its bot session is known (UserEvent HotlineBot or ChanVariable)
                    call.from_bot = True
                return True
            case ev.CallerLeft(at=at) | ev.CallerAbandoned(at=at):
                return self._leave_queue(call, at)
            case ev.AgentRinging(interface=interface) if call.waiting:
                call.ringing |= {interface}
                return False
            case ev.AgentNoAnswer(interface=interface):
                call.ringing -= {interface}
                return False
            case ev.AgentCompleted(at=at):
                if call.talk_ended_at is not None or call.answered_at is None:
                    return False
                call.talk_ended_at = at
                return True
            case ev.AgentConnected(
                at=at, interface=interface, member_name=name, member_channel=member_channel
            ):
                if (
                    call.answered_at is not None
                    and call.agent_interface == interface
                    and call.talk_ended_at is None
                ):
                    return False
                # a new answer, also of a caller back in the queue (a blind transfer nobody answered)
                self._leave_queue(call, at)
                call.agent_channel, call.talk_ended_at = member_channel or None, None
                call.answered_at, call.agent_interface, call.agent_name = (
                    at,
                    interface,
                    name or interface,
                )
                leader = self.leaders.get(interface)
                call.answered_by = "leader" if leader else "agent"
                call.leader_name, call.leader_account = leader if leader else (None, None)
                return True
            case ev.BotStarted(bot_uuid=bot_uuid):
                if call.bot_uuid == bot_uuid:
                    return False
                self._remember_bot(call, bot_uuid)
                return True
            case ev.CallerBlocked():
                if call.blocked:
                    return False
                call.blocked = True
                return True
            case ev.RecordingStarted(chan=chan):
                if call.recording:
                    return False
                call.recording = chan.recording or f"{call.uniqueid}.wav"
                return True
        return False

    def _leave_queue(self, call: Call, at: datetime) -> bool:
        if call.queue_joined_at is None:
            return False
        call.queue_wait_s += max(0.0, (at - call.queue_joined_at).total_seconds())
        call.queue_joined_at = None
        call.left_ringing, call.ringing = bool(call.ringing), frozenset()
        return True

    def _leg_hangup(self, event: ev.ChannelHungUp) -> Update:
        """The answering agent's leg hung up while the caller stays (a blind transfer, 转接: Asterisk sends no
        AgentComplete when the caller is redirected out of the queue's bridge): the agent's part of the call ends."""
        call = self.calls.get(event.chan.linkedid)
        if (
            call is None
            or call.talk_ended_at is not None
            or call.agent_channel != event.chan.channel
        ):
            return Update()
        call.talk_ended_at = event.at
        return Update(calls=[copy(call)])

    def _hangup(self, event: ev.ChannelHungUp, seq: int) -> Update:
        if event.chan.uniqueid in self._ended:
            return Update()
        call, _ = self._call(
            event.chan, event.at, seq
        )  # creates it if never seen alive: logged anyway
        del self.calls[call.uniqueid]
        self._end(call, event.at, seq)
        return Update(calls=[call])

    def _end(self, call: Call, at: datetime, seq: int, *, by_resync: bool = False) -> None:
        self._leave_queue(call, at)
        if call.answered_at is not None and call.talk_ended_at is None:
            # The talk ends with the call at the latest: Asterisk may send the AgentComplete of a caller who hung
            # up on the agent after the caller's Hangup, and that agent's wrap-up still belongs to this call.
            call.talk_ended_at = at
            if call.agent_interface is not None:
                self._last_call[call.agent_interface] = call
        call.ended_at = at
        call.closed_by_resync = by_resync
        self._ended[call.uniqueid] = seq
        while len(self._ended) > _TOMBSTONES:
            self._ended.popitem(last=False)

    def _member(self, event: ev.MemberState, seq: int) -> Update:
        if event.queue != self.queue:
            return Update()
        old = self.members.get(event.interface)
        if old is not None and old.seq > seq:
            return Update()
        member = Member(
            event.interface,
            event.name,
            event.state_interface,
            event.penalty,
            event.paused,
            event.status,
            event.in_call,
            seq,
            event.paused_reason,
        )
        self.members[event.interface] = member
        update = Update(
            members_changed=old is None or old.penalty != event.penalty or old.name != event.name
        )
        update.calls = self._wrap_up(member, event.at)
        return update

    def _wrap_up(self, member: Member, at: datetime) -> list[Call]:
        """Follow a member into and out of wrap-up; when it ends, the time is added to the member's last call
        (counted from the end of its talk at the earliest). Returns that call to write, if any."""
        if member.wrapping_up:
            self._wrap_since.setdefault(member.interface, at)
            return []
        since = self._wrap_since.pop(member.interface, None)
        call = self._last_call.get(member.interface)
        if since is None or call is None or call.talk_ended_at is None:
            return []
        seconds = (at - max(since, call.talk_ended_at)).total_seconds()
        if seconds <= 0:
            return []
        call.wrap_up_s = round((call.wrap_up_s or 0.0) + seconds, 3)
        return [copy(call)]

    # -- resync ------------------------------------------------------------------------------------------------
    def resync(self, snap: Resync, now: datetime) -> Update:
        """Rebuild from a snapshot: calls missing from it are ended (best known outcome), unknown ones added."""
        update = Update(members_changed=True)
        live = {s.chan.uniqueid: s for s in snap.channels if s.chan.uniqueid == s.chan.linkedid}
        for uniqueid, call in list(self.calls.items()):
            if uniqueid not in live and call.seq < snap.channels_seq:
                del self.calls[uniqueid]
                self._end(call, now, snap.channels_seq, by_resync=True)
                update.calls.append(call)
        for uniqueid, snapshot in live.items():
            if uniqueid in self.calls or self._ended.get(uniqueid, -1) > snap.channels_seq:
                continue
            started = now - timedelta(seconds=snapshot.duration_s)
            call, _ = self._call(snapshot.chan, started, snap.channels_seq)
            update.calls.append(replace(call))
        self._resync_queue(snap, now, update)
        return update

    def _resync_queue(self, snap: Resync, now: datetime, update: Update) -> None:
        waiting = {w.uniqueid: w for w in snap.waiting if w.queue == self.queue}
        for call in self.calls.values():
            if (
                call.queue == self.queue
                and call.waiting
                and call.uniqueid not in waiting
                and call.seq < snap.queue_seq
            ):
                self._leave_queue(call, now)
                update.calls.append(replace(call))
        for w in waiting.values():
            known = self.calls.get(w.uniqueid)
            if known is None or known.seq > snap.queue_seq or known.waiting:
                continue
            known.queue, known.queue_joined_at = self.queue, now - timedelta(seconds=w.wait_s)
            update.calls.append(replace(known))
        members = {m.interface: m for m in snap.members if m.queue == self.queue}
        for interface, member in list(self.members.items()):
            if interface not in members and member.seq < snap.queue_seq:
                del self.members[interface]
        for m in members.values():
            self._member(m, snap.queue_seq)
        for p in snap.params:
            if (
                p.queue == self.queue
                and p.completed >= MIN_CALLS_FOR_TALK_TIME
                and p.talk_time_s > 0
            ):
                self.asterisk_talk_time_s = p.talk_time_s

    def set_leaders(self, leaders: Iterable[tuple[str, str, str]]) -> None:
        """The leaders whose answering window is open now: (interface, name, console account; "" for none)."""
        self.leaders = {interface: (name, account) for interface, name, account in leaders}
