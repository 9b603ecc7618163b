"""Script in ticket text never runs: `<script>`, `<img onerror>` and `javascript:` links in a citizen's
request, caller name and the bot's transcript render as literal text on every screen that shows them."""

from __future__ import annotations

import pytest
from playwright.async_api import Dialog

from tests.agent_console.harness import Console
from tests.agent_console.tickets_support import DEPT_A, act, draft, json_of, prepare
from tests.browser.screen_pop import pop_when_subscribed

pytestmark = pytest.mark.browser
PAYLOAD = '<script>alert("s")</script><img src=x onerror=alert("i")><a href="javascript:alert(\'j\')">点我</a>'


async def test_payloads_render_inert_everywhere(page_for, live_console: Console) -> None:  # type: ignore[no-untyped-def]
    await prepare(live_console)
    agent_api, dispatcher_api = (
        await live_console.logged_in("agent"),
        await live_console.logged_in("dispatcher"),
    )
    t = await json_of(
        agent_api,
        "POST",
        "/api/v1/console/tickets",
        draft(content=f"路灯坏了{PAYLOAD}", caller_name='<img src=x onerror=alert("n")>'),
        201,
    )
    t = await act(dispatcher_api, t, "review")
    await act(dispatcher_api, t, "dispatch", lead_department=DEPT_A)
    dialogs: list[str] = []

    async def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    for user, path, selector in (
        ("dispatcher", f"/tickets/{t['ticket_no']}", "#ticket-content"),
        ("leader", "/tickets", "#tickets td.summary"),
        ("handler", "/department", "#inbox-dispatched td.summary"),
    ):
        tab = await page_for(user)
        tab.page.on("dialog", on_dialog)
        await tab.page.goto(str(live_console.server.make_url(path)))
        text = await tab.page.text_content(selector) or ""
        assert '<script>alert("s")</script>' in text and "onerror=alert" in text, (user, text)
        assert (
            await tab.page.locator(
                "main img, main script:not([src]), a[href^='javascript']"
            ).count()
            == 0
        )
        await tab.screenshot(f"xss-{user}")
        assert tab.errors == []

    agent = await page_for("agent")
    agent.page.on("dialog", on_dialog)
    await agent.page.goto(str(live_console.server.make_url("/workspace")))
    await agent.page.wait_for_selector("#live-status[data-state='on']")
    await pop_when_subscribed(
        live_console, "agent", "13812345678", transcript=PAYLOAD, from_bot=True
    )
    await agent.page.wait_for_selector("#screenpop:not([hidden])")
    assert await agent.page.text_content("#pop-transcript") == PAYLOAD
    assert "<script>" in (await agent.page.text_content("#pop-history") or "")
    assert await agent.page.locator("#screenpop img, #screenpop a[href^='javascript']").count() == 0
    await agent.screenshot("xss-screenpop")
    assert dialogs == [] and agent.errors == []
