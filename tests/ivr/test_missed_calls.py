"""Missed-call call-backs (漏接电话回拨): tasks from the call log (recorded AMI replayed, replays and resyncs
counted once), withheld numbers counted but never called, a recall closing the task, and the scheduler ringing
open tasks in the allowed hours with retries (Asterisk's replies replayed in memory, as in test_callbacks)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from hotline.wiring import Telephony, subscribe
from ivr.ami import AmiClient, HardenedAmiProtocol
from ivr.callbacks import CallbackScheduler, MissedCallJob, SurveyJob
from ivr.calllog import (
    CallRows,
    CloseUnseen,
    call_rows,
    get_call,
    link_ticket,
    upsert_calls,
    write_entry,
)
from ivr.controller import HotlineController
from ivr.missed_calls import closing_ticket
from ivr.models import CallbackAttempt, MissedCall
from ivr.state import Call, HotlineState
from tests.ivr.amitools import Replayer, attach, fixture_bytes, new_client
from tests.ivr.callback_support import MONDAY_10AM, TZ
from tests.ivr.test_callbacks import RecordedAsteriskReplies, connect

ABANDONER = (
    "13700137000"  # gives up in the queue in leader_and_abandon.ami (2025-03-04 10:01 local)
)
ABANDONED_CALL = "1741053701.22"  # ABANDONER's call
TICKET = "12345-20250303-00007"
NUMBER = "13912345678"


async def write(sessionmaker: async_sessionmaker[AsyncSession], calls: list[Call]) -> None:
    """Write calls the way the controller does (call log, then the missed-call tasks)."""
    async with sessionmaker() as session:
        await write_entry(session, CallRows(tuple(call_rows(calls, MONDAY_10AM))), TZ, MONDAY_10AM)


async def tasks(sessionmaker: async_sessionmaker[AsyncSession]) -> list[MissedCall]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(MissedCall).order_by(MissedCall.id))).all())


def abandoned(
    uniqueid: str, number: str = NUMBER, at: datetime = MONDAY_10AM, **fields: object
) -> Call:
    call = Call(
        uniqueid,
        uniqueid,
        f"PJSIP/trunk-{uniqueid}",
        number,
        "12345",
        at,
        queue="hotline",
        ended_at=at + timedelta(seconds=40),
    )
    return replace(call, **fields)  # type: ignore[arg-type]


async def test_recorded_abandon_makes_one_task_whatever_replays(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    state = HotlineState("hotline")
    state.set_leaders([("PJSIP/6009", "李明", "liming")])
    replayer = Replayer(client := new_client(), state)
    protocol, _ = attach(client)
    protocol.data_received(fixture_bytes("leader_and_abandon.ami"))
    for _ in range(
        2
    ):  # the whole stream twice: a spool replay or a resync writes the same calls again
        for update in replayer.updates:
            await write(sessionmaker, update.calls)
    [task] = await tasks(sessionmaker)
    assert (task.number, task.day.isoformat(), task.calls, task.state, task.attempts) == (
        ABANDONER,
        "2025-03-04",
        1,
        "open",
        0,
    )
    assert task.first_call == "1741053701.22"  # the leader's caller (answered) makes no task


async def test_two_abandons_of_a_number_on_a_day_are_one_task(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await write(
        sessionmaker, [abandoned("1.1"), abandoned("1.2", at=MONDAY_10AM + timedelta(hours=2))]
    )
    await write(sessionmaker, [abandoned("1.2", at=MONDAY_10AM + timedelta(hours=2))])
    await write(
        sessionmaker,
        [abandoned("1.3", number="+86 139-1234-5678", at=MONDAY_10AM + timedelta(hours=3))],
    )
    await write(
        sessionmaker, [abandoned("1.4", at=MONDAY_10AM + timedelta(days=1))]
    )  # the next day: a task of its own
    first, second = await tasks(sessionmaker)
    assert (first.number, first.calls, first.first_call, second.calls) == (NUMBER, 3, "1.1", 1)


async def test_withheld_and_invalid_numbers_are_counted_never_called(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await write(
        sessionmaker,
        [
            abandoned("2.1", number=""),
            abandoned("2.2", number="anonymous"),
            abandoned("2.3", number="12"),
        ],
    )
    [task] = await tasks(sessionmaker)
    assert (task.number, task.calls, task.state) == ("", 3, "withheld")
    client = new_client()
    sent = connect(client)
    assert (
        await missed_scheduler(settings, sessionmaker, client, [MONDAY_10AM]).run_once(MONDAY_10AM)
        == []
    )
    assert sent.originates == []


async def test_abandons_with_a_ticket_or_answered_make_no_task(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await write(
        sessionmaker,
        [
            abandoned("3.1", answered_by="agent", answered_at=MONDAY_10AM),
            abandoned("3.2", bot_uuid="u-3"),
            abandoned("3.3", is_callback=True),
        ],
    )
    async with (
        sessionmaker() as session
    ):  # a ticket filed for the call before its hang-up reached the log
        await upsert_calls(session, [abandoned("3.4", ended_at=None)])
        await link_ticket(session, "3.4", "12345-20250303-00001")
    await write(sessionmaker, [abandoned("3.4")])
    assert await tasks(sessionmaker) == []


async def test_a_recall_answered_closes_the_task_and_a_resync_close_out_counts(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with (
        sessionmaker() as session
    ):  # a call the controller lost sight of: the resync close-out abandons it
        await upsert_calls(session, [abandoned("4.1", ended_at=None)])
        await write_entry(
            session, CloseUnseen(frozenset(), MONDAY_10AM + timedelta(minutes=1)), TZ, MONDAY_10AM
        )
    [task] = await tasks(sessionmaker)
    assert (task.calls, task.state) == (1, "open")
    later = MONDAY_10AM + timedelta(hours=1)
    await write(
        sessionmaker,
        [abandoned("4.2", at=later, answered_by="agent", answered_at=later, ended_at=None)],
    )
    [task] = await tasks(sessionmaker)
    assert (task.state, task.outcome) == ("closed_by_recall", "recall: 4.2")


async def test_a_ticket_linked_to_a_counted_call_closes_its_open_task(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    other = "13600136000"
    await write(
        sessionmaker,
        [abandoned("6.1"), abandoned("6.2", number=""), abandoned("6.3", number=other)],
    )
    async with (
        sessionmaker() as session
    ):  # a message filed after its caller hung up while recording
        assert await link_ticket(session, "6.1", TICKET, now=MONDAY_10AM)
        assert await link_ticket(
            session, "6.2", "12345-20250303-00008"
        )  # the withheld day's count stays
    await write(sessionmaker, [abandoned("6.1")])  # replayed: stays closed, counted once
    # the controller writes a call again with the ticket it learnt of (the bot's, a message's)
    await write(sessionmaker, [abandoned("6.3", number=other, ticket_no="12345-20250303-00009")])
    task, withheld, other_task = await tasks(sessionmaker)
    assert (task.state, task.calls, task.outcome, task.next_attempt_at, closing_ticket(task)) == (
        "closed_by_ticket",
        1,
        f"ticket: {TICKET}",
        None,
        TICKET,
    )
    assert (withheld.state, closing_ticket(withheld)) == ("withheld", None)
    assert (other_task.state, closing_ticket(other_task)) == (
        "closed_by_ticket",
        "12345-20250303-00009",
    )


async def recorded_controller(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> tuple[HotlineController, HardenedAmiProtocol]:
    controller = HotlineController(
        settings,
        sessionmaker,
        new_client(),
        is_working_day=lambda _d: True,
        clock=lambda: MONDAY_10AM,
    )
    subscribe(Telephony(controller))
    await controller.start()
    return controller, attach(controller.ami)[0]


async def test_recorded_abandon_then_its_ticket_closes_the_task(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """The caller hung up while recording a message: the call log counts the abandon before the message's ticket
    is linked to the call; the link closes the task."""
    controller, protocol = await recorded_controller(settings, sessionmaker)
    protocol.data_received(fixture_bytes("leader_and_abandon.ami"))
    await asyncio.wait_for(controller.flush(), 10)
    [task] = await tasks(sessionmaker)
    assert task.state == "open"
    await asyncio.wait_for(controller.link_ticket(ABANDONED_CALL, TICKET), 10)
    [task] = await tasks(sessionmaker)
    assert (task.state, closing_ticket(task)) == ("closed_by_ticket", TICKET)
    await controller.stop()


async def test_recorded_call_linked_before_its_hang_up_makes_no_task(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    stream = fixture_bytes("leader_and_abandon.ami")
    hang_up = stream.index(b"Event: Hangup\r\n")  # ABANDONER's
    controller, protocol = await recorded_controller(settings, sessionmaker)
    protocol.data_received(stream[:hang_up])
    await asyncio.wait_for(
        controller.link_ticket(ABANDONED_CALL, TICKET), 10
    )  # filed while still on the line
    protocol.data_received(stream[hang_up:])
    await asyncio.wait_for(controller.flush(), 10)
    assert await tasks(sessionmaker) == []
    async with sessionmaker() as session:
        call = await get_call(session, ABANDONED_CALL)
        assert call is not None and (call.outcome, call.ticket_no, call.missed_call_id) == (
            "abandoned",
            TICKET,
            None,
        )
    await controller.stop()


# -- ringing -----------------------------------------------------------------------------------------------------
def missed_scheduler(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    client: AmiClient,
    clock: list[datetime],
) -> CallbackScheduler:
    controller = HotlineController(settings, sessionmaker, client, is_working_day=lambda _d: True)
    scheduler = CallbackScheduler(
        controller, sessionmaker, settings, clock=lambda: clock[0], job=MissedCallJob(settings)
    )
    subscribe(Telephony(controller, (scheduler,)))
    return scheduler


def originate_failed(client: object, sent: RecordedAsteriskReplies, reason: str = "5") -> None:
    action_id = sent.originates[-1]["ActionID"]
    client._protocol.data_received(  # type: ignore[attr-defined]
        f"Event: OriginateResponse\r\nActionID: {action_id}\r\nResponse: Failure\r\nChannel: PJSIP/{NUMBER}@trunk\r\n"
        f"Context: hotline-missed-callback\r\nExten: s\r\nReason: {reason}\r\nUniqueid: <null>\r\n\r\n".encode()
    )


async def test_task_rung_in_allowed_hours_retried_then_unreachable(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await write(sessionmaker, [abandoned("5.1", at=MONDAY_10AM.replace(hour=7))])
    [task] = await tasks(sessionmaker)
    key = f"missed-{task.id}"
    client = new_client()
    sent = connect(client)
    clock = [MONDAY_10AM.replace(hour=8)]
    scheduler = missed_scheduler(settings, sessionmaker, client, clock)
    assert await scheduler.run_once(clock[0]) == []  # before allowed_start
    clock[0] = MONDAY_10AM
    assert await scheduler.run_once(clock[0]) == [key]
    [originate] = sent.originates
    assert (
        originate["Context"] == "hotline-missed-callback"
        and originate["Channel"] == f"PJSIP/{NUMBER}@trunk"
    )
    assert (
        f"Variable: MISSED_CALL={key}\r\nVariable: CITIZEN_NUMBER={NUMBER}\r\n".encode()
        in sent.written
    )
    assert (await tasks(sessionmaker))[0].state == "ringing"
    retry = timedelta(minutes=settings.callback.retry_interval_minutes)
    for attempt in range(1, settings.callback.max_attempts + 1):
        originate_failed(client, sent)
        [*_, outcome] = await scheduler.wait_outcomes(key, attempt, timeout_s=5)
        [task] = await tasks(sessionmaker)
        assert (outcome.result, task.attempts, task.outcome) == (
            "unreachable",
            attempt,
            "originate: busy",
        )
        if attempt < settings.callback.max_attempts:
            assert (task.state, task.next_attempt_at) == ("open", clock[0] + retry)
            assert await scheduler.run_once(clock[0]) == []  # not before the retry interval
            clock[0] += retry
            assert await scheduler.run_once(clock[0]) == [key]
    assert (task.state, task.next_attempt_at, len(sent.originates)) == ("unreachable", None, 3)
    clock[0] += retry
    assert await scheduler.run_once(clock[0]) == []


def agent_reached(client: object, key: str) -> None:
    """The dialplan's Queue gosub on the agent's leg reports that an agent took the call-back."""
    client._protocol.data_received(  # type: ignore[attr-defined]
        f"Event: UserEvent\r\nPrivilege: user,all\r\nChannel: Local/6001@test-agent-00000009;1\r\n"
        f"Context: hotline-missed-reached\r\nExten: s\r\nPriority: 2\r\nUniqueid: 1741053900.31\r\n"
        f"Linkedid: 1741053900.30\r\nUserEvent: HotlineCallback\r\nTicketNo: {key}\r\n"
        "Result: reached_agent\r\n\r\n".encode()
    )


async def ringing_task(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> tuple[str, AmiClient, RecordedAsteriskReplies, CallbackScheduler]:
    """A caller who gave up half an hour ago, and the missed-call scheduler that has just rung them back."""
    await write(sessionmaker, [abandoned("6.1", at=MONDAY_10AM - timedelta(minutes=30))])
    client = new_client()
    sent = connect(client)
    scheduler = missed_scheduler(settings, sessionmaker, client, [MONDAY_10AM])
    [key] = await scheduler.run_once(MONDAY_10AM)
    return key, client, sent, scheduler


async def test_citizen_reaching_an_agent_ends_the_task_and_a_survey_scheduler_leaves_it_alone(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    key, client, sent, scheduler = await ringing_task(settings, sessionmaker)
    later = MONDAY_10AM + timedelta(seconds=settings.callback.attempt_timeout_s + 1)
    survey = CallbackScheduler(
        scheduler.controller, sessionmaker, settings, clock=lambda: later, job=SurveyJob(settings)
    )
    subscribe(
        Telephony(scheduler.controller, (survey,))
    )  # the controller's own subscription is not repeated
    assert await survey.run_once(later) == []  # another job's open attempt is not its to expire
    agent_reached(client, key)
    [outcome] = await scheduler.wait_outcomes(key, timeout_s=5)
    [task] = await tasks(sessionmaker)
    channel_id = sent.originates[0]["ChannelId"]
    assert (outcome.result, outcome.ticket_state) == ("reached_agent", "reached_agent")
    assert (task.state, task.attempts, task.reached_call) == ("reached_agent", 1, channel_id)
    async with sessionmaker() as session:
        [row] = (await session.scalars(select(CallbackAttempt))).all()
    assert (row.kind, row.result, row.ticket_no) == ("missed", "reached_agent", key)


async def test_answered_result_recovered_from_astdb_after_a_hangup(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    key, client, sent, scheduler = await ringing_task(settings, sessionmaker)
    channel_id = sent.originates[0]["ChannelId"]
    sent.astdb[channel_id] = "answered"  # picked up, left the queue before an agent answered
    client._protocol.data_received(  # type: ignore[union-attr]
        f"Event: Hangup\r\nPrivilege: call,all\r\nChannel: PJSIP/trunk-00000001\r\nChannelState: 6\r\n"
        f"Context: hotline-missed-callback\r\nExten: s\r\nPriority: 12\r\nUniqueid: {channel_id}\r\n"
        f"Linkedid: {channel_id}\r\nCause: 16\r\nCause-txt: Normal Clearing\r\n\r\n".encode()
    )
    [outcome] = await scheduler.wait_outcomes(key, timeout_s=5)
    assert (outcome.result, outcome.reason, outcome.ticket_state) == (
        "answered",
        "stored: answered",
        "answered",
    )


async def test_a_recall_while_ringing_keeps_the_task_closed(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    key, client, sent, scheduler = await ringing_task(settings, sessionmaker)
    await write(
        sessionmaker, [abandoned("8.2", answered_by="agent", answered_at=MONDAY_10AM)]
    )  # the citizen calls in
    originate_failed(client, sent)
    await scheduler.wait_outcomes(key, timeout_s=5)
    [task] = await tasks(sessionmaker)
    assert (task.state, task.attempts) == ("closed_by_recall", 0)
