"""A leader opens the cockpit in Chromium: every panel loads, the charts draw on their canvases, the live queue
updates from the hub, and the page raises no error (CSP included)."""

from __future__ import annotations

import asyncio

import pytest

from agent_console.views.cockpit import AgentCounts, QueueSnapshot, WaitingCaller
from tests.agent_console.harness import Console
from tests.agent_console.seed_cockpit import NOW, move_console_to, seed_cockpit

pytestmark = pytest.mark.browser
CHARTS = (
    "chart-trend",
    "chart-categories",
    "chart-hot-topics",
    "chart-departments",
    "chart-heatmap",
)

# How many pixels of a chart's canvas differ from its top-left (background) pixel.
PAINTED_PIXELS = """(id) => {
  const canvas = document.querySelector(`#${id} canvas`);
  if (!canvas || !canvas.width || !canvas.height) return 0;
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i] !== data[0] || data[i + 1] !== data[1] || data[i + 2] !== data[2] || data[i + 3] !== data[3]) painted++;
  }
  return painted;
}"""


async def test_leader_sees_the_cockpit_charts_and_live_queue(
    page_for, live_console: Console
) -> None:  # type: ignore[no-untyped-def]
    await seed_cockpit(live_console.sessionmaker)
    move_console_to(live_console, NOW)
    tab = await page_for("leader")
    page = tab.page
    await page.set_viewport_size({"width": 1400, "height": 900})
    await page.goto(str(live_console.server.make_url("/cockpit")))
    for panel in await page.query_selector_all(".panel[data-api]"):
        panel_id = await panel.get_attribute("id")
        await page.wait_for_selector(f"#{panel_id}[data-state='ready']")
    for chart in CHARTS:
        assert await page.evaluate(PAINTED_PIXELS, chart) > 500, f"{chart} drew nothing"
    assert await page.text_content("#today-received") == "3"
    assert await page.text_content("#warnings-red") == "4"
    assert "住房安居/物业服务" in (await page.text_content("#problems-table") or "")
    await page.wait_for_selector("#live-status[data-state='on']")
    snapshot = QueueSnapshot(
        at=NOW,
        waiting=[
            WaitingCaller(position=1, caller="138****5678", wait_s=42.0, menu="2"),
            WaitingCaller(position=2, caller="139****4321", wait_s=7.0),
        ],
        agents=AgentCounts(available=2, busy=5, paused=1),
        bot_calls=3,
        leader_calls=1,
    )
    data = snapshot.model_dump(mode="json")
    async with asyncio.timeout(
        10
    ):  # the page's subscribe message may still be in flight: publish until it hears
        while live_console.hub.publish("queue", data) < 2:  # noqa: ASYNC110 - besides the console's own listener
            await asyncio.sleep(0.05)
    await page.wait_for_selector("#queue-waiting:has-text('2')")
    assert await page.text_content("#queue-bot") == "3"
    assert "138****5678" in (await page.text_content("#queue-list") or "")
    await page.select_option("#department-sort", "response_rate")
    await tab.screenshot("leader-cockpit")
    assert tab.errors == []
