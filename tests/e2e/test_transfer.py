"""Transfers (转接) on the real Asterisk: a blind transfer to a department's hotline (承办单位电话, from the
dispatch catalogue) reaches that number and the ticket records it; one key takes the caller to 110, or to another
agent; a three-way call (三方通话) bridges caller, agent and department in one ConfBridge; an attended transfer
(咨询转接) holds the caller while the agent consults the department, and joins them when the agent hangs up.
Outside numbers answer in ``[test-department]``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select

from config import Settings
from ivr import events as ev
from ivr.callcontrol import Target, agent_target, emergency_target, outside_target
from ivr.controller import HotlineController
from ivr.models import CallRecord, CallTransfer
from tests.e2e.callcontrol_support import (
    AGENT,
    AnsweredCall,
    answered_call,
    callcontrol_settings,
)
from tests.e2e.conftest import AmiEvents
from tests.e2e.controller_support import citizen, hang_up, new_number
from tests.settings_support import SETTINGS
from tickets.dispatch_catalogue import load_catalogue
from tickets.services import Actor, TicketDraft, create_ticket

pytestmark = [pytest.mark.pbx, pytest.mark.slow]
DEPARTMENT = "市教育局"


def department_phone() -> str:
    phone = load_catalogue(SETTINGS).phone_of(DEPARTMENT)
    assert phone, f"{DEPARTMENT} has no phone in the dispatch catalogue"
    return phone


def answered_by_department(phone: str) -> Any:
    return lambda e: (
        e.event == "UserEvent"
        and e.get("UserEvent") == "TestDepartmentAnswered"
        and (e.get("Number") == phone)
    )


async def test_a_blind_transfer_to_a_department_reaches_its_number_and_the_ticket_records_it(
    settings: Settings, pbx: Any, local_pbx: Any, database: Any, ami_events: AmiEvents
) -> None:
    cfg = callcontrol_settings(settings, pbx)
    phone = department_phone()
    async with answered_call(cfg, database, local_pbx, pbx) as call:
        async with database() as db:
            ticket = await create_ticket(
                db,
                TicketDraft(
                    channel="phone",
                    caller_phone=call.caller,
                    content="孩子入学学位咨询，需教育局答复",
                ),
                Actor("话务员甲", "agent"),
                settings=SETTINGS,
            )
        target = outside_target(cfg.callcontrol, "department", phone, DEPARTMENT)
        row = await call.control.transfer(
            AGENT, target, "blind", by="agent1", ticket_no=ticket.ticket_no
        )
        answered = await ami_events.wait_for(answered_by_department(phone))
        assert answered.get("Linkedid") == call.uniqueid  # the caller's own call went there
        await call.seen.wait(
            lambda e: isinstance(e, ev.TransferResult) and e.transfer_id == str(row.id)
        )
        await (
            call.seen.wait(  # the agent's leg left with the queue's bridge: the agent is free again
                lambda e: (
                    isinstance(e, ev.ChannelHungUp)
                    and e.chan.channel == call.connected.member_channel
                )
            )
        )
        assert call.ctrl.state.calls[call.uniqueid].talk_ended_at is not None
        assert not call.ctrl.state.talking_calls()
        await call.ctrl.flush()
    async with database() as db:
        transfers = (
            await db.scalars(select(CallTransfer).where(CallTransfer.ticket_no == ticket.ticket_no))
        ).all()
        logged = await db.scalar(select(CallRecord).where(CallRecord.uniqueid == call.uniqueid))
    assert [
        (t.mode, t.target_kind, t.target, t.target_label, t.by_user, t.outcome) for t in transfers
    ] == [("blind", "department", phone, DEPARTMENT, "agent1", "answered")]
    assert transfers[0].uniqueid == call.uniqueid and transfers[0].outcome_at is not None
    assert (
        logged is not None and logged.ticket_no == ticket.ticket_no
    )  # the transferred call keeps its ticket


@pytest.mark.parametrize("kind", ["emergency", "agent"])
async def test_a_one_key_emergency_transfer_or_one_to_another_agent_takes_the_caller_there(
    settings: Settings,
    pbx: Any,
    local_pbx: Any,
    database: Any,
    ami_events: AmiEvents,
    kind: str,
) -> None:
    """110 with one key (应急联动, dialled through ``outside_template``), or another agent's phone."""
    cfg = callcontrol_settings(settings, pbx)
    other_agent = "Local/6842@test-agent/n"
    target = (
        emergency_target(cfg.callcontrol, "110")
        if kind == "emergency"
        else agent_target("agent2", "话务员乙", other_agent)
    )
    async with answered_call(cfg, database, local_pbx, pbx) as call:
        row = await call.control.transfer(AGENT, target, "blind", by="agent1", ticket_no=None)
        if kind == "emergency":
            reached = await ami_events.wait_for(answered_by_department("110"))
        else:
            reached = await ami_events.wait_for(
                lambda e: (
                    e.event == "Newchannel"
                    and str(e.get("Channel")).startswith("Local/6842@test-agent-")
                )
            )
        assert reached.get("Linkedid") == call.uniqueid  # the caller's own call went there
        result = await call.seen.wait(
            lambda e: isinstance(e, ev.TransferResult) and e.transfer_id == str(row.id)
        )
        assert isinstance(result, ev.TransferResult) and result.status == "ANSWER"
    async with database() as db:
        stored = await db.get(CallTransfer, row.id)
    assert stored is not None
    assert (stored.target_kind, stored.target, stored.outcome) == (
        kind,
        "110" if kind == "emergency" else "agent2",
        "answered",
    )


async def test_a_three_way_call_bridges_caller_agent_and_department_together(
    settings: Settings, pbx: Any, local_pbx: Any, database: Any, ami_events: AmiEvents
) -> None:
    cfg = callcontrol_settings(settings, pbx)
    phone = department_phone()
    async with answered_call(cfg, database, local_pbx, pbx) as call:
        room = f"hotline-{call.uniqueid}"
        row = await call.control.transfer(
            AGENT,
            outside_target(cfg.callcontrol, "department", phone, DEPARTMENT),
            "three_way",
            by="agent1",
            ticket_no=None,
        )
        joined: set[str] = set()
        for _ in range(3):
            event = await ami_events.wait_for(
                lambda e: (
                    e.event == "ConfbridgeJoin"
                    and e.get("Conference") == room
                    and e.get("Channel") not in joined
                )
            )
            joined.add(str(event.get("Channel")))
        caller_channel, agent_channel = call.connected.chan.channel, call.connected.member_channel
        department = joined - {caller_channel, agent_channel}
        assert {caller_channel, agent_channel} <= joined and len(department) == 1
        assert department.pop().startswith(f"Local/{phone}@test-department-")
        await call.seen.wait(
            lambda e: isinstance(e, ev.TransferResult) and e.transfer_id == str(row.id)
        )
    async with database() as db:
        stored = await db.get(CallTransfer, row.id)
    assert stored is not None and (stored.mode, stored.outcome) == ("three_way", "answered")


async def bridged_pairs(ctrl: HotlineController) -> dict[str, set[str]]:
    """Who hears whom right now: channel → its neighbours (same bridge, or the other half of a Local channel)."""
    listing = await ctrl.ami.action({"Action": "CoreShowChannels"}, as_list=True)
    assert isinstance(listing, list)
    channels = [m for m in listing if m.get("Event") == "CoreShowChannel"]
    graph: dict[str, set[str]] = {str(c.get("Channel")): set() for c in channels}
    by_bridge: dict[str, set[str]] = {}
    for c in channels:
        if c.get("BridgeId"):
            by_bridge.setdefault(str(c.get("BridgeId")), set()).add(str(c.get("Channel")))
    for members in by_bridge.values():
        for name in members:
            graph[name] |= members - {name}
    for name in graph:
        twin = name[:-1] + ("2" if name.endswith(";1") else "1")
        if name.startswith("Local/") and twin in graph:
            graph[name].add(twin)
    return graph


def linked(graph: dict[str, set[str]], start: str, goal: Callable[[str], bool]) -> bool:
    """Whether audio flows from channel ``start`` to a channel ``goal`` accepts, through bridges and Local halves."""
    seen, todo = {start}, [start]
    while todo:
        name = todo.pop()
        if goal(name):
            return True
        fresh = graph.get(name, set()) - seen
        seen |= fresh
        todo += fresh
    return False


class Consultation:
    """An attended transfer to the department, consulting: the caller on hold, the agent talking with the
    department. ``hold(event)`` matches the caller's MusicOnHoldStart / Stop from ``since`` on: the transfer's
    start, then its hold (the caller heard the queue's music before)."""

    def __init__(
        self, call: AnsweredCall, ami_events: AmiEvents, row: CallTransfer, since: int
    ) -> None:
        self.call, self.ami_events, self.row, self.since = call, ami_events, row, since
        self.caller, self.agent = call.connected.chan.channel, call.connected.member_channel

    def hold(self, event: str) -> Callable[[Any], bool]:
        return lambda e: (
            e.event == event
            and e.get("Channel") == self.caller
            and any(e is later for later in self.ami_events.events[self.since :])
        )

    async def ended(self, controller_saw: Callable[[ev.DomainEvent], bool]) -> None:
        """The caller is off hold, and the controller saw how the transfer ended."""
        await self.ami_events.wait_for(self.hold("MusicOnHoldStop"))
        await self.call.seen.wait(controller_saw)


async def consult(call: AnsweredCall, cfg: Settings, ami_events: AmiEvents) -> Consultation:
    phone = department_phone()
    since = len(ami_events.events)
    row = await call.control.transfer(
        AGENT,
        outside_target(cfg.callcontrol, "department", phone, DEPARTMENT),
        "attended",
        by="agent1",
        ticket_no=None,
    )
    consultation = Consultation(call, ami_events, row, since)
    held = await ami_events.wait_for(consultation.hold("MusicOnHoldStart"))
    # from the transfer's hold on: the Stop of the queue's music may be reported after the transfer began
    consultation.since = next(i for i, e in enumerate(ami_events.events) if e is held)
    await ami_events.wait_for(  # the department answered and talks with the agent
        lambda e: e.event == "BridgeEnter" and at_department(str(e.get("Channel")))
    )
    graph = await bridged_pairs(call.ctrl)
    assert linked(graph, consultation.agent, at_department)
    assert not linked(graph, consultation.caller, at_department)
    assert not any(consultation.hold("MusicOnHoldStop")(e) for e in ami_events.events)
    return consultation


def at_department(channel: str) -> bool:
    return channel.startswith(f"Local/{department_phone()}@test-department-")


async def outcome_of(database: Any, row: CallTransfer) -> tuple[str, str]:
    async with database() as db:
        stored = await db.get(CallTransfer, row.id)
    assert stored is not None
    return stored.mode, stored.outcome


async def press(call: AnsweredCall, keys: str) -> None:
    """The agent presses ``keys`` on their phone: DTMF arriving from the agent's leg (as from a real handset)."""
    for key in keys:
        await call.ctrl.ami.action(
            {
                "Action": "PlayDTMF",
                "Channel": call.connected.member_channel,
                "Digit": key,
                "Duration": 120,
                "Receive": "yes",
            }
        )


async def agent_hangs_up(call: AnsweredCall, consultation: Consultation) -> None:
    await hang_up(call.ctrl, consultation.agent)


async def agent_presses_star_2(call: AnsweredCall, consultation: Consultation) -> None:
    await press(call, "*2")  # atxfercomplete (features.conf)


async def department_hangs_up(call: AnsweredCall, consultation: Consultation) -> None:
    graph = await bridged_pairs(call.ctrl)
    for channel in [c for c in graph if at_department(c) and c.endswith(";2")]:
        await hang_up(call.ctrl, channel)


async def agent_presses_star_1(call: AnsweredCall, consultation: Consultation) -> None:
    await press(call, "*1")  # atxferabort (features.conf)


Step = Callable[[AnsweredCall, Consultation], Awaitable[None]]


@pytest.mark.parametrize(
    "complete", [agent_hangs_up, agent_presses_star_2], ids=["agent-hangs-up", "star-2"]
)
async def test_an_attended_transfer_holds_the_caller_while_the_agent_consults_then_joins_caller_and_department(
    settings: Settings,
    pbx: Any,
    local_pbx: Any,
    database: Any,
    ami_events: AmiEvents,
    complete: Step,
) -> None:
    cfg = callcontrol_settings(settings, pbx)
    async with answered_call(cfg, database, local_pbx, pbx) as call:
        consultation = await consult(call, cfg, ami_events)
        await complete(call, consultation)
        done = await ami_events.wait_for(lambda e: e.event == "AttendedTransfer")
        assert done.get("Result") == "Success"
        await consultation.ended(
            lambda e: (
                isinstance(e, ev.AttendedTransferEnded)
                and e.transfer_id == str(consultation.row.id)
            )
        )
        joined = await bridged_pairs(call.ctrl)
        assert linked(joined, consultation.caller, at_department)
        assert consultation.agent not in joined
    assert await outcome_of(database, consultation.row) == ("attended", "completed")


@pytest.mark.parametrize(
    "cancel", [department_hangs_up, agent_presses_star_1], ids=["department-hangs-up", "star-1"]
)
async def test_a_consultation_ended_by_the_department_or_by_star_1_gives_the_agent_the_caller_back(
    settings: Settings,
    pbx: Any,
    local_pbx: Any,
    database: Any,
    ami_events: AmiEvents,
    cancel: Step,
) -> None:
    cfg = callcontrol_settings(settings, pbx)
    async with answered_call(cfg, database, local_pbx, pbx) as call:
        consultation = await consult(call, cfg, ami_events)
        await cancel(call, consultation)
        target_leg = f"Local/{consultation.row.id}@hotline-attended-"
        await consultation.ended(  # Asterisk sends no AttendedTransfer: the target's leg just ends
            lambda e: isinstance(e, ev.ChannelHungUp) and e.chan.channel.startswith(target_leg)
        )
        back = await bridged_pairs(call.ctrl)
        assert linked(back, consultation.caller, lambda name: name == consultation.agent)
        assert not linked(back, consultation.caller, at_department)
    assert await outcome_of(database, consultation.row) == ("attended", "cancelled")


# --- targets that do not answer ---------------------------------------------------------------------------------

CITIZEN_TEMPLATE = (
    "Local/{number}@test-citizen/n"  # a target that is busy or lets it ring (TEST_CITIZEN_<n>)
)
RING_S = 5


def unanswered_settings(settings: Settings, pbx: Any) -> Settings:
    """Outside numbers ring the emulated citizen (busy or no answer) for ``RING_S`` seconds."""
    cfg = callcontrol_settings(settings, pbx)
    update = {"outside_template": CITIZEN_TEMPLATE, "ring_timeout_s": RING_S}
    return cfg.model_copy(update={"callcontrol": cfg.callcontrol.model_copy(update=update)})


async def unanswered_target(call: AnsweredCall, cfg: Settings, behaviour: str) -> Target:
    number = new_number()
    await citizen(call.ctrl, number, behaviour)
    return outside_target(cfg.callcontrol, "department", number, DEPARTMENT)


def result_of(row: CallTransfer, status: str) -> Callable[[ev.DomainEvent], bool]:
    return lambda e: (
        isinstance(e, ev.TransferResult) and e.transfer_id == str(row.id) and e.status == status
    )


async def test_an_attended_transfer_nobody_answers_gives_the_agent_the_caller_back(
    settings: Settings, pbx: Any, local_pbx: Any, database: Any, ami_events: AmiEvents
) -> None:
    cfg = unanswered_settings(settings, pbx)
    async with answered_call(cfg, database, local_pbx, pbx) as call:
        target = await unanswered_target(call, cfg, "noanswer")
        since = len(ami_events.events)
        row = await call.control.transfer(AGENT, target, "attended", by="agent1", ticket_no=None)
        consultation = Consultation(call, ami_events, row, since)
        await ami_events.wait_for(consultation.hold("MusicOnHoldStart"))
        await call.seen.wait(result_of(row, "NOANSWER"), RING_S + 20)
        await ami_events.wait_for(consultation.hold("MusicOnHoldStop"))
        back = await bridged_pairs(call.ctrl)
        assert linked(back, consultation.caller, lambda name: name == consultation.agent)
    assert await outcome_of(database, row) == ("attended", "no_answer")


async def test_a_blind_transfer_to_a_busy_target_puts_the_caller_back_in_the_queue_for_an_agent(
    settings: Settings, pbx: Any, local_pbx: Any, database: Any
) -> None:
    cfg = unanswered_settings(settings, pbx)
    async with answered_call(cfg, database, local_pbx, pbx) as call:
        target = await unanswered_target(call, cfg, "busy")
        row = await call.control.transfer(AGENT, target, "blind", by="agent1", ticket_no=None)
        await call.seen.wait(result_of(row, "BUSY"))
        mine = call.uniqueid
        rejoined = await call.seen.wait(
            lambda e: isinstance(e, ev.CallerJoined) and e.chan.uniqueid == mine and e.at > row.at
        )
        # wrapuptime (queues.conf) passes before the agent is rung again
        again = await call.seen.wait(
            lambda e: (
                isinstance(e, ev.AgentConnected) and e.chan.uniqueid == mine and e.at > rejoined.at
            ),
            40,
        )
        assert isinstance(again, ev.AgentConnected)
        [talking] = call.ctrl.state.talking_calls()  # the agent can act on the call again
        assert talking.uniqueid == mine and talking.agent_channel == again.member_channel
    assert await outcome_of(database, row) == ("blind", "busy")
