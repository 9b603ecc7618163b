"""A leader opens the cockpit in Chromium: every panel loads, the charts draw on their canvases, the live queue
updates from the hub, and the page raises no error (CSP included). With two Asterisks the live queue shows the
centre's sums and a row per PBX; a PBX silent for ``cockpit.queue_stale_s`` drops out as 离线."""

from __future__ import annotations

import asyncio
from typing import Any

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
    assert await page.is_hidden("#queue-pbxes")  # one PBX: no rows per PBX
    await page.select_option("#department-sort", "response_rate")
    await tab.screenshot("leader-cockpit")
    assert tab.errors == []


async def _publish_until_heard(console: Console, data: dict[str, Any]) -> None:
    """Publish until the page's subscription hears it (its subscribe message may be in flight)."""
    async with asyncio.timeout(10):
        while console.hub.publish("queue", data) < 2:  # noqa: ASYNC110 - besides the console's own listener
            await asyncio.sleep(0.05)


def pbx_queue(pbx: str, caller: str, wait_s: float, available: int) -> dict[str, Any]:
    return QueueSnapshot(
        pbx=pbx,
        at=NOW,
        waiting=[WaitingCaller(position=1, caller=caller, wait_s=wait_s, pbx=pbx)],
        longest_wait_s=wait_s,
        agents=AgentCounts(available=available, busy=2),
    ).model_dump(mode="json")


async def test_the_live_queue_of_two_pbxes_shows_their_sums_and_a_silent_one_as_offline(
    page_for, live_console: Console
) -> None:  # type: ignore[no-untyped-def]
    move_console_to(live_console, NOW)
    tab = await page_for("leader")
    page = tab.page
    await page.clock.install()
    await page.goto(str(live_console.server.make_url("/cockpit")))
    await page.wait_for_selector("#panel-queue[data-state='ready']")
    await page.wait_for_selector("#live-status[data-state='on']")
    await _publish_until_heard(live_console, pbx_queue("a", "138****5678", 42.0, 2))
    await _publish_until_heard(live_console, pbx_queue("b", "139****4321", 60.0, 1))
    await page.wait_for_selector("#queue-waiting:has-text('2')")
    assert await page.text_content("#queue-longest") == "60"
    assert await page.text_content("#queue-available") == "3"
    assert await page.text_content("#queue-busy") == "4"
    rows = page.locator("#queue-pbxes tr.queue-pbx[data-online='true']")
    assert await rows.evaluate_all("(trs) => trs.map((tr) => tr.dataset.pbx)") == ["a", "b"]

    stale_s = live_console.settings.cockpit.queue_stale_s
    await page.clock.fast_forward(int(stale_s * 1000 * 2 / 3))
    await _publish_until_heard(live_console, pbx_queue("a", "138****5678", 62.0, 2))
    await page.clock.fast_forward(int(stale_s * 1000 / 3) + 2500)  # b: silent for queue_stale_s
    await page.wait_for_selector("#queue-pbxes tr.queue-pbx[data-pbx='b'][data-online='false']")
    assert "离线" in (await page.text_content("#queue-pbxes tr[data-pbx='b']") or "")
    assert await page.text_content("#queue-waiting") == "1"
    assert await page.text_content("#queue-longest") == "62"
    assert await page.text_content("#queue-available") == "2"
    assert "139****4321" not in (await page.text_content("#queue-list") or "")
    await tab.screenshot("leader-cockpit-two-pbxes")
    assert tab.errors == []
