"""The AMI controller against the real local Asterisk (``pbx`` fixture of tests/e2e/conftest.py).

Emulated parties: callers are ``Local/s@test-caller/n`` originated into hotline-inbound (DTMF 0 = straight to
the queue); agents and leaders are ``Local/68xx@test-agent/n`` queue members (extensions 68xx are reserved for
these tests). Each test starts on an empty queue without statistics (``known_queue`` in conftest.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from config import Settings
from ivr import events as ev
from ivr.ami import AmiClient
from ivr.controller import HotlineController
from ivr.leaders import ShiftInput, add_shift
from ivr.models import CallRecord
from tests.e2e.controller_support import (
    Events,
    controller_on,
    e2e_settings,
    explain,
    start,
    until_in_use,
)

pytestmark = [pytest.mark.pbx, pytest.mark.slow]


@pytest.fixture
async def start_controller(
    settings: Settings, pbx: Any, local_pbx: Any, database: Any
) -> AsyncIterator[Callable[..., Any]]:
    started: list[HotlineController] = []

    async def start_one(**overflow: Any) -> HotlineController:
        ctrl = controller_on(e2e_settings(settings, pbx, **overflow), database, local_pbx, pbx)
        started.append(ctrl)
        return await start(ctrl)

    yield start_one
    for ctrl in started:
        await ctrl.stop()


@pytest.fixture
async def ami_session(pbx: Any, local_pbx: Any) -> AsyncIterator[AmiClient]:
    """A second AMI session for the test itself (placing and ending calls, queue changes)."""
    info = local_pbx.status() or pbx
    client = AmiClient(
        host=pbx.ami_host, port=pbx.ami_port, username=info.ami_username, secret=info.ami_secret
    )
    client.start()
    await asyncio.wait_for(client.connected.wait(), 20)
    yield client
    await client.stop()


async def place_call(ami: AmiClient, *, wait_s: int = 60, agent_wait_s: int = 60) -> None:
    await ami.action(
        {
            "Action": "Originate",
            "Channel": "Local/s@test-caller/n",
            "Context": "hotline-inbound",
            "Exten": "12345",
            "Priority": 1,
            "Async": "true",
            "CallerID": "13800138000",
            "Variable": [f"TEST_WAIT={wait_s}", "TEST_DTMF=0", f"__TEST_AGENT_WAIT={agent_wait_s}"],
        }
    )


async def hang_up(ami: AmiClient, channels: list[str]) -> None:
    for channel in channels:
        try:
            await ami.action({"Action": "Hangup", "Channel": channel})
        except Exception:  # already gone
            pass


async def rows(database: Any) -> list[CallRecord]:
    async with database() as session:
        return list((await session.scalars(select(CallRecord))).all())


async def test_waiting_caller_with_no_free_agent_is_redirected_to_the_bot_once(
    start_controller: Callable[..., Any], ami_session: AmiClient, database: Any
) -> None:
    ctrl = await start_controller()
    # the estimate starts from the configured handle time, not from calls of earlier tests (known_queue)
    assert ctrl.handle_time.value == ctrl.cfg.default_talk_time_s
    seen = Events(ctrl)
    agent = "Local/6811@test-agent/n"
    await ctrl.add_agent(agent, "测试坐席")
    await seen.wait(lambda e: isinstance(e, ev.MemberState) and e.interface == agent)
    assert list(ctrl.state.members) == [agent]  # the only agent (known_queue emptied the queue)
    channels: list[str] = []
    try:
        since = len(seen.seen)
        await place_call(ami_session)  # makes the agent busy
        first = await seen.wait(lambda e: isinstance(e, ev.AgentConnected))
        channels.append(first.chan.channel)
        assert first.interface == agent
        await until_in_use(seen, agent, since)
        await place_call(ami_session)
        second = await seen.wait(
            lambda e: isinstance(e, ev.CallerJoined) and e.chan.uniqueid != first.chan.uniqueid
        )
        channels.append(second.chan.channel)
        try:
            bot = await seen.wait(
                lambda e: isinstance(e, ev.BotStarted) and e.chan.uniqueid == second.chan.uniqueid
            )
        except (
            TimeoutError
        ):  # say why: the controller's last decisions and what it knew of the queue
            pytest.fail(f"no redirect; {explain(ctrl, seen)}")
        assert isinstance(bot, ev.BotStarted) and bot.bot_uuid
        redirects = [
            d for d in ctrl.decisions if any(c.uniqueid == second.chan.uniqueid for c in d.redirect)
        ]
        assert [d.reason for d in redirects] == ["wait_over_limit"]
        # no bot is listening: the dialplan sends the caller back to the queue, where it is never redirected again
        await seen.wait(
            lambda e: (
                isinstance(e, ev.CallerJoined)
                and e.chan.uniqueid == second.chan.uniqueid
                and e.at > bot.at
            )
        )
        await ctrl.flush()
        call = ctrl.state.calls[second.chan.uniqueid]
        assert call.from_bot and not call.overflow_eligible()
        await asyncio.wait_for(_ticks(ctrl, 5), 10)
        assert (
            sum(any(c.uniqueid == second.chan.uniqueid for c in d.redirect) for d in ctrl.decisions)
            == 1
        )
    finally:
        await hang_up(ami_session, channels)
        await ctrl.remove_agent(agent)
    await ctrl.flush()
    logged = {r.uniqueid: r for r in await rows(database)}
    assert (
        logged[second.chan.uniqueid].redirected_to_bot
        and logged[second.chan.uniqueid].bot_uuid == bot.bot_uuid
    )
    assert logged[first.chan.uniqueid].answered_by == "agent"


async def _ticks(ctrl: HotlineController, n: int) -> None:
    """Let the controller re-evaluate ``n`` more times (its decision ring grows or its tick passes)."""
    for _ in range(n):
        ctrl._wake.set()
        await asyncio.sleep(ctrl.cfg.tick_s)


async def test_leader_window_adds_and_removes_the_member_and_survives_controller_restarts(
    start_controller: Callable[..., Any], ami_session: AmiClient, database: Any, settings: Settings
) -> None:
    tz = ZoneInfo(settings.timezone)
    leader = "Local/6899@test-agent/n"
    now = datetime.now(tz)
    end = (now + timedelta(seconds=25)).replace(microsecond=0)
    assert end.date() == now.date(), "run this test outside the last half minute of the day"
    async with database() as session:
        await add_shift(
            session,
            ShiftInput(
                now.date(),
                (now - timedelta(minutes=1)).time().replace(microsecond=0),
                end.time(),
                "李明",
                leader,
                "区长",
                "区政府",
            ),
        )

    async def member(ctrl: HotlineController) -> Any:
        reply = await ctrl.ami.action({"Action": "QueueStatus", "Queue": "hotline"}, as_list=True)
        assert isinstance(reply, list)
        found = [
            m for m in reply if m.get("Event") == "QueueMember" and m.get("Location") == leader
        ]
        return found[0] if found else None

    ctrl = (
        await start_controller()
    )  # the window is reconciled during the first resync, before "connected"
    m = await member(ctrl)
    assert m is not None and m["Penalty"] == "0" and m["Name"] == "李明（区长）"
    await ctrl.stop()

    # restart inside the window after the member was lost (e.g. an Asterisk restart): restored
    await ami_session.action({"Action": "QueueRemove", "Queue": "hotline", "Interface": leader})
    ctrl = await start_controller()
    assert await member(ctrl) is not None  # reconciled during the first resync, before "connected"
    await ctrl.stop()

    # the window closes while no controller runs: the next one removes the member at once
    await asyncio.sleep(max(0.0, (end - datetime.now(tz)).total_seconds()) + 0.5)
    ctrl = await start_controller()
    assert await member(ctrl) is None


async def test_ami_cut_mid_call_loses_no_call_and_duplicates_none(
    start_controller: Callable[..., Any], ami_session: AmiClient, database: Any
) -> None:
    ctrl = await start_controller(enabled=False)
    seen = Events(ctrl)
    agent = "Local/6812@test-agent/n"
    await ctrl.add_agent(agent, "测试坐席")
    try:
        since = len(seen.seen)
        await place_call(ami_session)
        ends_in_gap = await seen.wait(lambda e: isinstance(e, ev.AgentConnected))
        await until_in_use(seen, agent, since)
        await place_call(ami_session)
        survives = await seen.wait(
            lambda e: (
                isinstance(e, ev.CallerJoined) and e.chan.uniqueid != ends_in_gap.chan.uniqueid
            )
        )
        await ctrl.flush()
        resyncs = ctrl.resyncs
        ctrl.ami.drop_connection()  # the TCP connection is cut
        await hang_up(
            ami_session, [ends_in_gap.chan.channel]
        )  # this call ends while nobody listens
        async with asyncio.timeout(20):
            while ctrl.resyncs == resyncs or not ctrl.ami.connected.is_set():  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        await ctrl.flush()
        by_id = {r.uniqueid: r for r in await rows(database)}
        gone = by_id[ends_in_gap.chan.uniqueid]
        assert gone.ended_at is not None and gone.closed_by_resync and gone.outcome == "agent"
        assert (
            by_id[survives.chan.uniqueid].ended_at is None
        )  # still live: not closed by the resync
        assert survives.chan.uniqueid in ctrl.state.calls
        await hang_up(ami_session, [survives.chan.channel])
        await seen.wait(
            lambda e: isinstance(e, ev.ChannelHungUp) and e.chan.uniqueid == survives.chan.uniqueid
        )
        await ctrl.flush()
    finally:
        await ctrl.remove_agent(agent)
    all_rows = await rows(database)
    ids = [r.uniqueid for r in all_rows]
    assert len(ids) == len(set(ids))  # upserts by Uniqueid: no duplicate after the resync
    kept = {r.uniqueid: r for r in all_rows}[survives.chan.uniqueid]
    assert kept.ended_at is not None and not kept.closed_by_resync


async def test_asterisk_restart_is_survived_without_help(
    start_controller: Callable[..., Any], local_pbx: Any, database: Any, settings: Settings
) -> None:
    tz = ZoneInfo(settings.timezone)
    leader = "Local/6898@test-agent/n"
    now = datetime.now(tz)
    async with (
        database() as session
    ):  # a leader window open across the restart: re-added afterwards
        await add_shift(
            session, ShiftInput(now.date(), time(0, 0), time(23, 59, 59), "王丽", leader)
        )
    ctrl = await start_controller()
    seen = Events(ctrl)
    before = ctrl.resyncs
    await asyncio.to_thread(local_pbx.restart)
    async with asyncio.timeout(60):
        while ctrl.resyncs == before or not ctrl.ami.connected.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    assert ctrl.ami.stats.disconnects >= 1
    booted = [e for e in seen.seen if isinstance(e, ev.AsteriskBooted)]
    assert booted  # the new Asterisk announced itself on the new session
    reply = await ctrl.ami.action({"Action": "QueueStatus", "Queue": "hotline"}, as_list=True)
    assert isinstance(reply, list)
    assert any(m.get("Location") == leader and m.get("Penalty") == "0" for m in reply)
