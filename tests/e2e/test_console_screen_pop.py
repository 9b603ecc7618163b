"""The agent's screen pop (来电弹屏) end to end: a real call through the local Asterisk reaches an agent logged in
to the console in Chromium, and the workspace shows the caller's number and earlier tickets.

Parties as in the other e2e tests: the caller is ``Local/s@test-caller/n`` originated by
``ivr.pbx.testcall.place_call`` (what ``hotline pbx call`` does), pressing 0 for the queue; the agent's softphone
is the emulated ``Local/6841@test-agent/n`` queue member (68xx are reserved for tests). The composition root's
:class:`hotline.wiring.ConsoleFeed` turns the controller's ``AgentRinging`` into the pop; it is given the
agent's interface → console username mapping (``PJSIP/<username>`` in production, where the softphone
registers under the console username).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from playwright.async_api import WebSocket

from agent_console.calls import screenpop_topic
from config import Settings
from hotline.wiring import ConsoleFeed, Telephony, subscribe
from ivr import events as ev
from ivr.controller import HotlineController
from ivr.pbx import LocalPbx, PbxInfo
from ivr.pbx.testcall import place_call
from tests.agent_console.harness import Console
from tests.browser.conftest import UserPage, chromium, chromium_path, live_console, page_for  # noqa: F401 - fixtures
from tests.e2e.controller_support import Events, e2e_settings, running
from tests.settings_support import SETTINGS
from tickets.services import Actor, TicketDraft, create_ticket

pytestmark = [pytest.mark.pbx, pytest.mark.slow]
AGENT_INTERFACE = "Local/6841@test-agent/n"
CALLER = "13912340841"


@pytest.fixture
async def controller(
    settings: Settings,
    pbx: PbxInfo,
    local_pbx: LocalPbx,
    live_console: Console,  # noqa: F811
) -> AsyncIterator[HotlineController]:
    """The AMI controller on the session's PBX, writing to the console's database."""

    async with running(
        e2e_settings(settings, pbx), live_console.sessionmaker, local_pbx, pbx
    ) as ctrl:
        yield ctrl


async def open_workspace(agent: UserPage, url: str, topic: str) -> None:
    """Open the workspace and return once the server has confirmed the page's subscription to ``topic``."""
    subscribed = asyncio.Event()

    def on_socket(ws: WebSocket) -> None:
        def on_frame(payload: str | bytes) -> None:
            text = payload if isinstance(payload, str) else payload.decode()
            if '"subscribed"' in text and topic in text:
                subscribed.set()

        ws.on("framereceived", on_frame)

    agent.page.on("websocket", on_socket)
    await agent.page.goto(url)
    async with asyncio.timeout(10):
        await subscribed.wait()


async def test_a_real_call_pops_the_caller_and_earlier_tickets_on_the_agents_workspace(
    page_for: Callable[[str], Awaitable[UserPage]],  # noqa: F811
    live_console: Console,  # noqa: F811
    controller: HotlineController,
    pbx: PbxInfo,
) -> None:
    async with live_console.sessionmaker() as db:
        earlier = await create_ticket(
            db,
            TicketDraft(
                channel="phone",
                caller_phone=CALLER,
                kind="投诉",
                content="东岗街道幸福小区门口路灯连续三晚不亮",
            ),
            Actor("王话务", "agent"),
            settings=SETTINGS,
        )
    feed = ConsoleFeed(
        controller,
        live_console.hub,
        live_console.sessionmaker,
        {AGENT_INTERFACE: "agent"}.get,
        live_console.clock,
    )
    subscribe(Telephony(controller, feed=feed))
    agent = await page_for("agent")
    await open_workspace(
        agent, str(live_console.server.make_url("/workspace")), screenpop_topic("agent")
    )
    assert await agent.page.is_hidden("#screenpop")

    seen = Events(controller)
    await controller.add_agent(AGENT_INTERFACE, "测试坐席")
    answered: Any = None
    try:
        await seen.wait(lambda e: isinstance(e, ev.MemberState) and e.interface == AGENT_INTERFACE)
        await place_call(pbx, None, caller=CALLER, dtmf="0", caller_wait_s=20)
        answered = await seen.wait(
            lambda e: isinstance(e, ev.AgentConnected) and e.interface == AGENT_INTERFACE, 60
        )
        await agent.page.wait_for_selector("#screenpop:not([hidden])")
        assert CALLER in (await agent.page.text_content("#pop-caller") or "")
        history = await agent.page.text_content("#pop-history") or ""
        assert earlier.ticket_no in history and "路灯" in history
        warning = await agent.page.text_content("#pop-warning") or ""
        assert "近期已有 1 件工单" in warning and "1 件未办结" in warning
        await agent.screenshot("e2e-console-screen-pop")
        assert not agent.errors, agent.errors
    finally:
        if answered is not None:
            with contextlib.suppress(Exception):  # the caller may have hung up already
                await controller.ami.action({"Action": "Hangup", "Channel": answered.chan.channel})
        await controller.remove_agent(AGENT_INTERFACE)
