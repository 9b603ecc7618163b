"""The call-back scheduler's bookkeeping on SQLite and PostgreSQL, with Asterisk's replies replayed in memory.

What the real Asterisk cannot be made to show on demand is covered here: an attempt whose controller died
(no result ever comes), an attempt held open by another controller, Asterisk refusing the Originate, and the
AMI connection being down. The call flows themselves are tested against the real PBX (tests/e2e/test_callbacks.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from config import Settings
from hotline.wiring import Telephony, subscribe
from ivr.ami import AmiClient
from ivr.callbacks import (
    CallbackScheduler,
    NotWaitingForCallback,
    NumberBusy,
    OutsideCallbackHours,
    SurveyJob,
)
from ivr.controller import HotlineController
from ivr.models import CallbackAttempt
from tests.ivr.amitools import RecordingTransport, attach, new_client, recorded_reply
from tests.ivr.callback_support import MONDAY_10AM, verified_ticket
from tickets.schemas import Actor, TicketDraft
from tickets.services import create_ticket, get_ticket

NUMBER = "13912345678"


class RecordedAsteriskReplies(RecordingTransport):
    """Answers each action the way Asterisk 22 did (recorded replies): ``originate_reply`` for Originate, DBGet
    from ``astdb`` (the results the dialplan stored), the recorded resync lists for CoreShowChannels and
    QueueStatus."""

    def __init__(
        self, feed: Callable[[bytes], None], originate_reply: str, astdb: dict[str, str]
    ) -> None:
        super().__init__()
        self.feed = feed
        self.originate_reply = originate_reply
        self.astdb = astdb
        self.originates: list[dict[str, str]] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        super().write(data)
        headers = dict(
            line.split(": ", 1) for line in bytes(data).decode().split("\r\n") if ": " in line
        )
        action, action_id = headers.get("Action", ""), headers["ActionID"]
        if action in RESYNC_LISTS:
            self.feed(recorded_reply("resync_lists.ami", RESYNC_LISTS[action], action_id))
            return
        if action == "DBGet":
            key = headers["Key"]
            self.feed(
                recorded_reply("dbget.ami", "FOUND", action_id, KEY=key, VAL=self.astdb[key])
                if key in self.astdb
                else recorded_reply("dbget.ami", "MISSING", action_id)
            )
            return
        reply = "Response: Success\r\nMessage: Success"
        if headers.get("Action") == "Originate":
            self.originates.append(headers)
            reply = self.originate_reply
        self.feed(f"{reply}\r\nActionID: {headers['ActionID']}\r\n\r\n".encode())


RESYNC_LISTS = {
    "CoreShowChannels": "CHANNELS",
    "QueueStatus": "QUEUE",
}  # placeholders in resync_lists.ami
QUEUED = "Response: Success\r\nMessage: Originate successfully queued"
REFUSED = "Response: Error\r\nMessage: Originate failed"


def scheduler_for(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    client: AmiClient,
    now: datetime,
) -> CallbackScheduler:
    controller = HotlineController(settings, sessionmaker, client, is_working_day=lambda _d: True)
    scheduler = CallbackScheduler(controller, sessionmaker, settings, clock=lambda: now)
    subscribe(Telephony(controller, (scheduler,)))
    return scheduler


def connect(
    client: AmiClient, originate_reply: str = QUEUED, astdb: dict[str, str] | None = None
) -> RecordedAsteriskReplies:
    protocol, _ = attach(client)
    transport = RecordedAsteriskReplies(protocol.data_received, originate_reply, astdb or {})
    protocol.transport = transport
    client.connected.set()
    return transport


async def ringing(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> tuple[str, AmiClient, RecordedAsteriskReplies, CallbackScheduler]:
    """A ticket waiting for its call-back, and the scheduler that has just rung it at MONDAY_10AM."""
    ticket_no = await verified_ticket(sessionmaker, NUMBER)
    client = new_client()
    sent = connect(client)
    scheduler = scheduler_for(settings, sessionmaker, client, MONDAY_10AM)
    await scheduler.run_once(MONDAY_10AM)
    return ticket_no, client, sent, scheduler


async def attempts(sessionmaker: async_sessionmaker[AsyncSession]) -> list[CallbackAttempt]:
    async with sessionmaker() as session:
        return list(
            (await session.scalars(select(CallbackAttempt).order_by(CallbackAttempt.id))).all()
        )


async def test_originate_carries_the_ticket_and_the_channel_template(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ticket_no = await verified_ticket(sessionmaker, NUMBER)
    client = new_client()
    sent = connect(client)
    scheduler = scheduler_for(settings, sessionmaker, client, MONDAY_10AM)
    assert await scheduler.run_once(MONDAY_10AM) == [ticket_no]
    [originate] = sent.originates
    assert (
        originate["Channel"] == f"PJSIP/{NUMBER}@trunk"
        and originate["Context"] == "hotline-callback"
    )
    assert originate["Variable"] == f"TICKET_NO={ticket_no}" and originate["CallerID"] == "12345"
    [row] = await attempts(sessionmaker)
    assert row.ended_at is None and row.uniqueid == originate["ChannelId"] == originate["ActionID"]
    assert scheduler.in_flight[0].ticket_no == ticket_no
    assert await scheduler.run_once(MONDAY_10AM) == []  # still ringing: not again


async def test_busy_originate_response_counts_as_an_attempt(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ticket_no, client, sent, scheduler = await ringing(settings, sessionmaker)
    action_id = sent.originates[0]["ActionID"]
    client._protocol.data_received(  # type: ignore[union-attr]
        f"Event: OriginateResponse\r\nActionID: {action_id}\r\nResponse: Failure\r\nChannel: PJSIP/{NUMBER}@trunk\r\n"
        f"Context: hotline-callback\r\nExten: s\r\nReason: 5\r\nUniqueid: <null>\r\n\r\n".encode()
    )
    [outcome] = await scheduler.wait_outcomes(ticket_no, timeout_s=5)
    assert (outcome.result, outcome.reason, outcome.ticket_state) == (
        "unreachable",
        "originate: busy",
        "callback",
    )
    async with sessionmaker() as session:
        assert (await get_ticket(session, ticket_no)).callback_attempts == 1


async def test_refused_originate_counts_as_an_attempt(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ticket_no = await verified_ticket(sessionmaker, NUMBER)
    client = new_client()
    connect(client, REFUSED)
    scheduler = scheduler_for(settings, sessionmaker, client, MONDAY_10AM)
    assert await scheduler.run_once(MONDAY_10AM) == [ticket_no]
    [row] = await attempts(sessionmaker)
    assert row.result == "unreachable" and row.reason.startswith("originate_refused")
    async with sessionmaker() as session:
        ticket = await get_ticket(session, ticket_no)
    assert (ticket.state, ticket.callback_attempts) == ("callback", 1)


async def test_call_never_sent_is_not_counted(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ticket_no = await verified_ticket(sessionmaker, NUMBER)
    client = new_client()
    client.connected.set()  # the connection drops between the check and the Originate: nothing was sent
    scheduler = scheduler_for(settings, sessionmaker, client, MONDAY_10AM)
    await scheduler.run_once(MONDAY_10AM)
    [row] = await attempts(sessionmaker)
    assert (
        row.result is None
        and row.reason == "not_sent: ami.not_connected"
        and row.ended_at is not None
    )
    async with sessionmaker() as session:
        ticket = await get_ticket(session, ticket_no)
    assert (ticket.state, ticket.callback_attempts) == ("verified", 0)
    client.connected.clear()
    assert await scheduler.run_once(MONDAY_10AM) == []  # not connected: nothing is tried


async def test_attempt_held_by_another_controller_blocks_the_number(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await verified_ticket(sessionmaker, NUMBER)
    async with (
        sessionmaker() as session
    ):  # another controller is calling this citizen about another ticket
        session.add(
            CallbackAttempt(
                ticket_no="12345-20250303-09999",
                number=NUMBER,
                uniqueid="callback-other",
                started_at=MONDAY_10AM - timedelta(minutes=1),
            )
        )
        await session.commit()
    client = new_client()
    sent = connect(client)
    scheduler = scheduler_for(settings, sessionmaker, client, MONDAY_10AM)
    assert await scheduler.run_once(MONDAY_10AM) == []
    assert sent.originates == [] and scheduler.in_flight == []


class DueReadEarlier(SurveyJob):
    """A scheduler's job whose due list was read before another controller rang (and concluded) the call."""

    def __init__(self, settings: Settings, due: list[tuple[str, str]]) -> None:
        super().__init__(settings)
        self.read_earlier = due

    async def due(self, session: AsyncSession, now: datetime) -> list[tuple[str, str]]:
        return self.read_earlier


async def test_two_schedulers_racing_for_one_due_ticket_ring_the_citizen_once(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Two controllers on one database (PostgreSQL: two connections at once) tick at the same moment."""
    ticket_no = await verified_ticket(sessionmaker, NUMBER)
    first, second = new_client(), new_client()
    sent = connect(first), connect(second)
    schedulers = [scheduler_for(settings, sessionmaker, c, MONDAY_10AM) for c in (first, second)]
    rung = await asyncio.gather(*(s.run_once(MONDAY_10AM) for s in schedulers))
    assert sorted(rung) == [[], [ticket_no]]
    assert sum(len(t.originates) for t in sent) == 1
    assert [row.ended_at for row in await attempts(sessionmaker)] == [None]


async def test_a_scheduler_with_a_stale_due_list_does_not_ring_a_citizen_rung_meanwhile(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Controller B read the due list; controller A then rang the citizen and the attempt ended (Asterisk
    refused it: one 未接通 attempt, retried only after the retry interval). B must not ring again."""
    ticket_no = await verified_ticket(sessionmaker, NUMBER)
    async with sessionmaker() as session:
        stale = await SurveyJob(settings).due(session, MONDAY_10AM)
    first, second = new_client(), new_client()
    connect(first, REFUSED)
    late = connect(second)
    a = scheduler_for(settings, sessionmaker, first, MONDAY_10AM)
    assert await a.run_once(MONDAY_10AM) == [ticket_no]
    b = scheduler_for(settings, sessionmaker, second, MONDAY_10AM)
    b.job = DueReadEarlier(settings, stale)
    assert await b.run_once(MONDAY_10AM) == [] and late.originates == []
    async with sessionmaker() as session:
        assert (await get_ticket(session, ticket_no)).callback_attempts == 1


class RecordHeld(SurveyJob):
    """A controller's job that holds each result between closing the attempt and recording it, until released."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.holding, self.release = asyncio.Event(), asyncio.Event()

    async def record(self, session: AsyncSession, *args: Any) -> str | None:
        self.holding.set()
        await self.release.wait()
        return await super().record(session, *args)


async def blocked_on_a_lock(engine: AsyncEngine) -> None:
    """Until a connection of this database waits for a lock another transaction holds."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    async with asyncio.timeout(10), engine.connect() as conn:
        while True:
            if await conn.scalar(query):
                return
            # PostgreSQL keeps one snapshot of pg_stat_activity per transaction: end it to see a new one
            await conn.rollback()
            await asyncio.sleep(0.05)  # the server's view of its backends is what we can watch


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
async def test_a_claim_waits_for_the_result_of_an_attempt_being_concluded(
    settings: Settings, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Controller A closes its attempt (the citizen was busy) and is about to record the 未接通 attempt in the
    ticket when B, with a due list read before, claims the ticket: B waits for A's transaction, then sees the
    recorded attempt and does not ring (were the close committed apart, B would ring in between)."""
    ticket_no = await verified_ticket(sessionmaker, NUMBER)
    async with sessionmaker() as session:
        stale = await SurveyJob(settings).due(session, MONDAY_10AM)
    first, second = new_client(), new_client()
    sent, late = connect(first), connect(second)
    a = scheduler_for(settings, sessionmaker, first, MONDAY_10AM)
    assert await a.run_once(MONDAY_10AM) == [ticket_no]
    a.job = held = RecordHeld(settings)
    first._protocol.data_received(  # type: ignore[union-attr]
        f"Event: OriginateResponse\r\nActionID: {sent.originates[0]['ActionID']}\r\nResponse: Failure\r\n"
        f"Channel: PJSIP/{NUMBER}@trunk\r\nReason: 5\r\nUniqueid: <null>\r\n\r\n".encode()
    )
    await held.holding.wait()
    b = scheduler_for(settings, sessionmaker, second, MONDAY_10AM)
    b.job = DueReadEarlier(settings, stale)
    b_tick = asyncio.create_task(b.run_once(MONDAY_10AM))
    await blocked_on_a_lock(engine)
    held.release.set()
    assert await b_tick == [] and late.originates == []
    [outcome] = await a.wait_outcomes(ticket_no, timeout_s=5)
    assert (outcome.result, outcome.ticket_state) == ("unreachable", "callback")


async def test_attempt_of_a_dead_controller_ends_with_its_stored_result_after_the_timeout(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ticket_no = await verified_ticket(sessionmaker, NUMBER)
    started = MONDAY_10AM - timedelta(seconds=settings.callback.attempt_timeout_s + 1)
    async with sessionmaker() as session:
        session.add(
            CallbackAttempt(
                ticket_no=ticket_no, number=NUMBER, uniqueid="callback-lost", started_at=started
            )
        )
        await session.commit()
    client = new_client()
    sent = connect(
        client, astdb={"callback-lost": "unsatisfied"}
    )  # the citizen pressed 3 before it died
    scheduler = scheduler_for(settings, sessionmaker, client, MONDAY_10AM)
    assert await scheduler.run_once(MONDAY_10AM) == []
    [row] = await attempts(sessionmaker)
    assert (row.result, row.reason) == ("unsatisfied", "stored: unsatisfied")
    async with sessionmaker() as session:
        ticket = await get_ticket(session, ticket_no)
    assert (ticket.state, ticket.redispatch_count) == (
        "dispatched",
        1,
    ) and sent.originates == []  # 二次派单


async def test_result_of_a_call_back_answered_while_ami_was_down_is_recovered_on_reconnect(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ticket_no, client, sent, scheduler = await ringing(settings, sessionmaker)
    [originate] = sent.originates
    client._protocol.abort()  # type: ignore[union-attr]  # AMI drops; the citizen presses 1, the UserEvent is lost
    connect(
        client, astdb={originate["ChannelId"]: "satisfied"}
    )  # what the dialplan stored meanwhile
    assert client.on_connected is not None
    await client.on_connected(
        client
    )  # the resync after the reconnect: the call-back is no longer live
    [outcome] = await scheduler.wait_outcomes(ticket_no, timeout_s=5)
    assert (outcome.result, outcome.reason, outcome.ticket_state) == (
        "satisfied",
        "stored: satisfied",
        "closed",
    )
    async with sessionmaker() as session:
        ticket = await get_ticket(session, ticket_no)
    assert (ticket.satisfaction, ticket.callback_attempts) == (
        "satisfied",
        1,
    ) and scheduler.in_flight == []


async def test_hangup_after_a_lost_survey_event_records_the_stored_result(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ticket_no, client, sent, scheduler = await ringing(settings, sessionmaker)
    channel_id = sent.originates[0]["ChannelId"]
    sent.astdb[channel_id] = (
        "basically_satisfied"  # the survey ended; its UserEvent never arrived, the hangup does
    )
    client._protocol.data_received(  # type: ignore[union-attr]
        f"Event: Hangup\r\nPrivilege: call,all\r\nChannel: Local/{NUMBER}@test-citizen-00000001;1\r\n"
        f"ChannelState: 6\r\nContext: hotline-callback\r\nExten: s\r\nPriority: 17\r\nUniqueid: {channel_id}\r\n"
        f"Linkedid: {channel_id}\r\nCause: 16\r\nCause-txt: Normal Clearing\r\n\r\n".encode()
    )
    [outcome] = await scheduler.wait_outcomes(ticket_no, timeout_s=5)
    assert (outcome.result, outcome.ticket_state) == ("basically_satisfied", "closed")


async def test_call_back_whose_outcome_stays_unknown_is_not_counted_and_is_rung_again(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ticket_no, client, sent, scheduler = await ringing(settings, sessionmaker)
    client._protocol.abort()  # type: ignore[union-attr]  # AMI drops while it rings: no event, nothing stored
    back = connect(client)
    assert client.on_connected is not None
    await client.on_connected(client)
    [row] = await attempts(sessionmaker)
    assert row.ended_at is None  # unknown: kept open for reconciliation, not counted
    later = MONDAY_10AM + timedelta(seconds=settings.callback.attempt_timeout_s + 1)
    assert await scheduler.run_once(later) == [ticket_no]  # expired uncounted: rung again at once
    first, second = await attempts(sessionmaker)
    assert (first.result, first.reason, second.ended_at) == (None, "unknown", None)
    async with sessionmaker() as session:
        ticket = await get_ticket(session, ticket_no)
    assert (ticket.state, ticket.callback_attempts) == ("verified", 0)
    assert len(sent.originates) == 1 and len(back.originates) == 1


async def test_console_start_is_refused_with_a_reason(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ticket_no = await verified_ticket(sessionmaker, NUMBER)
    client = new_client()
    connect(client)
    night = MONDAY_10AM.replace(hour=21)
    with pytest.raises(OutsideCallbackHours) as refused:
        await scheduler_for(settings, sessionmaker, client, night).start_callback(ticket_no)
    assert refused.value.code == "callback.outside_hours" and "回访时段" in refused.value.message
    scheduler = scheduler_for(settings, sessionmaker, client, MONDAY_10AM)
    async with sessionmaker() as session:
        draft = TicketDraft(
            channel="phone", caller_phone="13900000000", content="想问一下办理居住证需要哪些材料"
        )
        fresh = await create_ticket(
            session, draft, Actor("王话务", "agent"), now=MONDAY_10AM, settings=settings
        )
    with pytest.raises(NotWaitingForCallback):
        await scheduler.start_callback(fresh.ticket_no)
    await scheduler.start_callback(ticket_no)
    with pytest.raises(NumberBusy):
        await scheduler.start_callback(ticket_no)
    assert scheduler.originated == 1


async def test_call_back_logs_mask_the_citizen_number(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Placing a call-back and skipping a number another controller is calling log the number masked (PIPL)."""
    ticket_no = await verified_ticket(sessionmaker, NUMBER)
    client = new_client()
    connect(client)
    with caplog.at_level(logging.INFO, logger="ivr.callbacks"):
        assert await scheduler_for(settings, sessionmaker, client, MONDAY_10AM).run_once(
            MONDAY_10AM
        ) == [ticket_no]
        # a second controller finds the number being called: the open attempt row refuses its claim
        other = scheduler_for(settings, sessionmaker, client, MONDAY_10AM)
        assert await other._claim(ticket_no, NUMBER, MONDAY_10AM, due=True) is None
    placed, skipped = (r.getMessage() for r in caplog.records if r.name == "ivr.callbacks")
    assert (
        "139****5678 placed" in placed and "skipped: 139****5678 is already being called" in skipped
    )
    assert NUMBER not in caplog.text
