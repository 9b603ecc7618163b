"""Call-backs (回访) against the real local Asterisk: Originate into hotline-callback, the citizen is the
``test-citizen`` context (what it does is the global TEST_CITIZEN_<number>), results land in the ticket.

The scheduler runs on a controlled clock (a Monday inside the call-back hours), so retries after the interval
are driven by ``run_once(now)`` without waiting an hour; the calls themselves are real.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from config import Settings
from hotline.wiring import Telephony, subscribe
from ivr import events as ev
from ivr.callbacks import CallbackScheduler
from ivr.controller import HotlineController
from ivr.models import CallbackAttempt, CallRecord
from tests.e2e.controller_support import (
    Clock,
    callback_settings,
    citizen,
    new_number,
    running,
)
from tests.ivr.callback_support import MONDAY_10AM, verified_ticket
from tickets.services import get_ticket

pytestmark = [pytest.mark.pbx, pytest.mark.slow]


@pytest.fixture(scope="module")
def citizen_dialplan(pbx: Any, local_pbx: Any) -> None:
    """A PBX started before the test-citizen context existed gets the current dialplan (same values)."""
    if "test-citizen" not in local_pbx.rx("dialplan show test-citizen"):
        info = local_pbx.status()
        local_pbx._write_config(local_pbx._values_of(info))
        local_pbx.rx("dialplan reload")
    assert "test-citizen" in local_pbx.rx("dialplan show test-citizen")


@pytest.fixture
async def controller(
    settings: Settings, pbx: Any, local_pbx: Any, database: Any, citizen_dialplan: None
) -> AsyncIterator[HotlineController]:
    async with running(callback_settings(settings, pbx), database, local_pbx, pbx) as ctrl:
        yield ctrl


@pytest.fixture
def clock() -> Clock:
    return Clock(MONDAY_10AM)


@pytest.fixture
def scheduler(controller: HotlineController, database: Any, clock: Clock) -> CallbackScheduler:
    scheduler = CallbackScheduler(controller, database, controller.settings, clock=clock)
    subscribe(
        Telephony(controller, (scheduler,))
    )  # the running controller's own subscription is not repeated
    return scheduler


async def test_digit_1_closes_the_ticket_as_satisfied(
    controller: HotlineController, scheduler: CallbackScheduler, database: Any, clock: Clock
) -> None:
    number = new_number()
    await citizen(controller, number, "1")
    ticket_no = await verified_ticket(database, number)
    assert await scheduler.run_once(clock()) == [ticket_no]
    [outcome] = await scheduler.wait_outcomes(ticket_no)
    assert (outcome.result, outcome.reason, outcome.ticket_state) == (
        "satisfied",
        "survey: satisfied",
        "closed",
    )
    async with database() as session:
        ticket = await get_ticket(session, ticket_no)
        assert (ticket.state, ticket.satisfaction, ticket.callback_attempts) == (
            "closed",
            "satisfied",
            1,
        )
        await controller.flush()
        attempt = await session.scalar(
            select(CallbackAttempt).where(CallbackAttempt.ticket_no == ticket_no)
        )
        assert (
            attempt is not None and attempt.result == "satisfied" and attempt.ended_at is not None
        )
    assert await scheduler.run_once(clock()) == []  # closed: never rung again


async def test_digit_3_redispatches_the_ticket(
    controller: HotlineController, scheduler: CallbackScheduler, database: Any, clock: Clock
) -> None:
    number = new_number()
    await citizen(controller, number, "3")
    ticket_no = await verified_ticket(database, number)
    assert await scheduler.run_once(clock()) == [ticket_no]
    [outcome] = await scheduler.wait_outcomes(ticket_no)
    assert outcome.result == "unsatisfied"
    async with database() as session:
        ticket = await get_ticket(session, ticket_no)
    assert (ticket.state, ticket.redispatch_count, ticket.lead_department) == (
        "dispatched",
        1,
        "zjj",
    )  # 二次派单


async def test_no_answer_is_retried_after_the_interval_then_unreachable(
    controller: HotlineController, scheduler: CallbackScheduler, database: Any, clock: Clock
) -> None:
    number = new_number()
    await citizen(controller, number, "noanswer")
    ticket_no = await verified_ticket(database, number)
    hung_up: list[str] = []
    controller.add_listener(
        lambda e: hung_up.append(e.chan.uniqueid) if isinstance(e, ev.ChannelHungUp) else None
    )

    assert await scheduler.run_once(clock()) == [ticket_no]
    [first] = await scheduler.wait_outcomes(ticket_no)
    assert first.result == "unreachable" and first.ticket_state == "callback"
    async with database() as session:
        ticket = await get_ticket(session, ticket_no)
    assert (ticket.callback_attempts, ticket.last_callback_at) == (1, MONDAY_10AM)

    clock.now = MONDAY_10AM + timedelta(minutes=59)  # inside the retry interval: not rung
    assert await scheduler.run_once(clock()) == []
    clock.now = MONDAY_10AM + timedelta(minutes=60)
    assert await scheduler.run_once(clock()) == [ticket_no]
    second = (await scheduler.wait_outcomes(ticket_no, 2))[1]
    assert (second.result, second.ticket_state) == ("unreachable", "closed")  # max_attempts = 2
    async with database() as session:
        ticket = await get_ticket(session, ticket_no)
        assert (ticket.satisfaction, ticket.callback_attempts) == ("unreachable", 2)
        attempts = (
            await session.scalars(
                select(CallbackAttempt)
                .where(CallbackAttempt.ticket_no == ticket_no)
                .order_by(CallbackAttempt.id)
            )
        ).all()
    assert [a.result for a in attempts] == ["unreachable", "unreachable"]
    assert all(a.uniqueid in hung_up for a in attempts)  # two real calls were placed and ended
    await controller.flush()
    async with (
        database() as session
    ):  # unanswered call-backs are call-backs in the call log, not abandoned calls
        logged = (
            await session.scalars(
                select(CallRecord.outcome).where(
                    CallRecord.uniqueid.in_([a.uniqueid for a in attempts])
                )
            )
        ).all()
    assert logged == ["callback", "callback"]
    clock.now += timedelta(hours=2)
    assert await scheduler.run_once(clock()) == []


async def test_citizen_who_presses_nothing_counts_as_an_attempt(
    controller: HotlineController, scheduler: CallbackScheduler, database: Any, clock: Clock
) -> None:
    number = new_number()
    await citizen(controller, number, "")
    ticket_no = await verified_ticket(database, number)
    assert await scheduler.run_once(clock()) == [ticket_no]
    [outcome] = await scheduler.wait_outcomes(ticket_no)
    assert (outcome.result, outcome.reason, outcome.ticket_state) == (
        "unreachable",
        "survey: none",
        "callback",
    )
    await controller.flush()
    async with database() as session:  # the call log shows a call-back, not an abandoned call
        row = await session.scalar(select(CallRecord).where(CallRecord.uniqueid.like("callback-%")))
    assert row is not None and row.outcome == "callback"


async def test_nothing_is_rung_outside_the_allowed_hours(
    controller: HotlineController, scheduler: CallbackScheduler, database: Any, clock: Clock
) -> None:
    number = new_number()
    await citizen(controller, number, "1")
    ticket_no = await verified_ticket(database, number)
    for hour in (7, 20, 23):
        clock.now = MONDAY_10AM.replace(hour=hour)
        assert await scheduler.run_once(clock()) == []
    assert scheduler.originated == 0
    async with database() as session:
        assert (await get_ticket(session, ticket_no)).state == "verified"
        assert await session.scalar(select(func.count()).select_from(CallbackAttempt)) == 0


async def test_one_number_is_never_rung_twice_at_once(
    controller: HotlineController, scheduler: CallbackScheduler, database: Any, clock: Clock
) -> None:
    number = new_number()
    await citizen(controller, number, "1")
    first = await verified_ticket(database, number)
    second = await verified_ticket(database, number)  # two tickets of the same citizen
    other = CallbackScheduler(
        controller, database, controller.settings, clock=clock
    )  # a second controller
    subscribe(Telephony(controller, (other,)))
    originates: list[str] = []
    controller.on_originate_response(
        lambda m: (
            originates.append(str(m.get("ActionID")))
            if str(m.get("ActionID")).startswith("callback-")
            else None
        )
    )

    rung = await asyncio.gather(
        scheduler.run_once(clock()), scheduler.run_once(clock()), other.run_once(clock())
    )
    assert [t for r in rung for t in r] == [first]  # one call for the number, whoever asks
    assert scheduler.originated + other.originated == 1
    await (scheduler if scheduler.originated else other).wait_outcomes(first)
    async with (
        database() as session
    ):  # (other suites on this PBX may be placing call-backs of their own)
        ours = set((await session.scalars(select(CallbackAttempt.uniqueid))).all())
    assert len([a for a in originates if a in ours]) == 1
    assert await scheduler.run_once(clock()) == [
        second
    ]  # the number is free again: the other ticket
    await scheduler.wait_outcomes(second)
