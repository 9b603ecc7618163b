"""An agent logs in with Chromium, sees the Chinese home page with their name, and logs out."""

from __future__ import annotations

import pytest

from tests.agent_console.harness import Console

pytestmark = pytest.mark.browser


async def test_agent_logs_in_sees_home_and_logs_out(page_for, live_console: Console) -> None:  # type: ignore[no-untyped-def]
    tab = await page_for("agent")
    page = tab.page
    assert await page.text_content("#welcome") == "您好，话务员agent"
    assert await page.text_content("#user-name") == "话务员agent"
    assert await page.title() == "首页 · 12345 热线"
    await page.wait_for_selector(
        "#live-status[data-state='on']"
    )  # the WebSocket connected under the CSP
    live_console.hub.publish("broadcast", {"message": "今晚 22:00 系统维护"})
    await page.wait_for_selector(".notice:has-text('今晚 22:00 系统维护')")
    await tab.screenshot("agent-home")
    assert tab.errors == []
    await page.click("#logout")
    await page.wait_for_url("**/login")
    assert await page.is_visible("#login-submit")
    await page.goto(str(live_console.server.make_url("/")))
    assert "/login?next=/" in page.url
    assert tab.errors == []
