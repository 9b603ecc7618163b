"""The softphone's buttons in Chromium, with SIP.js replaced by ``fake_sipjs.js`` (FakeSessionManager: the test
plays the other party and reads the DTMF the page sends). On the 工作台, 完成转接 / 取消转接 appear only while the
agent's attended transfer (咨询转接) is in progress, send the phone keys *2 / *1 in the call, and go away when the
transfer's outcome reaches the page on the hub. On the administrators' 测试电话, 拨打 is disabled (and looks it)
and 挂机 enabled while a call is up, even when an action in the call fails, and the other way round after it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page, Route

from agent_console.views.callcontrol import publish_transfer_outcome
from config import Settings
from hotline.db import create_schema, make_engine, make_sessionmaker
from ivr.models import CallTransfer
from tests.agent_console.harness import Console, console_settings, start_console, stop_console
from tests.agent_console.switchboard_support import CALL, NOW, FakeSwitchboard
from tests.agent_console.tickets_support import recording_desk
from tests.browser.conftest import UserPage

pytestmark = pytest.mark.browser
FAKE_SIPJS = Path(__file__).with_name("fake_sipjs.js")
CALLER = "13912340001"
CONTROLS = "#attended-controls"


@pytest.fixture
async def live_console(settings: Settings, tmp_path: Path) -> AsyncIterator[Console]:
    """The browser tests' console (tests/browser/conftest.py) with a switchboard and a softphone extension
    for ``agent``."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'console.db'}")
    await create_schema(engine)
    phones = settings.softphone.model_copy(update={"extensions": {"agent": "6101"}})
    own = console_settings(settings.model_copy(update={"softphone": phones}))
    console = await start_console(
        own, make_sessionmaker(engine), switchboard=FakeSwitchboard(), desk=recording_desk(own)
    )
    yield console
    await stop_console(console)
    await engine.dispose()


async def with_fake_sipjs(page: Page) -> None:
    """The page's SIP.js is FakeSessionManager (window.fakeSip)."""

    async def serve(route: Route) -> None:
        await route.fulfill(path=FAKE_SIPJS, content_type="text/javascript")

    await page.route("**/vendor/sip.js/index.js*", serve)


async def open_softphone(tab: UserPage, console: Console, path: str) -> Page:
    page = tab.page
    await with_fake_sipjs(page)
    await page.goto(str(console.server.make_url(path)))
    await page.wait_for_selector('#softphone[data-state="registered"]')
    return page


def outcome(transfer_id: int, result: str) -> CallTransfer:
    """Transfer ``transfer_id`` of ``agent`` as the controller records it when Asterisk reports how it ended."""
    return CallTransfer(
        id=transfer_id,
        uniqueid=CALL,
        ticket_no=None,
        mode="attended",
        target_kind="department",
        target="66010003",
        target_label="市教育局",
        by_user="agent",
        at=NOW,
        outcome=result,
    )


async def tell_agent(console: Console, row: CallTransfer) -> None:
    """Publish the outcome as the controller's console feed does, once the page's subscription to its own
    topic has reached the server (before that it reaches nobody and is published again), at most for 5 s."""

    async def delivered() -> None:
        # (ASYNC110) the hub offers no event for "someone subscribed"; delivery itself is the signal
        while not publish_transfer_outcome(console.hub, row):  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    await asyncio.wait_for(delivered(), 5)


async def consult(page: Page) -> None:
    """An attended transfer of the agent's call to the first department."""
    await page.select_option("#transfer-form select[name=mode]", "attended")
    await page.click("#transfer-to-department")
    await page.wait_for_selector(f"{CONTROLS}:visible")


async def test_complete_and_cancel_buttons_show_only_during_an_attended_transfer_and_send_star_2_and_star_1(
    page_for, live_console: Console
) -> None:  # type: ignore[no-untyped-def]
    tab = await page_for("agent")
    page = await open_softphone(tab, live_console, "/workspace")
    await page.wait_for_selector("#transfer-department option >> nth=0", state="attached")
    await page.evaluate(f"window.fakeSip.ring('{CALLER}')")
    await page.click("#sp-answer")
    await page.wait_for_selector("#transfer-panel:visible")
    assert await page.locator(CONTROLS).is_hidden()  # a call, no transfer: nothing to complete
    # 直接转接 (blind): the agent leaves the call, nothing to complete
    await page.click("#transfer-to-department")
    await page.wait_for_selector("#transfer-done:has-text('已直接转接')")
    assert await page.locator(CONTROLS).is_hidden()

    await consult(page)  # transfer 2
    assert await page.get_attribute("#attended-complete", "aria-label") == (
        "完成转接：来电人与对方通话，您退出（话机键 *2）"
    )
    assert "取消转接" in (await page.get_attribute("#attended-cancel", "aria-label") or "")
    await tab.screenshot("agent-attended-transfer")
    await page.click("#attended-complete")
    # one string, as Asterisk's feature code: its digits within featuredigittimeout
    assert await page.evaluate("window.fakeSip.dtmf") == ["*2"]
    await tell_agent(live_console, outcome(2, "completed"))
    await page.wait_for_selector(CONTROLS, state="hidden")
    assert await page.text_content("#transfer-done") == "咨询转接至 市教育局：已转接"

    await consult(page)  # transfer 3: the agent takes the caller back
    await page.click("#attended-cancel")
    assert await page.evaluate("window.fakeSip.dtmf") == ["*2", "*1"]
    await tell_agent(live_console, outcome(3, "cancelled"))
    await page.wait_for_selector(CONTROLS, state="hidden")
    await page.wait_for_selector("#notices >> text=咨询转接至 市教育局：已取消")

    # transfer 4, and the call ends before its outcome: nothing left to complete on the next call
    await consult(page)
    await page.evaluate("window.fakeSip.hungUp()")
    await page.wait_for_selector("#transfer-panel", state="hidden")
    await page.evaluate("window.fakeSip.ring('13912340002')")
    await page.click("#sp-answer")
    await page.wait_for_selector("#transfer-panel:visible")
    assert await page.locator(CONTROLS).is_hidden()
    assert tab.errors == []


async def test_an_outcome_before_the_answer_to_the_transfer_request_shows_no_buttons(
    page_for, live_console: Console
) -> None:  # type: ignore[no-untyped-def]
    """A target that fails at once: its outcome may reach the page before the POST's answer."""
    tab = await page_for("agent")
    page = await open_softphone(tab, live_console, "/workspace")
    await page.evaluate(f"window.fakeSip.ring('{CALLER}')")
    await page.click("#sp-answer")
    await page.wait_for_selector("#transfer-panel:visible")
    await tell_agent(live_console, outcome(1, "failed"))
    await page.wait_for_selector("#notices >> text=咨询转接至 市教育局：失败")
    await page.select_option("#transfer-form select[name=mode]", "attended")
    await page.click("#transfer-to-department")  # FakeSwitchboard: transfer 1, dialling
    await page.wait_for_selector("#transfer-done:has-text('已咨询转接')")
    assert await page.locator(CONTROLS).is_hidden()
    assert tab.errors == []


async def buttons(page: Page) -> tuple[bool, bool, str]:
    """拨打 enabled, 挂机 enabled, and how opaque 拨打 looks."""
    return (
        await page.is_enabled("#sp-call"),
        await page.is_enabled("#sp-hangup"),
        await page.eval_on_selector("#sp-call", "b => getComputedStyle(b).opacity"),
    )


async def test_the_test_phones_call_button_is_disabled_and_hang_up_enabled_while_a_call_is_up(
    page_for, live_console: Console
) -> None:  # type: ignore[no-untyped-def]
    tab = await page_for("admin")
    page = await open_softphone(tab, live_console, "/test-phone")
    idle = await buttons(page)
    assert idle == (True, False, "1")
    await page.click("#sp-call")
    await page.wait_for_selector('#softphone[data-state="calling"]')
    assert (await page.evaluate("window.fakeSip.dialled"))[0].startswith("sip:12345@")
    calling = await buttons(page)
    assert calling[:2] == (False, True)
    assert float(calling[2]) < 1  # and it looks disabled
    await page.evaluate("window.fakeSip.answered()")
    await page.wait_for_selector('#softphone[data-state="talking"]')
    assert await buttons(page) == calling
    await page.evaluate("window.fakeSip.refuseHold = true")
    await page.click("#sp-hold")  # fails: said on the status line, the call and its buttons stay
    await page.wait_for_selector("#sp-status:has-text('保持被拒绝')")
    assert await page.get_attribute("#softphone", "data-state") == "talking"
    assert await buttons(page) == calling
    await page.click("#sp-hangup")
    await page.wait_for_selector('#softphone[data-state="registered"]')
    assert await buttons(page) == idle
    assert tab.errors == []
