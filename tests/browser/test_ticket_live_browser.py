"""Ticket state changes live in Chromium: while a dispatcher has a ticket open and a leader the ticket list, a
change made elsewhere updates the state badge on both, and the ticket page says who changed it."""

from __future__ import annotations

import asyncio

import pytest

from tests.agent_console.harness import Console
from tests.agent_console.tickets_support import DEPT_A, act, draft, json_of, prepare

pytestmark = pytest.mark.browser


async def followed_by(console: Console, topic: str, pages: int) -> None:
    """Return once ``pages`` browsers hear ``topic`` (a probe the pages ignore), at most after 5 s."""

    async def heard() -> None:
        # (ASYNC110) the hub offers no event for "someone subscribed"; delivery itself is the signal
        while console.hub.publish(topic, {"kind": "probe"}) < pages:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    await asyncio.wait_for(heard(), 5)


async def test_a_state_change_made_elsewhere_shows_on_the_ticket_page_and_the_list(
    page_for,
    live_console: Console,  # type: ignore[no-untyped-def]
) -> None:
    await prepare(live_console)
    agent = await live_console.logged_in("agent")
    ticket = await json_of(agent, "POST", "/api/v1/console/tickets", draft(), 201)
    number = ticket["ticket_no"]
    detail, listing = await page_for("dispatcher"), await page_for("leader")
    await detail.page.goto(str(live_console.server.make_url(f"/tickets/{number}")))
    await listing.page.goto(str(live_console.server.make_url("/tickets")))
    await followed_by(live_console, "tickets:all", 2)

    elsewhere = await live_console.logged_in("dispatcher")  # another session of the dispatcher
    ticket = await act(elsewhere, ticket, "review")
    await detail.page.wait_for_selector("#ticket-state.state-reviewed:has-text('审核')")
    notice = await detail.page.text_content("#ticket-live")
    assert notice is not None and "派单员dispatcher" in notice and "审核" in notice
    row = listing.page.locator(f"tr[data-ticket='{number}'] .state")
    await row.filter(has_text="审核").wait_for()

    await act(elsewhere, ticket, "dispatch", lead_department=DEPT_A, mode="direct")
    await row.filter(has_text="派发").wait_for()
    assert await row.get_attribute("class") == "state state-dispatched"
    await detail.page.wait_for_selector("#ticket-state:has-text('派发')")
    await detail.screenshot("ticket-live-update")
    assert detail.errors == [] and listing.errors == []
