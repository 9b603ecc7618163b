"""Call control (ivr/callcontrol.py): the AMI actions of transfers and supervision, their records, and what the
state makes of a transfer (the agent's part ends when only the agent's leg hangs up)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from ivr import events as ev
from ivr.ami import AmiActionError
from ivr.callcontrol import (
    CallControl,
    CallGone,
    InvalidTarget,
    NoActiveCall,
    emergency_target,
    outside_target,
)
from ivr.controller import HotlineController
from ivr.models import CallTransfer, SupervisionAction
from ivr.softphone_credentials import softphone_credentials
from ivr.state import CONTROL_ID_PREFIX, HotlineState

NOW = datetime(2025, 3, 3, 2, 0, tzinfo=UTC)
AGENT = "PJSIP/6001"
CALLER_CHANNEL = "PJSIP/carrier-00000007"
AGENT_LEG = "PJSIP/6001-00000008"


def chan(uniqueid: str, channel: str, linkedid: str = "1741000000.1") -> ev.ChannelInfo:
    return ev.ChannelInfo(uniqueid, linkedid, channel, "13812345678", "hotline-inbound", "12345")


CALLER = chan("1741000000.1", CALLER_CHANNEL)


def answered_state() -> HotlineState:
    """A caller the agent on ``AGENT`` answered (its leg ``AGENT_LEG``)."""
    state = HotlineState("hotline")
    state.apply(ev.CallerJoined(NOW, CALLER, "hotline", 1), 1)
    state.apply(
        ev.AgentConnected(NOW, CALLER, "hotline", AGENT, "王芳", 3.0, member_channel=AGENT_LEG), 2
    )
    return state


class FakeAmi:
    def __init__(self, refuse: bool = False) -> None:
        self.actions: list[dict[str, Any]] = []
        self.refuse = refuse

    async def action(self, action: dict[str, Any]) -> None:
        self.actions.append(action)
        if self.refuse:
            raise AmiActionError("No such channel")


class FakeController:
    """What call control uses of the controller: AMI, the state, Originate, linking a ticket."""

    def __init__(self, state: HotlineState, ami: FakeAmi) -> None:
        self.state = state
        self.ami = ami
        self.originated: list[dict[str, Any]] = []
        self.linked: dict[str, str] = {}

    async def originate(self, channel: str, context: str, **kw: Any) -> None:
        self.originated.append({"channel": channel, "context": context} | kw)

    async def link_ticket(self, uniqueid: str, ticket_no: str) -> None:
        self.linked[uniqueid] = ticket_no


def control_for(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    state: HotlineState | None = None,
    ami: FakeAmi | None = None,
) -> tuple[CallControl, FakeController]:
    fake = FakeController(state or answered_state(), ami or FakeAmi())
    control = CallControl(
        cast(HotlineController, fake),
        settings.callcontrol,
        sessionmaker,
        lambda: NOW,
        softphone_credentials(settings),  # its own AMI connection, never started here
    )
    return control, fake


def test_agent_connect_names_the_agents_leg_and_user_event_reports_a_transfer() -> None:
    connect = ev.parse_event(
        {
            "Event": "AgentConnect",
            "Uniqueid": "1741000000.1",
            "Linkedid": "1741000000.1",
            "Channel": CALLER_CHANNEL,
            "Queue": "hotline",
            "Interface": AGENT,
            "DestChannel": AGENT_LEG,
        },
        NOW,
    )
    assert isinstance(connect, ev.AgentConnected) and connect.member_channel == AGENT_LEG
    result = ev.parse_event(
        {
            "Event": "UserEvent",
            "UserEvent": "HotlineTransfer",
            "Uniqueid": "1741000000.9",
            "Linkedid": "1741000000.1",
            "Channel": "PJSIP/trunk-00000009",
            "TransferId": "7",
            "Status": "NOANSWER",
        },
        NOW,
    )
    assert isinstance(result, ev.TransferResult)
    assert (result.transfer_id, result.status) == ("7", "NOANSWER")


def test_the_agents_part_ends_when_only_the_agents_leg_hangs_up() -> None:
    """A blind transfer redirects the caller out of the queue's bridge: Asterisk sends no AgentComplete, the
    agent's leg just hangs up; the agent is no longer talking, the caller's call goes on."""
    state = answered_state()
    assert [c.agent_channel for c in state.talking_calls()] == [AGENT_LEG]
    later = NOW + timedelta(seconds=40)
    update = state.apply(ev.ChannelHungUp(later, chan("1741000000.2", AGENT_LEG), "16"), 3)
    call = state.calls[CALLER.uniqueid]
    assert call.talk_ended_at == later and call.ended_at is None
    assert update.calls and not state.talking_calls()
    other = state.apply(ev.ChannelHungUp(later, chan("1741000000.5", "PJSIP/9-01"), "16"), 4)
    assert not other.calls  # another leg of the call: nothing changes


def test_legs_placed_by_call_control_are_never_calls_of_their_own() -> None:
    state = HotlineState("hotline")
    leg = f"{CONTROL_ID_PREFIX}0b7c"
    update = state.apply(ev.CallerJoined(NOW, chan(leg, "PJSIP/6009-01", leg), "hotline", 1), 1)
    assert not update.calls and state.calls == {}


def test_targets_are_digits_or_configured_emergency_numbers(settings: Settings) -> None:
    cfg = settings.callcontrol.model_copy(update={"outside_template": "PJSIP/{number}@trunk"})
    assert outside_target(cfg, "department", "66010003", "市教育局").dial == "PJSIP/66010003@trunk"
    assert emergency_target(cfg, "120").label == "医疗急救"
    for bad in ("6601&Local/1@x", "12", "1" * 21):
        with pytest.raises(InvalidTarget):
            outside_target(cfg, "department", bad, "x")
    with pytest.raises(InvalidTarget):
        emergency_target(cfg, "12345")


async def test_a_blind_transfer_redirects_the_callers_channel_and_records_the_outcome(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    control, fake = control_for(settings, sessionmaker)
    target = outside_target(settings.callcontrol, "department", "66010003", "市教育局")
    row = await control.transfer(
        AGENT, target, "blind", by="agent1", ticket_no="12345-20250303-00001"
    )
    sets = {a["Variable"]: a["Value"] for a in fake.ami.actions if a["Action"] == "Setvar"}
    assert sets == {
        "TRANSFER_DIAL": target.dial,
        "TRANSFER_ID": str(row.id),
        "TRANSFER_RING": str(settings.callcontrol.ring_timeout_s),
    }
    assert all(a["Channel"] == CALLER_CHANNEL for a in fake.ami.actions)
    redirect = fake.ami.actions[-1]
    assert (redirect["Action"], redirect["Context"], redirect["Exten"]) == (
        "Redirect",
        "hotline-transfer",
        "s",
    )
    assert fake.linked == {CALLER.uniqueid: "12345-20250303-00001"}  # the call keeps its ticket
    await control.on_event(ev.TransferResult(NOW, CALLER, str(row.id), "ANSWER"))
    await control.on_event(ev.TransferResult(NOW, CALLER, str(row.id), "NOANSWER"))  # first stays
    async with sessionmaker() as db:
        stored = await db.get(CallTransfer, row.id)
    assert stored is not None
    assert (stored.outcome, stored.by_user, stored.target, stored.target_label) == (
        "answered",
        "agent1",
        "66010003",
        "市教育局",
    )


async def test_a_three_way_call_puts_both_legs_and_the_target_in_one_conference(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    control, fake = control_for(settings, sessionmaker)
    target = emergency_target(settings.callcontrol, "110")
    row = await control.transfer(AGENT, target, "three_way", by="agent1", ticket_no=None)
    room = f"hotline-{CALLER.uniqueid}"
    rooms = [(a["Channel"], a["Value"]) for a in fake.ami.actions if a["Action"] == "Setvar"]
    assert rooms == [(CALLER_CHANNEL, room), (AGENT_LEG, room)]
    redirect = fake.ami.actions[-1]
    assert (redirect["Channel"], redirect["ExtraChannel"], redirect["Context"]) == (
        CALLER_CHANNEL,
        AGENT_LEG,
        "hotline-conference",
    )
    [placed] = fake.originated
    assert placed["context"] == "hotline-conference" and placed["channel"] == target.dial
    assert placed["variables"] == {"CONF_ROOM": room, "TRANSFER_ID": str(row.id)}
    assert placed["channel_id"].startswith(CONTROL_ID_PREFIX)
    assert (row.mode, row.target_kind, row.outcome) == ("three_way", "emergency", "dialling")


def test_attended_transfer_events_name_the_transfer_by_the_agents_leg() -> None:
    """AMI AttendedTransfer carries the transferer's channel variables (manager.conf channelvars)."""
    headers = {
        "Event": "AttendedTransfer",
        "Result": "Success",
        "OrigTransfererChannel": AGENT_LEG,
        "OrigTransfererUniqueid": "1741000000.2",
        "OrigTransfererChanVariable": ["HOTLINE_MENU=human", "TRANSFER_ID=12"],
        "TransfereeUniqueid": CALLER.uniqueid,
        "DestType": "Bridge",
    }
    done = ev.parse_event(headers, NOW)
    assert isinstance(done, ev.AttendedTransferEnded) and (done.transfer_id, done.result) == (
        "12",
        "Success",
    )
    assert (
        ev.parse_event(headers | {"OrigTransfererChanVariable": "HOTLINE_MENU=human"}, NOW) is None
    )
    assert not answered_state().apply(done, 3).calls  # no channel of a call: the state is unchanged


async def test_an_attended_transfer_sends_atxfer_from_the_agents_leg_and_records_the_outcome(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    control, fake = control_for(settings, sessionmaker)
    target = outside_target(settings.callcontrol, "department", "66010003", "市教育局")
    row = await control.transfer(AGENT, target, "attended", by="agent1", ticket_no=None)
    ring = settings.callcontrol.ring_timeout_s
    sets = {a["Variable"]: a["Value"] for a in fake.ami.actions if a["Action"] == "Setvar"}
    assert sets == {
        "_TRANSFER_ID": str(row.id),
        "_TRANSFER_DIAL": target.dial,
        "_TRANSFER_RING": str(ring),
        "FEATURE(atxfernoanswertimeout)": str(ring + 5),
    }
    assert all(a["Channel"] == AGENT_LEG for a in fake.ami.actions)
    atxfer = fake.ami.actions[-1]
    assert (atxfer["Action"], atxfer["Exten"], atxfer["Context"]) == (
        "Atxfer",
        f"{row.id}#",
        "hotline-attended",
    )
    await control.on_event(ev.AttendedTransferEnded(NOW, str(row.id), "Success"))
    async with sessionmaker() as db:
        stored = await db.get(CallTransfer, row.id)
    assert stored is not None and (stored.mode, stored.outcome) == ("attended", "completed")


async def test_an_attended_transfer_is_cancelled_when_the_targets_leg_ends_first(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """No AttendedTransfer when the target hangs up or the agent cancels (*1): the target's leg
    Local/<id>@hotline-attended just ends. A target that never answered is reported first (NOANSWER); handled at
    once, the outcomes keep Asterisk's order, and a later end of the leg changes nothing."""
    control, _ = control_for(settings, sessionmaker)
    target = outside_target(settings.callcontrol, "department", "66010003", "市教育局")
    rows = [
        await control.transfer(AGENT, target, "attended", by="agent1", ticket_no=None)
        for _ in range(3)
    ]

    def leg_ended(row: CallTransfer) -> ev.ChannelHungUp:
        return ev.ChannelHungUp(
            NOW, chan("1741000000.9", f"Local/{row.id}@hotline-attended-0000001a;1"), "16"
        )

    await asyncio.gather(
        control.on_event(ev.TransferResult(NOW, CALLER, str(rows[0].id), "NOANSWER")),
        control.on_event(leg_ended(rows[0])),
        control.on_event(leg_ended(rows[1])),
        control.on_event(ev.AttendedTransferEnded(NOW, str(rows[2].id), "Success")),
        control.on_event(leg_ended(rows[2])),  # optimised away after the transfer
        control.on_event(ev.ChannelHungUp(NOW, chan("1741000000.2", AGENT_LEG), "16")),
    )
    async with sessionmaker() as db:
        outcomes = [(await db.get(CallTransfer, r.id)).outcome for r in rows]  # type: ignore[union-attr]
    assert outcomes == ["no_answer", "cancelled", "completed"]


async def test_the_outcome_listeners_hear_each_transfer_once_its_outcome_is_recorded(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """The console tells the agent (their 完成转接 / 取消转接 buttons go): once per transfer, the first outcome."""
    control, _ = control_for(settings, sessionmaker)
    heard: list[tuple[int, str, str]] = []
    control.add_outcome_listener(lambda row: heard.append((row.id, row.by_user, row.outcome)))
    target = outside_target(settings.callcontrol, "department", "66010003", "市教育局")
    row = await control.transfer(AGENT, target, "attended", by="agent1", ticket_no=None)
    assert heard == []  # dialling is no outcome
    await control.on_event(ev.AttendedTransferEnded(NOW, str(row.id), "Success"))
    await control.on_event(ev.AttendedTransferEnded(NOW, str(row.id), "Fail"))  # the first stays
    assert heard == [(row.id, "agent1", "completed")]


async def test_no_transfer_without_a_call_and_a_vanished_call_is_recorded_as_failed(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    idle, _ = control_for(settings, sessionmaker, state=HotlineState("hotline"))
    target = emergency_target(settings.callcontrol, "119")
    with pytest.raises(NoActiveCall):
        await idle.transfer(AGENT, target, "blind", by="agent1", ticket_no=None)
    gone, _ = control_for(settings, sessionmaker, ami=FakeAmi(refuse=True))
    with pytest.raises(CallGone):
        await gone.transfer(AGENT, target, "blind", by="agent1", ticket_no=None)
    async with sessionmaker() as db:
        assert [t.outcome for t in (await db.scalars(select(CallTransfer))).all()] == ["failed"]


@pytest.mark.parametrize(
    ("action", "options"), [("listen", "q"), ("whisper", "qw"), ("barge", "qB")]
)
async def test_a_supervisor_spies_through_chanspy_and_is_audited(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], action: Any, options: str
) -> None:
    control, fake = control_for(settings, sessionmaker)
    spy = await control.spy(
        AGENT, action, agent="agent1", supervisor="banzhang", role="supervisor", phone="PJSIP/6100"
    )
    [placed] = fake.originated
    assert (placed["channel"], placed["context"]) == ("PJSIP/6100", "hotline-spy")
    assert placed["variables"] == {"SPY_TARGET": AGENT_LEG, "SPY_OPTIONS": options}
    assert placed["channel_id"] == spy.spy_channel_id
    async with sessionmaker() as db:
        [audit] = (await db.scalars(select(SupervisionAction))).all()
        assert (audit.supervisor, audit.action, audit.agent, audit.uniqueid, audit.notified) == (
            "banzhang",
            action,
            "agent1",
            CALLER.uniqueid,
            settings.callcontrol.notify_agent,
        )
        audit.action = "listen"
        with pytest.raises(RuntimeError, match="immutable"):
            await db.commit()


async def test_the_board_shows_each_agents_state_and_current_call(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    state = answered_state()
    member = ev.MemberState(
        at=NOW,
        queue="hotline",
        interface=AGENT,
        name="王芳",
        state_interface=AGENT,
        penalty=1,
        paused=False,
        status=2,
        in_call=True,
    )
    idle = ev.MemberState(
        at=NOW,
        queue="hotline",
        interface="PJSIP/6002",
        name="李娜",
        state_interface="PJSIP/6002",
        penalty=1,
        paused=True,
        status=1,
        in_call=False,
        paused_reason="培训",
    )
    state.apply(member, 3)
    state.apply(idle, 4)
    control, _ = control_for(settings, sessionmaker, state=state)
    board = {a.interface: a for a in await control.board(ZoneInfo(settings.timezone))}
    assert (board[AGENT].state_label, board[AGENT].uniqueid, board[AGENT].talk_s) == (
        "通话中",
        CALLER.uniqueid,
        0.0,
    )
    assert board["PJSIP/6002"].state == "paused" and board["PJSIP/6002"].uniqueid is None
    assert board["PJSIP/6002"].state_label == "示忙（培训）"  # the reason the agent chose
