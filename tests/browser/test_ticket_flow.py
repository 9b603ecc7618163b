"""The ticket loop in Chromium: an agent gets a screen pop and files a ticket, a dispatcher reviews and
dispatches it, the department's handler signs, attaches a photo and replies.

The screen pop is published from the test through ``agent_console.calls.publish_screen_pop`` — exactly the
call the AMI controller makes when the agent answers (the emulated PBX call is covered by tests/e2e)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.agent_console.harness import Console
from tests.agent_console.tickets_support import DEPT_A, PNG, prepare
from tests.browser.screen_pop import pop_when_subscribed

pytestmark = pytest.mark.browser
CALLER = "13812345678"


async def test_screen_pop_intake_dispatch_sign_and_reply(
    page_for,
    live_console: Console,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    control = await prepare(live_console)
    agent = await page_for("agent")
    page = agent.page
    await page.goto(str(live_console.server.make_url("/workspace")))
    await page.wait_for_selector("#live-status[data-state='on']")
    await page.click("#state-ready")
    await page.wait_for_selector("#current-state:has-text('示闲')")
    assert control.states == [("PJSIP/agent", "ready", "")]

    # the controller's screen pop when the agent answers a caller the bot handed over
    await pop_when_subscribed(
        live_console,
        "agent",
        CALLER,
        call_id="1700000000.7",
        transcript="我家楼下的路灯坏了好几天",
        from_bot=True,
    )
    await page.wait_for_selector("#screenpop:not([hidden])")
    assert await page.text_content("#pop-caller") == CALLER
    assert await page.input_value("#f-caller_phone") == CALLER
    assert await page.input_value("#f-content") == "我家楼下的路灯坏了好几天"
    await page.fill("#f-caller_name", "孙女士")
    await page.fill("#f-district", "城东区")
    await page.fill("#f-address", "东湖路8号")
    await page.select_option("#f-kind", "求助")
    await agent.screenshot("flow-1-agent-screenpop")
    await page.click("#submit-ticket")
    await page.wait_for_url(re.compile(r".*/tickets/12345-\d{8}-\d{5}\?created=1$"))
    ticket_no = (await page.text_content("#ticket-no") or "").strip()
    assert await page.text_content("#ticket-state") == "受理"
    assert agent.errors == []

    dispatcher = await page_for("dispatcher")
    page = dispatcher.page
    await page.goto(str(live_console.server.make_url("/dispatch")))
    await page.click(f"#queue-review a:has-text('{ticket_no}')")
    await page.click("#do-review")
    await page.wait_for_selector("#ticket-state:has-text('审核')")
    await page.select_option("#lead-select", DEPT_A)
    await dispatcher.screenshot("flow-2-dispatcher-dispatch")
    await page.click("#do-dispatch")
    await page.wait_for_selector("#ticket-state:has-text('派发')")
    assert await page.text_content("#lead-department") == f"{DEPT_A}（直派）"
    assert dispatcher.errors == []

    handler = await page_for("handler")
    page = handler.page
    await page.goto(str(live_console.server.make_url("/department")))
    row = page.locator(f"#inbox-dispatched tr[data-ticket='{ticket_no}']")
    assert re.match(r"剩余 ", await row.locator(".countdown").text_content() or "")
    assert await row.locator(".phone").text_content() == "138****5678"
    await handler.screenshot("flow-3-handler-inbox")
    await row.locator(".sign-button").click()
    await page.wait_for_selector("#ticket-state:has-text('签收')")
    photo = tmp_path / "现场照片.png"
    photo.write_bytes(PNG)
    await page.set_input_files("#upload-file", str(photo))
    await page.click("#upload-form button")
    await page.wait_for_selector("#upload-status:has-text('已上传')")
    await page.fill(
        "form[data-action='reply'] textarea[name='reply']", "已更换路灯灯具，恢复照明。"
    )
    await page.click("#do-reply")
    await page.wait_for_selector("#ticket-state:has-text('反馈')")
    assert await page.text_content("#ticket-reply") == "已更换路灯灯具，恢复照明。"
    assert await page.locator("#attachments a", has_text="现场照片.png").count() == 1
    trail = await page.locator("#audit-trail tbody td:nth-child(3)").all_text_contents()
    assert trail == ["受理", "审核", "派单", "签收", "反馈"]
    await handler.screenshot("flow-4-handler-replied")
    assert handler.errors == []
