"""The cockpit's wallboard (大屏) in Chromium: today's service levels come from the call log and follow the live
queue without a page reload (at most every 10 s), with figures a leader can check by hand."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from agent_console.cockpit_panels import LocalPanels
from agent_console.views.cockpit import COCKPIT, AgentCounts, QueueSnapshot
from ivr.state import HotlineState
from tests.agent_console.harness import Console
from tests.agent_console.seed_cockpit import move_console_to
from tests.ivr.calllog_support import replay_into_log

pytestmark = pytest.mark.browser
NOON = datetime(
    2025, 3, 4, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai")
)  # the day of the recorded calls
QUEUE = QueueSnapshot(
    at=NOON,
    waiting=[],
    agents=AgentCounts(available=1, busy=1, paused=0),
    bot_calls=0,
    leader_calls=0,
).model_dump(mode="json")


async def _publish_until_heard(console: Console) -> None:
    """Publish a queue event until the page's subscription hears it (its subscribe message may be in flight)."""
    async with asyncio.timeout(10):
        while console.hub.publish("queue", QUEUE) < 2:  # noqa: ASYNC110 - besides the console's own listener
            await asyncio.sleep(0.05)


async def test_wallboard_follows_the_call_log_without_reload(
    page_for, live_console: Console
) -> None:  # type: ignore[no-untyped-def]
    move_console_to(live_console, NOON)
    tab = await page_for("leader")
    page = tab.page
    await page.clock.install()
    await page.goto(str(live_console.server.make_url("/cockpit")))
    await page.wait_for_selector("#panel-calls[data-state='ready']")
    assert await page.text_content("#calls-offered") == "0"
    assert await page.text_content("#calls-connection-rate") == "—"
    await page.wait_for_selector("#live-status[data-state='on']")

    # Three calls reach the log: two answered after 5 s and 6 s, one abandoned in the queue after 20 s.
    await replay_into_log(live_console.sessionmaker, "bot_then_agent.ami", HotlineState("hotline"))
    await replay_into_log(
        live_console.sessionmaker, "leader_and_abandon.ami", HotlineState("hotline")
    )
    await _publish_until_heard(
        live_console
    )  # within 10 s of the last load: the figures are not fetched again
    await page.wait_for_selector("#queue-busy:has-text('1')")
    assert await page.text_content("#calls-offered") == "0"

    cockpit = live_console.app[
        COCKPIT
    ]  # the server's live figures expire; the warmer's next round has run
    panels = cockpit.cache
    assert isinstance(panels, LocalPanels)
    panels.live.clock = lambda: time.monotonic() + panels.live.ttl_s + 1
    await cockpit.warm()
    await page.clock.fast_forward("00:11")
    await _publish_until_heard(live_console)
    await page.wait_for_selector("#calls-offered:has-text('3')")
    assert await page.text_content("#calls-connection-rate") == "66.7%"
    assert await page.text_content("#calls-service-level-rate") == "66.7%"
    assert await page.text_content("#calls-abandoned") == "1"
    assert await page.text_content("#calls-avg-wait") == "5.5"
    assert await page.text_content("#calls-bot") == "1 / 1"
    await tab.screenshot("leader-wallboard")
    assert tab.errors == []
