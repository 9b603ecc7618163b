"""Missed-call call-backs (漏接电话回拨) against the real local Asterisk, from the abandoned call to the agent.

A caller (``Local/s@test-caller/n`` into hotline-inbound) hangs up while waiting in the queue, its only agent
busy with another caller: the controller logs it abandoned and counts it into a task for the caller's number.
The missed-call scheduler rings that number into ``hotline-missed-callback`` (the citizen is the
``test-citizen`` context, behaviour from the global TEST_CITIZEN_<number>), which queues the citizen; an
emulated agent answers and the Queue gosub ``hotline-missed-reached`` reports ``reached_agent``.

The scheduler runs on a controlled clock (retries after the interval without waiting an hour); the calls are real.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from config import Settings
from hotline.wiring import Telephony, subscribe
from ivr import events as ev
from ivr.callbacks import RESULT_FAMILY, CallbackScheduler, MissedCallJob
from ivr.controller import HotlineController
from ivr.missed_calls import task_key
from ivr.models import CallbackAttempt, CallRecord, MissedCall
from tests.e2e.controller_support import (
    Clock,
    Events,
    callback_settings,
    citizen,
    dial_12345,
    hang_up,
    new_number,
    running,
    until_in_use,
)

pytestmark = [pytest.mark.pbx, pytest.mark.slow]

BUSY_AGENT, AGENT = (
    "Local/6861@test-agent/n",
    "Local/6862@test-agent/n",
)  # 68xx: reserved for the e2e tests


def missed_call_settings(settings: Settings, pbx: Any) -> Settings:
    return callback_settings(settings, pbx, allowed_start=time.min, allowed_end=time.max)


@pytest.fixture(scope="module")
def missed_call_dialplan(local_pbx: Any) -> None:
    """The PBX runs the current dialplan (one started by an older checkout needs `hotline pbx restart`)."""
    for context in ("hotline-missed-callback", "hotline-missed-reached", "test-citizen"):
        assert context in local_pbx.rx(f"dialplan show {context}"), (
            f"{context} missing: restart the local PBX"
        )


@pytest.fixture
async def controller(
    settings: Settings, pbx: Any, local_pbx: Any, database: Any, missed_call_dialplan: None
) -> AsyncIterator[HotlineController]:
    async with running(
        missed_call_settings(settings, pbx), database, local_pbx, pbx, agents=(BUSY_AGENT, AGENT)
    ) as ctrl:
        yield ctrl


@pytest.fixture
def events(controller: HotlineController) -> Events:
    return Events(controller)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC))


@pytest.fixture
def scheduler(controller: HotlineController, database: Any, clock: Clock) -> CallbackScheduler:
    scheduler = CallbackScheduler(
        controller,
        database,
        controller.settings,
        clock=clock,
        job=MissedCallJob(controller.settings),
    )
    subscribe(
        Telephony(controller, (scheduler,))
    )  # the running controller's own subscription is not repeated
    return scheduler


async def place_call(ctrl: HotlineController, number: str, *, wait_s: int) -> str:
    """A caller from ``number`` dialling 12345, straight to the queue (DTMF 0), hanging up after ``wait_s``;
    returns the Uniqueid of its hotline side."""
    variables = [f"TEST_WAIT={wait_s}", "TEST_DTMF=0", "__TEST_AGENT_WAIT=60"]
    return await dial_12345(ctrl.ami, number, variables, prefix="e2e-missed-")


async def missed_call_task(
    ctrl: HotlineController, database: Any, events: Events, number: str
) -> MissedCall:
    """A call from ``number`` abandoned while waiting in the queue (its only agent busy with another caller),
    logged by the controller; returns the task it was counted into."""
    await ctrl.add_agent(BUSY_AGENT, "忙碌坐席")
    await events.wait(lambda e: isinstance(e, ev.MemberState) and e.interface == BUSY_AGENT)
    since = len(events.seen)
    occupant = await place_call(ctrl, new_number(), wait_s=60)
    busy = await events.wait(
        lambda e: isinstance(e, ev.AgentConnected) and e.chan.uniqueid == occupant
    )
    await until_in_use(events, BUSY_AGENT, since)
    try:
        caller = await place_call(ctrl, number, wait_s=3)
        await events.wait(lambda e: isinstance(e, ev.CallerJoined) and e.chan.uniqueid == caller)
        await events.wait(lambda e: isinstance(e, ev.CallerAbandoned) and e.chan.uniqueid == caller)
        await events.wait(lambda e: isinstance(e, ev.ChannelHungUp) and e.chan.uniqueid == caller)
    finally:
        await hang_up(ctrl, busy.chan.channel)
        await ctrl.remove_agent(BUSY_AGENT)
    async with asyncio.timeout(15):  # the hang-up is logged by the controller's write queue
        while True:
            await ctrl.flush()
            async with database() as session:
                row = await session.scalar(select(CallRecord).where(CallRecord.uniqueid == caller))
                if row is not None and row.missed_call_id is not None:
                    assert (row.outcome, row.abandoned_in) == ("abandoned", "queue")
                    task = await session.get(MissedCall, row.missed_call_id)
                    assert task is not None
                    return task
            await asyncio.sleep(0.1)


async def test_abandoned_caller_is_rung_back_and_reaches_an_agent(
    controller: HotlineController,
    scheduler: CallbackScheduler,
    database: Any,
    events: Events,
    clock: Clock,
) -> None:
    number = new_number()
    task = await missed_call_task(controller, database, events, number)
    assert (task.number, task.state, task.calls, task.attempts) == (number, "open", 1, 0)
    key = task_key(task.id)

    await citizen(controller, number, "")  # answers and stays on the line
    await controller.add_agent(AGENT, "测试坐席")
    await events.wait(lambda e: isinstance(e, ev.MemberState) and e.interface == AGENT)
    assert await scheduler.run_once(clock()) == [key]
    [attempt] = scheduler.in_flight
    try:
        connected = await events.wait(
            lambda e: isinstance(e, ev.AgentConnected) and e.chan.uniqueid == attempt.uniqueid
        )
        assert (
            connected.interface == AGENT and connected.chan.caller_number == number
        )  # the screen pop's number
        [outcome] = await scheduler.wait_outcomes(key)
    finally:  # the citizen's side of the call-back: ends the call
        for chan in [
            e.chan.channel
            for e in events.seen
            if isinstance(e, ev.AgentConnected) and e.chan.uniqueid == attempt.uniqueid
        ]:
            await hang_up(controller, chan)
    await events.wait(
        lambda e: isinstance(e, ev.ChannelHungUp) and e.chan.uniqueid == attempt.uniqueid
    )
    # reported live by the Queue gosub on the agent's leg (UserEvent), and durably in AstDB
    assert (outcome.result, outcome.reason, outcome.ticket_state) == (
        "reached_agent",
        "missed: reached_agent",
        "reached_agent",
    )
    assert await controller.astdb_get(RESULT_FAMILY, attempt.uniqueid) == "reached_agent"
    async with database() as session:
        task = await session.get(MissedCall, task.id, populate_existing=True)
        assert task is not None
        assert (task.state, task.attempts, task.reached_call) == (
            "reached_agent",
            1,
            attempt.uniqueid,
        )
        row = await session.scalar(
            select(CallbackAttempt).where(CallbackAttempt.uniqueid == attempt.uniqueid)
        )
        assert row is not None and (row.kind, row.ticket_no, row.result) == (
            "missed",
            key,
            "reached_agent",
        )
    await controller.flush()
    async with (
        database() as session
    ):  # the call-back is a call-back in the call log, never a new missed call
        logged = await session.scalar(
            select(CallRecord).where(CallRecord.uniqueid == attempt.uniqueid)
        )
        assert logged is not None and logged.outcome == "callback"
        assert (await session.scalars(select(MissedCall.id))).all() == [task.id]
    assert await scheduler.run_once(clock()) == []  # done: never rung again


async def test_citizen_who_answers_while_no_agent_is_logged_in_ends_answered(
    controller: HotlineController,
    scheduler: CallbackScheduler,
    database: Any,
    events: Events,
    clock: Clock,
) -> None:
    number = new_number()
    task = await missed_call_task(controller, database, events, number)
    key = task_key(task.id)
    await citizen(controller, number, "")
    assert await scheduler.run_once(clock()) == [
        key
    ]  # no member: Queue() returns at once (JOINEMPTY)
    [attempt] = scheduler.in_flight
    [outcome] = await scheduler.wait_outcomes(key)
    # the UserEvent is only sent for an agent: "answered" comes from AstDB when the call-back hangs up
    assert (outcome.result, outcome.reason, outcome.ticket_state) == (
        "answered",
        "stored: answered",
        "answered",
    )
    await controller.flush()
    async with database() as session:
        task = await session.get(MissedCall, task.id, populate_existing=True)
        assert task is not None and (task.state, task.attempts, task.reached_call) == (
            "answered",
            1,
            None,
        )
        logged = await session.scalar(
            select(CallRecord).where(CallRecord.uniqueid == attempt.uniqueid)
        )
        assert (
            logged is not None and logged.outcome == "callback"
        )  # not an abandoned call of its own
        assert (await session.scalars(select(MissedCall.id))).all() == [task.id]
    assert await scheduler.run_once(clock()) == []


async def test_unanswered_call_back_is_retried_after_the_interval_then_unreachable(
    controller: HotlineController,
    scheduler: CallbackScheduler,
    database: Any,
    events: Events,
    clock: Clock,
) -> None:
    number = new_number()
    task = await missed_call_task(controller, database, events, number)
    key = task_key(task.id)
    await citizen(controller, number, "noanswer")
    start = clock.now

    assert await scheduler.run_once(clock()) == [key]
    [first] = await scheduler.wait_outcomes(key)
    assert (first.result, first.ticket_state) == ("unreachable", "open")
    async with database() as session:
        task = await session.get(MissedCall, task.id, populate_existing=True)
        assert task is not None
        assert (task.attempts, task.next_attempt_at) == (1, start + timedelta(minutes=60))

    clock.now = start + timedelta(minutes=59)  # inside the retry interval: not rung
    assert await scheduler.run_once(clock()) == []
    clock.now = start + timedelta(minutes=60)
    assert await scheduler.run_once(clock()) == [key]
    second = (await scheduler.wait_outcomes(key, 2))[1]
    assert (second.result, second.ticket_state) == (
        "unreachable",
        "unreachable",
    )  # max_attempts = 2
    async with database() as session:
        task = await session.get(MissedCall, task.id, populate_existing=True)
        assert task is not None and (task.state, task.attempts, task.reached_call) == (
            "unreachable",
            2,
            None,
        )
        results = (
            await session.scalars(
                select(CallbackAttempt.result)
                .where(CallbackAttempt.ticket_no == key)
                .order_by(CallbackAttempt.id)
            )
        ).all()
    assert results == ["unreachable", "unreachable"]
    clock.now += timedelta(hours=2)
    assert await scheduler.run_once(clock()) == []
