"""Call control in Chromium. The supervisors' board (班长席): a 班长 logs in, opens the live agent board from the
navigation, sees each agent's state (a pause with its reason), current call and calls today, and listens in on a
call. The agent's 转接 buttons beside the softphone: shown only while a call is up, the ticket's suggested
department preselected, one key to an emergency number."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from config import Settings
from hotline.db import create_schema, make_engine, make_sessionmaker
from ivr.callcontrol import AgentOnBoard
from tests.agent_console.harness import Console, console_settings, start_console, stop_console
from tests.agent_console.switchboard_support import CALL, FakeSwitchboard
from tests.agent_console.tickets_support import recording_desk

pytestmark = pytest.mark.browser


@pytest.fixture
def switchboard() -> FakeSwitchboard:
    """The controller's live board as ivr.callcontrol.CallControl reports it."""
    return FakeSwitchboard(
        [
            AgentOnBoard("PJSIP/agent", "王芳", "talking", "通话中", CALL, 95.0, 12),
            AgentOnBoard("PJSIP/6002", "李娜", "paused", "示忙（培训）", None, None, 8),
            AgentOnBoard("PJSIP/6003", "张伟", "wrap_up", "话后整理", None, None, 10),
            AgentOnBoard("PJSIP/6004", "刘洋", "ready", "空闲", None, None, 9),
        ]
    )


@pytest.fixture
async def live_console(
    settings: Settings, tmp_path: Path, switchboard: FakeSwitchboard
) -> AsyncIterator[Console]:
    """The browser tests' console (tests/browser/conftest.py) with the switchboard wired and a softphone
    extension for ``agent``."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'console.db'}")
    await create_schema(engine)
    phones = settings.softphone.model_copy(update={"extensions": {"agent": "6101"}})
    own = console_settings(settings.model_copy(update={"softphone": phones}))
    console = await start_console(
        own, make_sessionmaker(engine), switchboard=switchboard, desk=recording_desk(own)
    )
    yield console
    await stop_console(console)
    await engine.dispose()


async def test_a_supervisor_sees_the_live_agent_board_and_listens_in(
    page_for, switchboard: FakeSwitchboard
) -> None:  # type: ignore[no-untyped-def]
    tab = await page_for("supervisor")
    page = tab.page
    await page.click("nav >> text=班长席")
    rows = page.locator("#supervision-board tbody tr")
    await rows.nth(3).wait_for()
    assert await rows.nth(0).locator("td").all_inner_texts() == [
        "王芳",
        "通话中",
        "95 秒",
        "12",
        "监听 密语 强插",
    ]
    assert await rows.nth(1).locator("td").nth(1).inner_text() == "示忙（培训）"
    assert await rows.nth(1).locator("button").count() == 0  # no call to listen to
    await tab.screenshot("supervision-board")
    await rows.nth(0).locator("button", has_text="监听").click()
    await page.wait_for_selector("#board-done:has-text('已发起监听：王芳')")
    assert [(s["interface"], s["action"], s["supervisor"]) for s in switchboard.spies] == [
        ("PJSIP/agent", "listen", "supervisor")
    ]
    assert tab.errors == []


async def test_an_agent_transfers_the_call_with_the_buttons_beside_the_softphone(
    page_for, live_console: Console, switchboard: FakeSwitchboard
) -> None:  # type: ignore[no-untyped-def]
    tab = await page_for("agent")
    page = tab.page
    await page.goto(str(live_console.server.make_url("/workspace")))
    await page.fill("#f-content", "孩子就读的小学乱收费，还要求购买指定教辅资料")
    suggested = await page.locator("#suggest-list li strong").first.inner_text()
    await page.wait_for_selector("#transfer-department option >> nth=2", state="attached")
    assert await page.locator("#transfer-panel").is_hidden()  # no call: no transfer buttons
    await page.evaluate("document.getElementById('softphone').dataset.state = 'talking'")
    await page.wait_for_selector("#transfer-panel", state="visible")
    assert await page.input_value("#transfer-department") == suggested
    await page.click("#transfer-to-department")
    await page.wait_for_selector(f"#transfer-done:has-text('已直接转接至 {suggested}')")
    await page.click("#transfer-emergency button:has-text('120')")
    await page.wait_for_selector("#transfer-done:has-text('医疗急救')")
    assert [(t.target, mode) for _, t, mode, _, _ in switchboard.transfers][1] == ("120", "blind")
    await tab.screenshot("agent-transfer")
    await page.evaluate("document.getElementById('softphone').dataset.state = 'registered'")
    await page.wait_for_selector("#transfer-panel", state="hidden")
