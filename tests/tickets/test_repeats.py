"""Repeat detection (重复件) at intake."""

from __future__ import annotations

from datetime import timedelta

from tests.settings_support import SETTINGS
from tests.tickets.loop_support import (
    AGENT,
    DISPATCHER,
    GARBAGE,
    GARBAGE_AGAIN,
    MONDAY_10AM,
    NOISE,
    count,
    step,
)
from tickets.models import TicketRepeat
from tickets.repeats import similarity, tokenize
from tickets.services import close_instant, create_ticket, get_ticket


def test_similar_wording_scores_high_and_other_matters_low() -> None:
    assert similarity(tokenize(GARBAGE), tokenize(GARBAGE_AGAIN)) >= 0.6
    assert similarity(tokenize(GARBAGE), tokenize(NOISE)) < 0.2
    assert "的" not in tokenize(GARBAGE) and "，" not in tokenize(GARBAGE)


async def test_same_caller_is_linked(session, draft) -> None:
    first = await create_ticket(
        session, draft(content=GARBAGE), AGENT, now=MONDAY_10AM, settings=SETTINGS
    )
    second = await create_ticket(
        session,
        draft(content=NOISE, district="七里河区"),
        AGENT,
        now=MONDAY_10AM + timedelta(days=2),
        settings=SETTINGS,
    )
    assert second.is_repeat and second.repeat_of == [first.id]
    assert second.repeat_links[0].reason == "same_caller"
    assert not first.is_repeat


async def test_similar_content_in_same_district_is_linked(session, draft) -> None:
    first = await create_ticket(
        session, draft(content=GARBAGE), AGENT, now=MONDAY_10AM, settings=SETTINGS
    )
    other = await create_ticket(
        session,
        draft(content=GARBAGE_AGAIN, caller_phone="0931-7654321"),
        AGENT,
        now=MONDAY_10AM + timedelta(hours=3),
        settings=SETTINGS,
    )
    assert other.is_repeat and other.repeat_of == [first.id]
    link = other.repeat_links[0]
    assert link.reason == "similar_content" and link.similarity >= 0.6


async def test_unrelated_or_far_or_old_tickets_are_not_linked(session, draft) -> None:
    await create_ticket(session, draft(content=GARBAGE), AGENT, now=MONDAY_10AM, settings=SETTINGS)
    elsewhere = await create_ticket(
        session,
        draft(content=GARBAGE_AGAIN, caller_phone="13900000001", district="七里河区"),
        AGENT,
        now=MONDAY_10AM,
        settings=SETTINGS,
    )
    different = await create_ticket(
        session,
        draft(content=NOISE, caller_phone="13900000002"),
        AGENT,
        now=MONDAY_10AM,
        settings=SETTINGS,
    )
    much_later = await create_ticket(
        session,
        draft(content=GARBAGE_AGAIN),
        AGENT,
        now=MONDAY_10AM + timedelta(days=31),
        settings=SETTINGS,
    )  # window is 30 days
    for t in (elsewhere, different, much_later):
        assert (t.is_repeat, t.repeat_of) == (False, [])


async def test_only_a_bounded_set_of_recent_candidates_is_compared(
    session, draft, settings
) -> None:
    bounded = settings.model_copy(
        update={"repeat": settings.repeat.model_copy(update={"max_candidates": 3})}
    )
    await create_ticket(session, draft(content=GARBAGE), AGENT, now=MONDAY_10AM, settings=bounded)
    for i in range(
        3
    ):  # three newer, unrelated tickets in the district push the old one out of the bound
        await create_ticket(
            session,
            draft(content=f"{NOISE}第{i}次", caller_phone=f"1390000000{i}"),
            AGENT,
            now=MONDAY_10AM + timedelta(hours=i + 1),
            settings=bounded,
        )
    late = await create_ticket(
        session,
        draft(content=GARBAGE_AGAIN, caller_phone="13911111111"),
        AGENT,
        now=MONDAY_10AM + timedelta(hours=5),
        settings=bounded,
    )
    assert not late.is_repeat
    unbounded = await create_ticket(
        session,
        draft(content=GARBAGE_AGAIN, caller_phone="13922222222"),
        AGENT,
        now=MONDAY_10AM + timedelta(hours=6),
        settings=settings,
    )
    assert unbounded.is_repeat


async def test_a_repeat_closed_at_intake_and_worked_on_keeps_one_link_each(session, draft) -> None:
    """即办 and later actions flush the new ticket again in the same session: its links are stored once."""
    first = await create_ticket(
        session, draft(content=GARBAGE), AGENT, now=MONDAY_10AM, settings=SETTINGS
    )
    second = await create_ticket(
        session, draft(content=GARBAGE_AGAIN), AGENT, now=MONDAY_10AM, settings=SETTINGS
    )
    instant = await close_instant(
        session, draft(content=GARBAGE), "已告知清运时间", AGENT, now=MONDAY_10AM, settings=SETTINGS
    )
    assert instant.state == "closed" and sorted(instant.repeat_of) == sorted([first.id, second.id])
    second = await step(session, second, "review", DISPATCHER)
    assert await count(session, TicketRepeat) == 3  # second→first, instant→first, instant→second
    again = await get_ticket(session, instant.ticket_no)
    assert sorted(again.repeat_of) == sorted([first.id, second.id])
