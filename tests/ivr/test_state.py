"""Recorded AMI exchanges replayed through events → state: calls, queue, leaders, resync after a reconnect."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from ivr import events as ev
from ivr.ami import AmiClient
from ivr.state import MIN_CALLS_FOR_TALK_TIME, HotlineState, Resync
from tests.ivr.amitools import RECEIVED, Replayer, attach, fixture_bytes

Replay = Callable[[str, HotlineState], Replayer]
T0 = datetime(2025, 3, 4, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai; the fixtures' Timestamp origin


async def test_bot_then_agent_call(replay: Replay) -> None:
    state = HotlineState("hotline")
    r = replay("bot_then_agent.ami", state)
    ended = [c for u in r.updates for c in u.calls if c.ended_at is not None]
    assert [c.uniqueid for c in ended] == [
        "1741053600.10"
    ]  # the Local ;2 half is not a call of its own
    call = ended[0]
    assert call.outcome == "agent" and call.agent_name == "王芳"
    assert call.bot_uuid == "6f1c2a7e-9a55-4b8e-a0c4-1f2e3d4c5b6a"
    assert call.dialled_number == "12345" and call.caller_number == "13800138000"
    assert (
        call.recording == "1741053600.10.wav" and call.menu == "consult"
    )  # MixMonitorStart, ChanVariable
    assert call.started_at == T0 and call.answered_at == T0 + timedelta(seconds=33)
    assert call.ended_at == T0 + timedelta(seconds=123.2)
    assert call.queue_wait_s == pytest.approx(2 + 3)  # first stay 5→7 s, after the bot 30→33 s
    assert call.from_bot  # came back from the bot: never overflowed again
    assert [u.talk_s for u in r.updates if u.talk_s] == [90.0]
    assert state.calls == {} and state.members["Local/6001@test-agent/n"].free


async def test_the_bot_finds_its_caller_after_the_caller_hung_up(replay: Replay) -> None:
    """The bot files the ticket of a caller who hung up mid-dialogue: it still needs the caller's number."""
    state = HotlineState("hotline")
    replay("bot_then_agent.ami", state)
    assert state.calls == {}
    call = state.find_by_bot("6f1c2a7e-9a55-4b8e-a0c4-1f2e3d4c5b6a")
    assert call is not None and call.caller_number == "13800138000" and call.ended_at is not None
    assert state.find_by_bot("0c1d2e3f-unknown") is None


async def test_requeued_caller_is_not_eligible_for_overflow(client: AmiClient) -> None:
    """Back in the queue after the bot (Asterisk reports exten ``queue``): its known bot session marks it."""
    state = HotlineState("hotline")
    replayer = Replayer(client, state)
    protocol, _ = attach(client)
    stream = fixture_bytes("bot_then_agent.ami")
    protocol.data_received(stream[: stream.index(b"Event: AgentCalled")])
    [waiting] = state.waiting_calls()
    assert waiting.from_bot and not waiting.overflow_eligible()
    assert replayer.events


async def test_a_caller_while_an_agent_rings_for_it_is_not_eligible_for_overflow(
    client: AmiClient,
) -> None:
    """An agent's phone ringing for the caller (AgentCalled): a redirect now would take the caller away from an
    agent about to answer. After AgentRingNoAnswer the caller waits on and may go to the bot again."""
    state = HotlineState("hotline")
    Replayer(client, state)
    protocol, _ = attach(client)
    stream = fixture_bytes("ring_no_answer.ami")
    called, no_answer = (
        stream.index(b"Event: AgentCalled"),
        stream.index(b"Event: AgentRingNoAnswer"),
    )
    protocol.data_received(stream[:called])
    [waiting] = state.waiting_calls()
    assert waiting.overflow_eligible()
    protocol.data_received(stream[called:no_answer])
    assert waiting.ringing and not waiting.overflow_eligible()
    protocol.data_received(stream[no_answer : stream.index(b"Event: Hangup", no_answer)])
    assert not waiting.ringing and waiting.overflow_eligible()


async def test_leader_answered_call_and_abandoned_call(replay: Replay) -> None:
    state = HotlineState("hotline")
    state.set_leaders([("PJSIP/6009", "李明", "liming")])
    r = replay("leader_and_abandon.ami", state)
    calls = {c.uniqueid: c for u in r.updates for c in u.calls if c.ended_at is not None}
    leader_call, gave_up = calls["1741053700.20"], calls["1741053701.22"]
    assert leader_call.outcome == "leader" and leader_call.leader_name == "李明"
    assert leader_call.leader_account == "liming"
    assert (
        leader_call.agent_interface == "PJSIP/6009" and leader_call.queue_wait_s == pytest.approx(6)
    )
    assert gave_up.outcome == "abandoned" and gave_up.queue_wait_s == pytest.approx(20)
    assert state.members["PJSIP/6009"].penalty == 0


async def test_duplicate_delivery_of_every_event_changes_nothing(replay: Replay) -> None:
    events = replay("leader_and_abandon.ami", HotlineState("hotline")).events
    for cut in (5, 8, len(events)):
        once, twice = HotlineState("hotline"), HotlineState("hotline")
        ended_once, ended_twice = [], []
        for seq, event in enumerate(events[:cut]):
            ended_once += [c for c in once.apply(event, seq).calls if c.ended_at]
            ended_twice += [c for c in twice.apply(event, seq).calls if c.ended_at]
            ended_twice += [c for c in twice.apply(event, seq).calls if c.ended_at]
        assert {u: vars(c) for u, c in once.calls.items()} == {
            u: vars(c) for u, c in twice.calls.items()
        }
        assert [vars(c) for c in ended_once] == [vars(c) for c in ended_twice]
        assert {u: vars(m) for u, m in once.members.items()} == {
            u: vars(m) for u, m in twice.members.items()
        }


async def resync_from_fixture(client: AmiClient, state: HotlineState, now: datetime) -> Resync:
    """Send CoreShowChannels + QueueStatus on an in-memory connection and answer from the recorded lists."""

    protocol, transport = attach(client)
    channels = asyncio.ensure_future(client.action({"Action": "CoreShowChannels"}, as_list=True))
    queue = asyncio.ensure_future(
        client.action({"Action": "QueueStatus", "Queue": "hotline"}, as_list=True)
    )
    await asyncio.sleep(0)
    ids = [
        ln.split(": ", 1)[1]
        for ln in transport.written.decode().split("\r\n")
        if ln.startswith("ActionID")
    ]
    protocol.data_received(fixture_bytes("resync_lists.ami", CHANNELS=ids[0], QUEUE=ids[1]))
    c, q = await channels, await queue
    assert isinstance(c, list) and isinstance(q, list)
    records = [ev.parse_snapshot(m) for m in c + q]
    return Resync(
        channels=[x for x in records if isinstance(x, ev.ChannelSnapshot)],
        channels_seq=c[-1].seq,
        waiting=[x for x in records if isinstance(x, ev.QueueWaiting)],
        members=[x for x in records if isinstance(x, ev.MemberState)],
        params=[x for x in records if isinstance(x, ev.QueueParams)],
        queue_seq=q[-1].seq,
    )


async def test_resync_rebuilds_calls_queue_and_members_and_ends_vanished_calls(
    client: AmiClient,
) -> None:
    state = HotlineState("hotline")
    # before the drop: a call that will end unseen, and a stale member
    gone = ev.ChannelInfo(
        "1741053000.1", "1741053000.1", "PJSIP/citizen-1", "13000000000", "hotline-inbound", "12345"
    )
    state.apply(ev.ChannelCreated(T0, gone), 1)
    state.apply(
        ev.MemberState(T0, "hotline", "PJSIP/6003", "离职", "PJSIP/6003", 1, False, 1, False), 2
    )
    now = T0 + timedelta(minutes=10)
    snap = await resync_from_fixture(client, state, now)
    update = state.resync(snap, now)
    ended = [c for c in update.calls if c.ended_at is not None]
    assert [(c.uniqueid, c.closed_by_resync, c.outcome) for c in ended] == [
        ("1741053000.1", True, "abandoned")
    ]
    assert set(state.calls) == {"1741054000.40", "1741053900.41"}  # the agent leg is not a call
    [waiting] = state.waiting_calls()
    assert waiting.uniqueid == "1741054000.40" and waiting.wait_so_far(now) == pytest.approx(35)
    assert state.calls["1741053900.41"].started_at == now - timedelta(seconds=140)
    assert set(state.members) == {"Local/6001@test-agent/n", "PJSIP/6002"}
    assert state.members["PJSIP/6002"].paused and not state.members["PJSIP/6002"].available
    assert state.asterisk_talk_time_s == 150


async def test_asterisk_talk_time_of_a_few_calls_does_not_seed_the_handle_time(
    client: AmiClient,
) -> None:
    """One short call (an e2e test's, or the first of the day) must not make every estimated wait look short."""
    now = T0 + timedelta(minutes=10)
    snap = await resync_from_fixture(client, HotlineState("hotline"), now)
    few = dataclasses.replace(
        snap,
        params=[dataclasses.replace(p, completed=MIN_CALLS_FOR_TALK_TIME - 1) for p in snap.params],
    )
    state = HotlineState("hotline")
    state.resync(few, now)
    assert state.asterisk_talk_time_s is None


async def test_events_newer_than_the_snapshot_win_over_it(client: AmiClient) -> None:
    state = HotlineState("hotline")
    now = T0 + timedelta(minutes=10)
    snap = await resync_from_fixture(client, state, now)
    late = snap.queue_seq + 1
    # arrived after the lists were produced, applied before the snapshot was folded in
    fresh = ev.ChannelInfo(
        "1741054100.50",
        "1741054100.50",
        "PJSIP/citizen-50",
        "13100000000",
        "hotline-inbound",
        "12345",
    )
    state.apply(ev.ChannelCreated(now, fresh), late)
    waiting = ev.ChannelInfo(
        "1741054000.40",
        "1741054000.40",
        "PJSIP/citizen-00000010",
        "13600136000",
        "hotline-inbound",
        "12345",
    )
    state.apply(ev.ChannelHungUp(now, waiting, "Normal Clearing"), late + 1)
    state.apply(ev.MemberRemoved(now, "hotline", "PJSIP/6002"), late + 2)
    state.resync(snap, now)
    assert "1741054100.50" in state.calls  # not ended by a snapshot that could not know it
    assert "1741054000.40" not in state.calls  # not revived by a snapshot taken before its hangup
    assert [c.uniqueid for c in state.waiting_calls()] == []
    assert "PJSIP/6002" in state.members  # member lists are rebuilt from the snapshot …
    state.apply(ev.MemberRemoved(now, "hotline", "PJSIP/6002"), late + 3)
    assert "PJSIP/6002" not in state.members  # … and later events still apply


def test_parse_event_reads_chan_variables_and_timestamps() -> None:
    message = {
        "Event": "QueueCallerJoin",
        "Timestamp": "1741053600.5",
        "Uniqueid": "1.1",
        "Linkedid": "1.1",
        "Channel": "PJSIP/a",
        "Exten": "queue",
        "Queue": "hotline",
        "Position": "2",
        "ChanVariable": ["HOTLINE_MENU=complaint", "BOT_UUID=abc", "TICKET_NO="],
    }
    event = ev.parse_event(message, RECEIVED)
    assert isinstance(event, ev.CallerJoined)
    assert event.at == T0 + timedelta(seconds=0.5) and event.position == 2
    assert event.chan.menu == "complaint" and event.chan.bot_uuid == "abc"
    assert ev.parse_event({"Event": "Newchannel"}, RECEIVED) is None  # no Uniqueid: ignored
    assert ev.parse_event({"Event": "QueueMemberStatus", "Queue": "hotline"}, RECEIVED) is None
    assert ev.parse_duration("01:02:03") == 3723 and ev.parse_duration("garbage") == 0


async def test_real_asterisk_recording_of_an_agent_call(replay: Replay, client: AmiClient) -> None:
    """Recorded from the local Asterisk 22: Originate Local/s@test-caller/n into hotline-inbound, DTMF 0."""
    state = HotlineState("hotline")
    r = replay("real_agent_call.ami", state)
    logged = {c.uniqueid for u in r.updates for c in u.calls}
    assert logged == {"1795431670.4"}  # the ;2 half and the two agent-side Local legs are not calls
    [call] = [c for u in r.updates for c in u.calls if c.ended_at is not None]
    assert call.outcome == "agent" and call.agent_interface == "Local/6001@test-agent/n"
    assert call.menu == "human" and call.recording == "1795431670.4.wav" and call.bot_uuid is None
    assert call.answered_at is not None and call.ended_at is not None
    assert (call.ended_at - call.answered_at).total_seconds() == pytest.approx(4.0, abs=0.1)
    assert [u.talk_s for u in r.updates if u.talk_s] == [4.0]
    assert "Local/6801@test-agent/n" not in state.members  # added then removed during the recording
    assert client.stats.malformed_frames == 0 and state.calls == {}


def test_a_caller_the_blocklist_refused_ends_as_blocked_not_abandoned() -> None:
    """UserEvent HotlineBlocked ([hotline-blocked]): outcome ``blocked`` — not offered, no missed-call task."""
    state = HotlineState("hotline")
    chan = {"Uniqueid": "9.1", "Linkedid": "9.1", "Channel": "Local/s@test-caller-1;1"}
    chan |= {"CallerIDNum": "13812345678", "Context": "hotline-blocked", "Exten": "s"}
    frames = [
        {"Event": "Newchannel", **chan},
        {"Event": "UserEvent", "UserEvent": "HotlineBlocked", **chan},
        {"Event": "Hangup", "Cause-txt": "Normal Clearing", **chan},
    ]
    updates = [
        state.apply(e, seq) for seq, f in enumerate(frames) if (e := ev.parse_event(f, RECEIVED))
    ]
    [ended] = [c for u in updates for c in u.calls if c.ended_at is not None]
    assert ended.outcome == "blocked" and ended.abandoned_in is None


def test_a_caller_back_in_the_queue_after_a_failed_blind_transfer_is_talking_again() -> None:
    """The target of a blind transfer did not answer ([hotline-transfer] requeues the caller): the agent who
    takes the caller again talks to them, so the console can transfer the call anew."""
    state = HotlineState("hotline")
    chan = ev.ChannelInfo(
        "7.1", "7.1", "Local/s@test-caller-7;2", "13812345678", "hotline-inbound", "queue"
    )
    at = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
    agent, first_leg, second_leg = (
        "Local/6841@test-agent/n",
        "Local/6841@test-agent-1;1",
        "Local/6841@test-agent-2;1",
    )

    def answered(leg: str, second: int) -> ev.AgentConnected:
        return ev.AgentConnected(
            at + timedelta(seconds=second), chan, "hotline", agent, "坐席", 1.0, leg
        )

    events: list[ev.DomainEvent] = [
        ev.CallerJoined(at, chan, "hotline", 1),
        answered(first_leg, 1),
        ev.AgentCompleted(
            at + timedelta(seconds=5), chan, "hotline", agent, "坐席", 4.0, "transfer"
        ),
        ev.CallerJoined(
            at + timedelta(seconds=30), chan, "hotline", 1
        ),  # nobody answered the target
    ]
    for seq, event in enumerate(events):
        state.apply(event, seq)
    assert state.talking_calls() == [] and [c.uniqueid for c in state.waiting_calls()] == ["7.1"]
    state.apply(answered(second_leg, 31), len(events))
    [talking] = state.talking_calls()
    assert talking.agent_channel == second_leg and not talking.waiting
