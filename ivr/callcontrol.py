"""Call control over AMI: transfers (转接) and supervision (班长监听 / 密语 / 强插).

Only actions of the controller's least-privilege AMI account are used (``call``: Setvar, Redirect, Hangup;
``originate``: Originate into our own dialplan, never of an application), AstDB writes only through their own:

* **blind transfer** (直接转接): Setvar ``TRANSFER_DIAL`` / ``TRANSFER_ID`` / ``TRANSFER_RING`` on the caller's
  channel, then Redirect it to ``[hotline-transfer]``, which dials the target; the agent's leg ends with the
  queue's bridge. The caller's channel (its Uniqueid) stays the same, so the call keeps its ticket; a target
  that is busy or does not answer sends the caller back to the queue, ahead of new callers.
* **three-way call** (三方通话): Setvar ``CONF_ROOM`` on the caller's channel and the agent's leg, Redirect both
  (``ExtraChannel``) to ``[hotline-conference]`` (ConfBridge), and Originate the target into the same room.
* **attended transfer** (咨询转接): Setvar ``_TRANSFER_ID`` / ``_TRANSFER_DIAL`` / ``_TRANSFER_RING`` on the agent's
  leg, then ``Atxfer`` (``call``) of that leg to ``<id>#`` in ``[hotline-attended]``: Asterisk's own attended
  transfer holds the caller (music on hold) while the agent consults the target; the agent hanging up completes
  it, the target hanging up (or the agent's *1) brings the agent back to the caller. Asterisk reports a
  completed transfer with AMI AttendedTransfer, whose transferer carries TRANSFER_ID (manager.conf
  ``channelvars``); the target's leg hanging up before that means cancelled.
* **supervision**: Originate the supervisor's phone into ``[hotline-spy]``, which runs ChanSpy on the agent's leg
  with ``q`` (listen), ``qw`` (whisper: only the agent hears) or ``qB`` (barge: all three talk).
* **browser softphones' passwords**: short-lived, issued per fetch of an agent's softphone settings and kept in
  AstDB (:mod:`ivr.softphone_credentials`: DBPut / DBDelTree over its own AMI account, which has ``system`` only).

Each transfer is a row of ``call_transfers`` whose outcome the dialplan reports (UserEvent HotlineTransfer) or,
for an attended transfer, Asterisk (AttendedTransfer); each supervision is an immutable row of ``supervision_actions``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.errors import HotlineError
from config.settings import CallControlSettings
from ivr import events as ev
from ivr.ami import AmiActionError
from ivr.controller import HotlineController
from ivr.models import CallRecord, CallTransfer, SupervisionAction
from ivr.softphone_credentials import SoftphoneCredentials, softphone_credentials
from ivr.state import CONTROL_ID_PREFIX, Call, Member

log = logging.getLogger(__name__)

TRANSFER_CONTEXT = "hotline-transfer"
CONFERENCE_CONTEXT = "hotline-conference"
ATTENDED_CONTEXT = "hotline-attended"
# The target's leg of an attended transfer: Asterisk dials Local/<transfer id>@hotline-attended
ATTENDED_LEG = re.compile(rf"Local/([0-9]+)@{ATTENDED_CONTEXT}-[^;]*;1")
SPY_CONTEXT = "hotline-spy"
Mode = Literal["blind", "three_way", "attended"]
TargetKind = Literal["agent", "department", "emergency"]
SpyAction = Literal["listen", "whisper", "barge"]
SPY_OPTIONS: dict[SpyAction, str] = {"listen": "q", "whisper": "qw", "barge": "qB"}
SPY_LABELS: dict[SpyAction, str] = {"listen": "监听", "whisper": "密语", "barge": "强插"}
# DIALSTATUS of the target (or ANSWER when it joined the three-way call) → the recorded outcome
OUTCOMES = {
    "ANSWER": "answered",
    "BUSY": "busy",
    "NOANSWER": "no_answer",
    "CANCEL": "cancelled",
    "CONGESTION": "failed",
    "CHANUNAVAIL": "failed",
}
# AttendedTransfer Result → the recorded outcome of an attended transfer (Fail: the agent is back with the caller)
ATTENDED_OUTCOMES = {"Success": "completed", "Fail": "cancelled"}
# Seconds Asterisk waits for the target beyond the dialplan's ring time, so that Dial reports why it failed
ATTENDED_GRACE_S = 5
OUTCOME_LABELS = {
    "dialling": "呼叫中",
    "answered": "已接通",
    "completed": "已转接",
    "busy": "忙",
    "no_answer": "无应答",
    "cancelled": "已取消",
    "failed": "失败",
}
_NUMBER = re.compile(r"[0-9]{3,20}")


class CallControlError(HotlineError):
    code = "callcontrol.error"
    message = "通话控制失败"

    def __init__(self, detail: str = "") -> None:
        super().__init__(type(self).code, type(self).message)
        self.detail = detail


class NoActiveCall(CallControlError):
    code = "callcontrol.no_call"
    message = "该坐席当前没有正在进行的通话"


class InvalidTarget(CallControlError):
    code = "callcontrol.invalid_target"
    message = "转接目标无效（号码须为 3–20 位数字）"


class CallGone(CallControlError):
    code = "callcontrol.call_gone"
    message = "通话已结束，无法操作"


@dataclass(frozen=True)
class Target:
    """Whom a call goes to: ``number`` (digits) or an agent's username, and the dial string of its phone."""

    kind: TargetKind
    target: str
    label: str
    dial: str


@dataclass(frozen=True)
class Spy:
    """A supervisor's spy leg placed on an agent's call."""

    action: SpyAction
    uniqueid: str  # the caller's channel of the spied call
    spy_channel_id: str  # Uniqueid of the supervisor's leg
    agent_channel: str
    notified: bool


def outside_target(
    settings: CallControlSettings, kind: TargetKind, number: str, label: str
) -> Target:
    """A department's hotline or an emergency number, dialled through ``outside_template``."""
    if not _NUMBER.fullmatch(number):
        raise InvalidTarget(number)
    return Target(kind, number, label, settings.outside_template.format(number=number))


def emergency_target(settings: CallControlSettings, number: str) -> Target:
    """One of the configured one-key emergency numbers (应急联动)."""
    label = settings.emergency.get(number)
    if label is None:
        raise InvalidTarget(number)
    return outside_target(settings, "emergency", number, label)


def agent_target(username: str, label: str, phone: str) -> Target:
    """Another agent's phone (their queue member interface, e.g. ``PJSIP/<extension>``)."""
    return Target("agent", username, label, phone)


async def transfers_of(session: AsyncSession, ticket_no: str) -> list[CallTransfer]:
    """The transfers recorded for a ticket, oldest first."""
    stmt = select(CallTransfer).where(CallTransfer.ticket_no == ticket_no).order_by(CallTransfer.id)
    return list((await session.scalars(stmt)).all())


@dataclass(frozen=True)
class AgentOnBoard:
    """One queue member on the supervisors' live board (班长席)."""

    interface: str
    name: str
    state: str  # talking 通话中 / wrap_up 话后整理 / paused 示忙 / ready 空闲 / offline 离线
    state_label: str
    uniqueid: str | None  # the caller's channel of the current call
    talk_s: float | None  # how long the current call has lasted
    calls_today: int  # calls answered since local midnight


STATE_LABELS = {
    "talking": "通话中",
    "wrap_up": "话后整理",
    "paused": "示忙",
    "ready": "空闲",
    "offline": "离线",
}


def _state_label(member: Member, state: str) -> str:
    """示忙 shows the agent's pause reason (休息, 培训 …): 示忙（培训）."""
    label = STATE_LABELS[state]
    reason = member.paused_reason if state == "paused" else ""
    return f"{label}（{reason}）" if reason else label


def _member_state(member: Member, on_call: bool) -> str:
    if on_call:
        return "talking"
    if member.wrapping_up:
        return "wrap_up"
    if member.paused:
        return "paused"
    return "ready" if member.available else "offline"


class CallControl:
    """Transfers and supervision of live calls the controller knows; rows in the database for each."""

    def __init__(
        self,
        controller: HotlineController,
        settings: CallControlSettings,
        sessionmaker: async_sessionmaker[AsyncSession],
        clock: Callable[[], datetime],
        credentials: SoftphoneCredentials | None = None,
    ) -> None:
        """``credentials``: the browser softphones' SIP passwords (default: on the AstDB account of the
        controller's Asterisk, :func:`ivr.softphone_credentials.softphone_credentials`); started with the
        controller (:func:`hotline.wiring.start_telephony`)."""
        self.controller = controller
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.clock = clock
        self._outcomes = asyncio.Lock()  # outcomes in the order Asterisk reported them
        self._outcome_listeners: list[Callable[[CallTransfer], object]] = []
        self.credentials = credentials or softphone_credentials(controller.settings)

    # -- the agent's call ------------------------------------------------------------------------------------------
    def call_of(self, agent_interface: str) -> Call:
        """The live call the agent on ``agent_interface`` is talking on."""
        for call in self.controller.state.talking_calls():
            if call.agent_interface == agent_interface and call.agent_channel:
                return call
        raise NoActiveCall(agent_interface)

    # -- browser softphones' short-lived SIP passwords -------------------------------------------------------------
    async def provision_softphone(self, extension: str, password: str, ttl_s: float) -> None:
        """``extension`` registers with ``password`` for ``ttl_s`` seconds (:mod:`ivr.softphone_credentials`)."""
        await self.credentials.issue(extension, password, ttl_s)

    async def revoke_softphone(self, extension: str) -> None:
        """``extension``'s password stops working now."""
        await self.credentials.revoke(extension)

    # -- transfers ------------------------------------------------------------------------------------------------
    async def transfer(
        self, agent_interface: str, target: Target, mode: Mode, *, by: str, ticket_no: str | None
    ) -> CallTransfer:
        """Transfer the agent's call to ``target``: blind, three-way or attended; the row records who, to whom,
        when."""
        call = self.call_of(agent_interface)
        ticket = ticket_no or call.ticket_no
        row = await self._record(call, target, mode, by, ticket)
        transfer_id = str(row.id)
        try:
            if mode == "blind":
                await self._blind(call, target, transfer_id)
            elif mode == "attended":
                await self._attended(call, target, transfer_id)
            else:
                await self._three_way(call, target, transfer_id)
        except AmiActionError as exc:  # the caller or the agent hung up meanwhile
            await self.finish(transfer_id, "failed")
            raise CallGone(exc.detail) from None
        if ticket and ticket != call.ticket_no:
            await self.controller.link_ticket(call.uniqueid, ticket)
        return row

    async def _blind(self, call: Call, target: Target, transfer_id: str) -> None:
        await self._set(
            call.channel,
            TRANSFER_DIAL=target.dial,
            TRANSFER_ID=transfer_id,
            TRANSFER_RING=str(self.settings.ring_timeout_s),
        )
        await self.controller.ami.action(
            {
                "Action": "Redirect",
                "Channel": call.channel,
                "Context": TRANSFER_CONTEXT,
                "Exten": "s",
                "Priority": 1,
            }
        )

    async def _three_way(self, call: Call, target: Target, transfer_id: str) -> None:
        assert call.agent_channel is not None  # call_of() returns only calls with the agent's leg
        room = f"hotline-{call.uniqueid}"
        for channel in (call.channel, call.agent_channel):
            await self._set(channel, CONF_ROOM=room)
        await self.controller.ami.action(
            {
                "Action": "Redirect",
                "Channel": call.channel,
                "ExtraChannel": call.agent_channel,
                "Context": CONFERENCE_CONTEXT,
                "Exten": "s",
                "Priority": 1,
                "ExtraContext": CONFERENCE_CONTEXT,
                "ExtraExten": "s",
                "ExtraPriority": 1,
            }
        )
        await self.controller.originate(
            target.dial,
            CONFERENCE_CONTEXT,
            variables={"CONF_ROOM": room, "TRANSFER_ID": transfer_id},
            caller_id=call.caller_number,
            timeout_s=self.settings.ring_timeout_s,
            channel_id=f"{CONTROL_ID_PREFIX}{uuid.uuid4()}",
        )

    async def _attended(self, call: Call, target: Target, transfer_id: str) -> None:
        assert call.agent_channel is not None
        ring_s = self.settings.ring_timeout_s
        await self._set(
            call.agent_channel,
            _TRANSFER_ID=transfer_id,
            _TRANSFER_DIAL=target.dial,
            _TRANSFER_RING=str(ring_s),
            **{"FEATURE(atxfernoanswertimeout)": str(ring_s + ATTENDED_GRACE_S)},
        )
        await self.controller.ami.action(
            {
                "Action": "Atxfer",
                "Channel": call.agent_channel,
                "Exten": f"{transfer_id}#",  # "#" ends the number: no digit timeout
                "Context": ATTENDED_CONTEXT,
            }
        )

    async def _set(self, channel: str, **variables: str) -> None:
        for name, value in variables.items():
            await self.controller.ami.action(
                {"Action": "Setvar", "Channel": channel, "Variable": name, "Value": value}
            )

    async def _record(
        self, call: Call, target: Target, mode: Mode, by: str, ticket_no: str | None
    ) -> CallTransfer:
        async with self.sessionmaker() as session, session.begin():
            row = CallTransfer(
                uniqueid=call.uniqueid,
                ticket_no=ticket_no,
                mode=mode,
                target_kind=target.kind,
                target=target.target,
                target_label=target.label,
                by_user=by,
                at=self.clock(),
                outcome="dialling",
            )
            session.add(row)
        return row

    def add_outcome_listener(self, listener: Callable[[CallTransfer], object]) -> None:
        """``listener`` hears each transfer once its outcome is recorded (the console tells the agent)."""
        self._outcome_listeners.append(listener)

    async def finish(self, transfer_id: str, outcome: str) -> None:
        """Record how transfer ``transfer_id`` ended; the first outcome after dialling stays and is told to the
        outcome listeners once committed."""
        if not transfer_id.isdigit():
            return
        async with self.sessionmaker() as session, session.begin():
            row = await session.get(CallTransfer, int(transfer_id))
            if row is None or row.outcome != "dialling":
                return
            row.outcome, row.outcome_at = outcome, self.clock()
        for listener in self._outcome_listeners:
            listener(row)

    async def on_event(self, event: ev.DomainEvent) -> None:
        """The dialplan's UserEvent HotlineTransfer (the target answered, or why not), Asterisk's
        AttendedTransfer and the end of an attended transfer's target leg, recorded in the order they came
        (the first outcome stays)."""
        if isinstance(event, ev.TransferResult):
            transfer_id, outcome = event.transfer_id, OUTCOMES.get(event.status, "failed")
        elif isinstance(event, ev.AttendedTransferEnded):
            transfer_id, outcome = event.transfer_id, ATTENDED_OUTCOMES.get(event.result, "failed")
        elif isinstance(event, ev.ChannelHungUp) and (
            leg := ATTENDED_LEG.fullmatch(event.chan.channel)
        ):
            transfer_id, outcome = leg[1], "cancelled"
        else:
            return
        async with self._outcomes:
            await self.finish(transfer_id, outcome)

    async def board(self, tz: ZoneInfo) -> list[AgentOnBoard]:
        """Every queue member: state, current call and its duration, calls answered today (local day)."""
        now = self.clock()
        midnight = datetime.combine(now.astimezone(tz).date(), time(0), tz)
        stmt = (
            select(CallRecord.agent_interface, func.count())
            .where(CallRecord.answered_at >= midnight, CallRecord.agent_interface.is_not(None))
            .group_by(CallRecord.agent_interface)
        )
        async with self.sessionmaker() as session:
            today = {str(i): int(n) for i, n in (await session.execute(stmt)).all()}
        calls = {c.agent_interface: c for c in self.controller.state.talking_calls()}
        board = []
        for member in self.controller.state.members.values():
            call = calls.get(member.interface)
            state = _member_state(member, call is not None)
            board.append(
                AgentOnBoard(
                    interface=member.interface,
                    name=member.name,
                    state=state,
                    state_label=_state_label(member, state),
                    uniqueid=call.uniqueid if call else None,
                    talk_s=round((now - call.answered_at).total_seconds(), 1)
                    if call and call.answered_at
                    else None,
                    calls_today=today.get(member.interface, 0),
                )
            )
        return board

    # -- supervision -------------------------------------------------------------------------------------------
    async def spy(
        self,
        agent_interface: str,
        action: SpyAction,
        *,
        agent: str,
        supervisor: str,
        role: str,
        phone: str,
    ) -> Spy:
        """Ring the supervisor's ``phone`` into ChanSpy on the agent's leg; the audit row is written before the
        call is placed."""
        call = self.call_of(agent_interface)
        assert call.agent_channel is not None
        notified = self.settings.notify_agent
        async with self.sessionmaker() as session, session.begin():
            session.add(
                SupervisionAction(
                    at=self.clock(),
                    supervisor=supervisor,
                    role=role,
                    action=action,
                    agent=agent,
                    uniqueid=call.uniqueid,
                    notified=notified,
                )
            )
        spy_id = f"{CONTROL_ID_PREFIX}{uuid.uuid4()}"
        await self.controller.originate(
            phone,
            SPY_CONTEXT,
            variables={"SPY_TARGET": call.agent_channel, "SPY_OPTIONS": SPY_OPTIONS[action]},
            caller_id=f"{SPY_LABELS[action]} <{agent}>",
            timeout_s=self.settings.ring_timeout_s,
            channel_id=spy_id,
        )
        return Spy(action, call.uniqueid, spy_id, call.agent_channel, notified)
