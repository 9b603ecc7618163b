"""Every caller path ends with an outcome (#11 §2), against the real local Asterisk: what the call log says
(``ivr_call``: outcome, answered_by, abandoned_in, menu, queue, wait, talk, wrap-up, from_bot) and the missed-call
task (``ivr_missed_call``) of a caller who hung up unanswered. The table of all paths and the test of each is in
README.md, "来电路径".

Emulated parties: callers ``Local/s@test-caller/n`` originated into hotline-inbound (or straight into hotline-bot),
hung up by the test at the moment it names (an AMI Hangup of the caller's side, on the event that marks it);
agents ``Local/68xx@test-agent/n`` (answer, talk ``TEST_AGENT_WAIT`` s, hang up); an agent who never picks up is
``Local/68xx@test-citizen/n`` with the global ``TEST_CITIZEN_68xx=noanswer`` (it rings for 120 s); the speech bot
is an AudioSocket peer (:class:`ScriptedBot`, reporting through ``hotline.wiring.bot_hooks`` as the real bot does:
the call log comes from the controller, not from the bot's speech). Extensions 6870–6889 belong to this file.
Abandon-while-ringing, AgentRingNoAnswer and the wrap-up are also recorded as replay fixtures
(``HOTLINE_RECORD_AMI=1``, :mod:`tests.e2e.ami_recording`) for tests/ivr/test_service_levels_recorded.py.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from asr.audiosocket import ErrorCode, error_frame
from asr.dialogue import BotOutcome
from config import Settings
from hotline.wiring import bot_hooks
from ivr import events as ev
from ivr.controller import HotlineController
from ivr.leaders import ShiftInput, add_shift
from ivr.models import CallRecord, MissedCall
from ivr.service_levels import service_levels
from ivr.state import WRAP_UP_REASON
from tests.conftest import missing
from tests.e2e.ami_recording import AmiRecording
from tests.e2e.conftest import AmiEvents
from tests.e2e.controller_support import (
    Events,
    controller_on,
    dial_12345,
    e2e_settings,
    hang_up,
    start,
    stop,
    until_in_use,
)

pytestmark = [pytest.mark.pbx, pytest.mark.slow]

CALLER = "13800138000"
BUSY_AGENT, AGENT, SILENT_AGENT = (
    "Local/6871@test-agent/n",
    "Local/6872@test-agent/n",
    "Local/6873@test-citizen/n",
)
LEADER = "Local/6874@test-agent/n"


@pytest.fixture
def recording() -> list[AmiRecording]:
    return []


@pytest.fixture
async def controller(
    settings: Settings, pbx: Any, local_pbx: Any, database: Any, recording: list[AmiRecording]
) -> AsyncIterator[HotlineController]:
    """A controller that never overflows (each path here is driven by the caller, the agents and the bot), its
    AMI stream recorded; agents of this file are logged out afterwards."""

    ctrl = controller_on(e2e_settings(settings, pbx, enabled=False), database, local_pbx, pbx)
    recording.append(AmiRecording(ctrl.ami))
    yield await start(ctrl)
    await stop(ctrl, (BUSY_AGENT, AGENT, SILENT_AGENT, LEADER))


@pytest.fixture
def events(controller: HotlineController) -> Events:
    return Events(controller)


async def place_call(
    ctrl: HotlineController,
    *,
    dtmf: str = "0",
    context: str = "hotline-inbound",
    agent_wait_s: int = 60,
    queue_timeout_s: int | None = None,
) -> str:
    """A caller dialling 12345 (or put straight into ``context``) who stays until hung up; returns the Uniqueid of
    its hotline side. ``agent_wait_s``: how long an agent who answers it talks; ``queue_timeout_s``: this call's
    QUEUE_TIMEOUT (a channel variable of that name hides the rendered [globals] value)."""
    variables = ["TEST_WAIT=120", f"TEST_DTMF={dtmf}", f"__TEST_AGENT_WAIT={agent_wait_s}"]
    if queue_timeout_s:
        variables.append(f"QUEUE_TIMEOUT={queue_timeout_s}")
    return await dial_12345(ctrl.ami, CALLER, variables, prefix="e2e-path-", context=context)


async def caller_hangs_up(ctrl: HotlineController, event: ev.DomainEvent) -> None:
    """The caller of ``event``'s call puts the phone down (its side of the Local channel)."""
    assert isinstance(
        event, ev.RecordingStarted | ev.CallerJoined | ev.AgentRinging | ev.BotStarted
    )
    await ctrl.ami.action({"Action": "Hangup", "Channel": event.chan.channel.replace(";1", ";2")})


async def log_in(
    ctrl: HotlineController, events: Events, interface: str, name: str, *, penalty: int = 1
) -> None:
    """Log a member into the queue and wait until the controller knows it."""
    await ctrl.ami.action(
        {
            "Action": "QueueAdd",
            "Queue": "hotline",
            "Interface": interface,
            "Penalty": penalty,
            "MemberName": name,
            "StateInterface": interface,
        }
    )
    await events.wait(lambda e: isinstance(e, ev.MemberState) and e.interface == interface)


async def log_in_silent_agent(ctrl: HotlineController, events: Events) -> None:
    """An agent whose phone rings and is never picked up."""
    await ctrl.ami.action(
        {"Action": "Setvar", "Variable": "TEST_CITIZEN_6873", "Value": "noanswer"}
    )
    await log_in(ctrl, events, SILENT_AGENT, "未接坐席")


async def occupy(ctrl: HotlineController, events: Events) -> ev.AgentConnected:
    """The only agent, busy with another caller: the next caller waits in the queue."""
    await log_in(ctrl, events, BUSY_AGENT, "忙碌坐席")
    since = len(events.seen)
    first = await place_call(ctrl)
    busy = await events.wait(
        lambda e: isinstance(e, ev.AgentConnected) and e.chan.uniqueid == first
    )
    assert isinstance(busy, ev.AgentConnected)
    await until_in_use(events, BUSY_AGENT, since)
    return busy


async def ended(
    ctrl: HotlineController, events: Events, database: Any, uniqueid: str
) -> CallRecord:
    """The call-log row of a call once its hang-up is written (the state took it before listeners saw it)."""
    await events.wait(lambda e: isinstance(e, ev.ChannelHungUp) and e.chan.uniqueid == uniqueid, 60)
    await ctrl.flush()
    async with database() as session:
        row = await session.scalar(select(CallRecord).where(CallRecord.uniqueid == uniqueid))
    assert row is not None and row.ended_at is not None
    return row


async def missed_tasks(database: Any) -> list[tuple[str, str, int]]:
    async with database() as session:
        return [
            (t.number, t.state, t.calls) for t in (await session.scalars(select(MissedCall))).all()
        ]


def wait_between(start: ev.DomainEvent, end: ev.DomainEvent) -> float:
    return round((end.at - start.at).total_seconds(), 3)


async def test_caller_who_hangs_up_in_the_menu_is_abandoned_there_and_rung_back(
    controller: HotlineController, events: Events, database: Any
) -> None:
    call = await place_call(controller, dtmf="")
    # the call is recorded from just before the welcome and menu (hotline-record): they are playing now
    menu = await events.wait(
        lambda e: isinstance(e, ev.RecordingStarted) and e.chan.uniqueid == call
    )
    await caller_hangs_up(controller, menu)
    row = await ended(controller, events, database, call)
    assert (row.outcome, row.abandoned_in, row.queue, row.queue_wait_s, row.menu) == (
        "abandoned",
        "menu",
        None,
        0.0,
        "none",
    )
    assert (
        row.recording == f"{call}.wav"
        and row.caller_number == CALLER
        and row.dialled_number == "12345"
    )
    assert row.missed_call_id is not None
    assert await missed_tasks(database) == [(CALLER, "open", 1)]


@pytest.mark.parametrize(("digit", "menu"), [("0", "human"), ("1", "consult"), ("2", "complaint")])
async def test_menu_choice_reaches_an_agent_and_is_logged(
    controller: HotlineController, events: Events, database: Any, digit: str, menu: str
) -> None:
    await log_in(controller, events, AGENT, "测试坐席")
    call = await place_call(
        controller, dtmf=digit, agent_wait_s=1
    )  # the agent talks 1 s, then hangs up
    row = await ended(controller, events, database, call)
    assert (row.menu, row.outcome, row.answered_by, row.agent_interface, row.agent_name) == (
        menu,
        "agent",
        "agent",
        AGENT,
        "测试坐席",
    )
    assert row.queue == "hotline" and row.queue_wait_s < 5 and row.abandoned_in is None
    assert row.talk_ended_at is not None and row.answered_at is not None
    assert await missed_tasks(database) == []


async def test_caller_who_hangs_up_while_waiting_is_abandoned_in_the_queue_and_rung_back(
    controller: HotlineController, events: Events, database: Any
) -> None:
    busy = await occupy(controller, events)
    try:
        call = await place_call(controller)
        joined = await events.wait(
            lambda e: isinstance(e, ev.CallerJoined) and e.chan.uniqueid == call
        )
        await caller_hangs_up(controller, joined)
        left = await events.wait(
            lambda e: isinstance(e, ev.CallerAbandoned) and e.chan.uniqueid == call
        )
        row = await ended(controller, events, database, call)
    finally:
        await hang_up(controller, busy.chan.channel)
    assert (row.outcome, row.abandoned_in, row.queue, row.answered_by) == (
        "abandoned",
        "queue",
        "hotline",
        None,
    )
    assert row.queue_wait_s == pytest.approx(wait_between(joined, left), abs=0.002)
    assert await missed_tasks(database) == [(CALLER, "open", 1)]


async def test_caller_who_hangs_up_while_an_agent_rings_is_abandoned_while_ringing(
    controller: HotlineController, events: Events, database: Any, recording: list[AmiRecording]
) -> None:
    await log_in_silent_agent(controller, events)
    call = await place_call(controller)
    ringing = await events.wait(
        lambda e: isinstance(e, ev.AgentRinging) and e.chan.uniqueid == call
    )
    await caller_hangs_up(controller, ringing)
    row = await ended(controller, events, database, call)
    assert (row.outcome, row.abandoned_in, row.queue, row.answered_by) == (
        "abandoned",
        "ringing",
        "hotline",
        None,
    )
    # Asterisk sends no AgentRingNoAnswer for a caller who hangs up during the ring
    assert not any(isinstance(e, ev.AgentNoAnswer) for e in events.seen)
    assert await missed_tasks(database) == [(CALLER, "open", 1)]
    recording[0].save_if_asked("abandon_while_ringing.ami")


async def test_agent_who_lets_it_ring_is_passed_over_and_the_next_agent_answers(
    controller: HotlineController, events: Events, database: Any, recording: list[AmiRecording]
) -> None:
    await log_in_silent_agent(controller, events)
    call = await place_call(controller, agent_wait_s=2)
    joined = await events.wait(lambda e: isinstance(e, ev.CallerJoined) and e.chan.uniqueid == call)
    await events.wait(lambda e: isinstance(e, ev.AgentRinging) and e.interface == SILENT_AGENT)
    # a second agent logs in meanwhile, ahead of the first (penalty 0): the queue's next try rings it
    await log_in(controller, events, AGENT, "测试坐席", penalty=0)
    no_answer = await events.wait(
        lambda e: isinstance(e, ev.AgentNoAnswer) and e.chan.uniqueid == call, 30
    )
    assert isinstance(no_answer, ev.AgentNoAnswer) and no_answer.interface == SILENT_AGENT
    connected = await events.wait(
        lambda e: isinstance(e, ev.AgentConnected) and e.chan.uniqueid == call, 20
    )
    row = await ended(controller, events, database, call)
    assert (row.outcome, row.answered_by, row.agent_interface, row.abandoned_in) == (
        "agent",
        "agent",
        AGENT,
        None,
    )
    # the ring timeout (queues.conf timeout = 15) is waiting time: answered, but not within 15 s
    assert (
        row.queue_wait_s == pytest.approx(wait_between(joined, connected), abs=0.002)
        and row.queue_wait_s > 15
    )
    assert await missed_tasks(database) == []
    recording[0].save_if_asked("ring_no_answer.ami")


async def test_leader_on_an_answering_day_is_rung_before_agents_and_logged_as_the_leader(
    controller: HotlineController, events: Events, database: Any, settings: Settings
) -> None:
    await log_in(controller, events, AGENT, "测试坐席")
    today = datetime.now(ZoneInfo(settings.timezone)).date()
    async with (
        database() as session
    ):  # 领导接听日 all day: the controller logs the leader in (penalty 0)
        await add_shift(
            session,
            ShiftInput(
                today, time(0, 0), time(23, 59, 59), "李明", LEADER, "区长", account="liming"
            ),
        )
    await events.wait(
        lambda e: isinstance(e, ev.MemberState) and e.interface == LEADER and e.penalty == 0
    )
    call = await place_call(controller, agent_wait_s=1)
    row = await ended(controller, events, database, call)
    assert (row.outcome, row.answered_by, row.agent_interface) == ("leader", "leader", LEADER)
    assert (row.leader_name, row.leader_account, row.agent_name) == (
        "李明",
        "liming",
        "李明（区长）",
    )
    assert await missed_tasks(database) == []


WRAP_UP_S = 1.5  # the agent's 话后整理: emulated time at the keyboard, not a wait for anything


async def test_agent_answers_talks_and_wraps_up_and_both_are_measured(
    controller: HotlineController, events: Events, database: Any, recording: list[AmiRecording]
) -> None:
    await log_in(controller, events, AGENT, "测试坐席")
    call = await place_call(controller, agent_wait_s=2)
    connected = await events.wait(
        lambda e: isinstance(e, ev.AgentConnected) and e.chan.uniqueid == call
    )
    complete = await events.wait(
        lambda e: isinstance(e, ev.AgentCompleted) and e.chan.uniqueid == call
    )
    await controller.pause_agent(AGENT, True, WRAP_UP_REASON)  # the console's 话后整理 button
    paused = await events.wait(
        lambda e: isinstance(e, ev.MemberState) and e.interface == AGENT and e.paused
    )
    await asyncio.sleep(WRAP_UP_S)
    await controller.pause_agent(AGENT, False)  # 示闲
    ready = await events.wait(
        lambda e: (
            isinstance(e, ev.MemberState)
            and e.interface == AGENT
            and not e.paused
            and e.at > paused.at
        )
    )
    row = await ended(controller, events, database, call)
    await controller.flush()  # the wrap-up is written when it ends
    async with database() as session:
        row = await session.scalar(select(CallRecord).where(CallRecord.uniqueid == call))
    assert row is not None and (row.outcome, row.answered_by) == ("agent", "agent")
    assert (
        isinstance(complete, ev.AgentCompleted) and complete.reason == "agent"
    )  # the agent hung up after 2 s
    assert row.talk_ended_at is not None and row.answered_at is not None
    # the talk ends at the AgentComplete, or at the caller's Hangup when Asterisk sends that first: ms apart
    assert (row.talk_ended_at - row.answered_at).total_seconds() == pytest.approx(
        wait_between(connected, complete), abs=0.05
    )
    assert row.wrap_up_s == pytest.approx(
        wait_between(max(paused, complete, key=lambda e: e.at), ready), abs=0.002
    )
    assert row.wrap_up_s >= WRAP_UP_S
    recording[0].save_if_asked("wrap_up.ami")


def audiosocket_port_free(pbx: Any) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((pbx.ami_host, pbx.audiosocket_port))
        except OSError:
            missing(f"AudioSocket port {pbx.audiosocket_port} is taken (a bot is running)")


async def read_uuid(reader: asyncio.StreamReader) -> str:
    """The first frame Asterisk sends on an AudioSocket connection: the call's UUID."""
    kind, length = struct.unpack(">BH", await reader.readexactly(3))
    assert kind == 0x01
    return str(uuid.UUID(bytes=await reader.readexactly(length)))


async def refusing_bot(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A bot at its session cap: reads the call's UUID, refuses it (error frame BUSY, what asr does)."""
    await read_uuid(reader)
    writer.write(error_frame(ErrorCode.BUSY))
    await writer.drain()
    writer.close()


async def handing_over_bot(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A bot whose caller asked for a person: it ends the session without BOT_NEXT=hangup."""
    await read_uuid(reader)
    writer.close()


@pytest.mark.parametrize("bot", ["unreachable", "refused", "handed_over"])
async def test_caller_the_bot_cannot_keep_goes_back_ahead_of_new_callers_and_an_agent_answers(
    controller: HotlineController, events: Events, database: Any, pbx: Any, bot: str
) -> None:
    audiosocket_port_free(pbx)
    peer = {"refused": refusing_bot, "handed_over": handing_over_bot}.get(bot)
    server = await asyncio.start_server(peer, pbx.ami_host, pbx.audiosocket_port) if peer else None
    busy = await occupy(controller, events)
    try:
        waiting = await place_call(controller, agent_wait_s=1)  # a new caller, waiting
        await events.wait(lambda e: isinstance(e, ev.CallerJoined) and e.chan.uniqueid == waiting)
        call = await place_call(
            controller, dtmf="", context="hotline-bot", agent_wait_s=1
        )  # the bot has this one
        started = await events.wait(
            lambda e: isinstance(e, ev.BotStarted) and e.chan.uniqueid == call
        )
        requeued = await events.wait(
            lambda e: isinstance(e, ev.CallerJoined) and e.chan.uniqueid == call
        )
        assert isinstance(requeued, ev.CallerJoined)
        assert requeued.position == 1  # QUEUE_PRIO: ahead of the new caller
        await log_in(controller, events, AGENT, "测试坐席")
        first = await events.wait(
            lambda e: isinstance(e, ev.AgentConnected) and e.interface == AGENT
        )
        assert isinstance(first, ev.AgentConnected) and first.chan.uniqueid == call
        row = await ended(controller, events, database, call)
    finally:
        await hang_up(controller, busy.chan.channel)
        if server is not None:
            server.close()
    assert isinstance(started, ev.BotStarted) and row.bot_uuid == started.bot_uuid
    assert (row.outcome, row.answered_by, row.agent_interface, row.from_bot) == (
        "agent",
        "agent",
        AGENT,
        True,
    )
    assert (
        not row.redirected_to_bot
    )  # it came to the bot by the dialplan, not by an overflow decision
    assert row.abandoned_in is None and row.queue == "hotline" and row.ticket_no is None
    assert await missed_tasks(database) == []


async def until_caller_left(reader: asyncio.StreamReader) -> None:
    """Read the caller's audio until Asterisk ends the session (hangup frame, or the socket closed)."""
    try:
        while True:
            kind, length = struct.unpack(">BH", await reader.readexactly(3))
            if kind == 0x00:
                return
            await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError):
        return


class ScriptedBot:
    """An AudioSocket peer in the speech bot's place, reporting to the controller through
    :func:`hotline.wiring.bot_hooks` as :class:`asr.bot.SpeechBot` does. ``settles``: it answers the call itself
    (即答) — outcome ``hangup`` before it closes the socket; otherwise it keeps the caller until they hang up, then
    looks up their number (what the real bot's ticket needs) and reports ``caller_gone``."""

    def __init__(self, controller: HotlineController, events: Events, *, settles: bool) -> None:
        self.hooks = bot_hooks(controller)
        self.events = events
        self.settles = settles
        self.connected: asyncio.Queue[str] = asyncio.Queue()  # bot UUIDs of the calls it has
        self.callers_gone: asyncio.Queue[tuple[str, str | None]] = (
            asyncio.Queue()
        )  # (bot UUID, caller's number)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        call_uuid = await read_uuid(reader)
        # the controller learns the session from UserEvent HotlineBot; the real bot talks for seconds first
        await self.events.wait(lambda e: isinstance(e, ev.BotStarted) and e.bot_uuid == call_uuid)
        await self.connected.put(call_uuid)
        if not self.settles:
            await until_caller_left(reader)
            caller = await self.hooks["caller_for"](call_uuid)
            await self.hooks["on_outcome"](
                call_uuid, BotOutcome("hangup", "caller_gone", "", caller=caller)
            )
            await self.callers_gone.put((call_uuid, caller))
        else:
            await self.hooks["on_outcome"](
                call_uuid, BotOutcome("hangup", "solved", "", caller=CALLER)
            )
        writer.close()

    async def listen(self, pbx: Any) -> asyncio.Server:
        audiosocket_port_free(pbx)
        return await asyncio.start_server(self.serve, pbx.ami_host, pbx.audiosocket_port)


def bot_ended(bot_uuid: str) -> Any:
    """The dialplan's UserEvent HotlineBotEnd of a session (Status: TRYSTATUS, Next: BOT_NEXT)."""
    return lambda e: e.get("UserEvent") == "HotlineBotEnd" and e.get("Uuid") == bot_uuid


QUEUE_TIMEOUT_S = 5


async def test_caller_whose_wait_times_out_while_the_agents_are_busy_reaches_the_bot(
    controller: HotlineController, events: Events, database: Any, pbx: Any
) -> None:
    """Not an empty queue: the only agent is talking, the caller waits QUEUE_TIMEOUT (Queue returns TIMEOUT), then
    the dialplan hands them to the bot (no overflow decision: this file's controller never redirects). Asterisk
    reports the timeout as QueueCallerAbandon, like a hang-up: the outcome comes from what followed."""
    bot = ScriptedBot(controller, events, settles=True)
    server = await bot.listen(pbx)
    busy = await occupy(controller, events)
    try:
        call = await place_call(controller, queue_timeout_s=QUEUE_TIMEOUT_S)
        joined = await events.wait(
            lambda e: isinstance(e, ev.CallerJoined) and e.chan.uniqueid == call
        )
        timed_out = await events.wait(
            lambda e: isinstance(e, ev.CallerAbandoned) and e.chan.uniqueid == call
        )
        started = await events.wait(
            lambda e: isinstance(e, ev.BotStarted) and e.chan.uniqueid == call
        )
        row = await ended(controller, events, database, call)
        assert not controller.state.members[
            BUSY_AGENT
        ].free  # busy all along: still with the first caller
    finally:
        await hang_up(controller, busy.chan.channel)
        server.close()
    assert not any(isinstance(e, ev.AgentRinging) and e.chan.uniqueid == call for e in events.seen)
    # the timeout counts from the join (whole seconds), checked between the position announcements
    assert QUEUE_TIMEOUT_S - 1 < wait_between(joined, timed_out) < QUEUE_TIMEOUT_S + 4
    assert isinstance(started, ev.BotStarted) and row.bot_uuid == started.bot_uuid
    assert (row.outcome, row.answered_by, row.queue, row.abandoned_in) == (
        "bot",
        None,
        "hotline",
        None,
    )
    assert row.queue_wait_s == pytest.approx(wait_between(joined, timed_out), abs=0.002)
    assert not row.redirected_to_bot and not row.from_bot and row.menu == "human"
    assert await missed_tasks(database) == []


async def test_call_the_bot_settles_is_answered_by_the_bot_and_counted_contained(
    controller: HotlineController,
    events: Events,
    database: Any,
    pbx: Any,
    ami_events: AmiEvents,
    settings: Settings,
) -> None:
    bot = ScriptedBot(controller, events, settles=True)
    server = await bot.listen(pbx)
    try:
        call = await place_call(
            controller, dtmf="1"
        )  # 政策咨询; nobody logged in: the bot takes the call
        started = await events.wait(
            lambda e: isinstance(e, ev.BotStarted) and e.chan.uniqueid == call
        )
        assert isinstance(started, ev.BotStarted)
        end = await ami_events.wait_for(bot_ended(started.bot_uuid))
        row = await ended(controller, events, database, call)
    finally:
        server.close()
    # the controller's BOT_NEXT=hangup reached the dialplan: it hung up instead of requeueing
    assert (end.get("Status"), end.get("Next")) == ("SUCCESS", "hangup")
    assert (row.outcome, row.answered_by, row.bot_uuid, row.menu) == (
        "bot",
        None,
        started.bot_uuid,
        "consult",
    )
    assert (row.from_bot, row.abandoned_in, row.ticket_no, row.missed_call_id) == (
        False,
        None,
        None,
        None,
    )
    now = datetime.now(UTC)
    async with database() as session:
        total = (await service_levels(session, now - timedelta(hours=1), now, settings=settings))[
            "total"
        ]
    assert {
        k: total[k]
        for k in ("offered", "answered_bot", "bot_sessions", "bot_contained", "bot_transfers")
    } == {
        "offered": 1,
        "answered_bot": 1,
        "bot_sessions": 1,
        "bot_contained": 1,
        "bot_transfers": 0,
    }
    assert await missed_tasks(database) == []


async def test_caller_who_hangs_up_on_the_bot_was_answered_and_is_not_rung_back(
    controller: HotlineController, events: Events, database: Any, pbx: Any
) -> None:
    """Answered by the bot (no missed-call task; it even closes the caller's open one), and the bot still finds the
    caller's number after the hang-up, for the ticket it files (tests/asr/test_bot_after_hangup.py)."""
    earlier = await place_call(
        controller, dtmf=""
    )  # the same caller gave up in the menu a moment ago
    await caller_hangs_up(
        controller,
        await events.wait(
            lambda e: isinstance(e, ev.RecordingStarted) and e.chan.uniqueid == earlier
        ),
    )
    await ended(controller, events, database, earlier)
    assert await missed_tasks(database) == [(CALLER, "open", 1)]
    bot = ScriptedBot(controller, events, settles=False)
    server = await bot.listen(pbx)
    try:
        call = await place_call(controller, dtmf="2")
        started = await events.wait(
            lambda e: isinstance(e, ev.BotStarted) and e.chan.uniqueid == call
        )
        assert isinstance(started, ev.BotStarted)
        assert (
            await asyncio.wait_for(bot.connected.get(), 30) == started.bot_uuid
        )  # talking to the bot now
        await caller_hangs_up(controller, started)
        row = await ended(controller, events, database, call)
        gone = await asyncio.wait_for(bot.callers_gone.get(), 30)
    finally:
        server.close()
    assert gone == (started.bot_uuid, CALLER)
    assert (row.outcome, row.answered_by, row.abandoned_in, row.bot_uuid) == (
        "bot",
        None,
        None,
        started.bot_uuid,
    )
    assert (row.menu, row.queue, row.from_bot, row.missed_call_id) == (
        "complaint",
        None,
        False,
        None,
    )
    assert await missed_tasks(database) == [(CALLER, "closed_by_recall", 1)]
