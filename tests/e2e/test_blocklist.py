"""The blocklist (恶意骚扰来电) on the real Asterisk: the dialplan asks the controller's FastAGI server before the
menu; a blocked caller hears the polite prompt, is hung up and never reaches a queue (call log ``blocked``, no
missed-call task); a caller not on the list reaches the menu and an agent as before; without the FastAGI server
the call goes on (fail open)."""

from __future__ import annotations

import wave
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from ivr import events as ev
from ivr.blocklist import add_block
from ivr.calllog import get_call
from ivr.controller import HotlineController
from ivr.models import MissedCall
from ivr.pbx import LocalPbx, PbxInfo
from tests.e2e.controller_support import (
    Events,
    controller_on,
    dial_12345,
    e2e_settings,
    hang_up,
    new_number,
    running,
    start,
    stop,
)

pytestmark = pytest.mark.pbx
AGENT = "Local/6881@test-agent/n"


@pytest.fixture
def blocklist_pbx(pbx: PbxInfo, local_pbx: LocalPbx) -> PbxInfo:
    """The session's PBX running the dialplan with the blocklist (restarted once if it predates it)."""
    dialplan = (pbx.root / "etc/asterisk/extensions.conf").read_text()
    if "[hotline-blocked]" not in dialplan:
        vars(pbx).update(vars(local_pbx.restart()))
    return pbx


@pytest.fixture
async def controller(
    settings: Settings,
    blocklist_pbx: PbxInfo,
    local_pbx: LocalPbx,
    database: async_sessionmaker[AsyncSession],
) -> AsyncIterator[HotlineController]:
    """A controller that never overflows, with the blocklist's FastAGI server; the agent logged out after."""
    ctrl_settings = e2e_settings(settings, blocklist_pbx, enabled=False)
    async with running(ctrl_settings, database, local_pbx, blocklist_pbx, agents=[AGENT]) as ctrl:
        yield ctrl


async def blocked(database: async_sessionmaker[AsyncSession]) -> str:
    number = new_number()
    async with database() as db:
        await add_block(
            db,
            number,
            "e2e：多次无效来电",
            expires_at=None,
            actor="e2e",
            role="admin",
            now=datetime.now(UTC),
        )
    return number


def of_call(uniqueid: str, kind: type[Any]) -> Any:
    return lambda e: isinstance(e, kind) and e.chan.uniqueid == uniqueid


async def test_a_blocked_caller_hears_the_prompt_and_reaches_no_queue(
    controller: HotlineController,
    database: async_sessionmaker[AsyncSession],
    blocklist_pbx: PbxInfo,
) -> None:
    events = Events(controller)
    number = await blocked(database)
    uniqueid = await dial_12345(
        controller.ami, number, ["TEST_WAIT=30", "TEST_DTMF=0"], prefix="e2e-blocked-"
    )
    refused = await events.wait(of_call(uniqueid, ev.CallerBlocked))
    ended = await events.wait(of_call(uniqueid, ev.ChannelHungUp))
    with wave.open(str(blocklist_pbx.sounds_dir / "blocked.wav")) as prompt:
        prompt_s = prompt.getnframes() / prompt.getframerate()
    assert (
        prompt_s > 3 and (ended.at - refused.at).total_seconds() >= prompt_s - 0.5
    )  # played in full
    assert not [e for e in events.seen if of_call(uniqueid, ev.CallerJoined)(e)]
    await controller.flush()
    async with database() as db:
        call = await get_call(db, uniqueid)
        assert call is not None and call.outcome == "blocked" and call.queue is None
        assert await db.scalar(select(func.count(MissedCall.id))) == 0  # never rung back


async def test_a_caller_not_on_the_list_reaches_the_menu_and_an_agent(
    controller: HotlineController, database: async_sessionmaker[AsyncSession]
) -> None:
    events = Events(controller)
    await blocked(database)  # someone else is blocked
    await controller.add_agent(AGENT, "坐席6881")
    await events.wait(lambda e: isinstance(e, ev.MemberState) and e.interface == AGENT)
    uniqueid = await dial_12345(
        controller.ami,
        new_number(),
        ["TEST_WAIT=30", "TEST_DTMF=0", "__TEST_AGENT_WAIT=30"],
        prefix="e2e-unblocked-",
    )
    joined = await events.wait(of_call(uniqueid, ev.CallerJoined))
    await events.wait(of_call(uniqueid, ev.AgentConnected))
    assert not [e for e in events.seen if of_call(uniqueid, ev.CallerBlocked)(e)]
    await hang_up(controller, joined.chan.channel)
    await events.wait(of_call(uniqueid, ev.ChannelHungUp))


async def test_without_the_fastagi_server_a_blocked_caller_still_gets_through(
    settings: Settings,
    blocklist_pbx: PbxInfo,
    local_pbx: LocalPbx,
    database: async_sessionmaker[AsyncSession],
) -> None:
    """Fail open: a controller that does not answer the dialplan never refuses a citizen."""
    ctrl = controller_on(
        e2e_settings(settings, blocklist_pbx, enabled=False), database, local_pbx, blocklist_pbx
    )
    events = Events(ctrl)
    await start(ctrl)  # the controller alone: nothing listens on the FastAGI port
    try:
        await ctrl.add_agent(AGENT, "坐席6881")
        await events.wait(lambda e: isinstance(e, ev.MemberState) and e.interface == AGENT)
        uniqueid = await dial_12345(
            ctrl.ami,
            await blocked(database),
            ["TEST_WAIT=30", "TEST_DTMF=0"],
            prefix="e2e-failopen-",
        )
        joined = await events.wait(of_call(uniqueid, ev.CallerJoined))
        await hang_up(ctrl, joined.chan.channel)
        await events.wait(of_call(uniqueid, ev.ChannelHungUp))
        assert not [e for e in events.seen if of_call(uniqueid, ev.CallerBlocked)(e)]
    finally:
        await stop(ctrl, [AGENT])
