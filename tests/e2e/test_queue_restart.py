"""Logged-in agents survive an Asterisk restart (queues.conf ``persistentmembers``): the real Asterisk restarted
under a running controller gives back each member as the controller added it — name, state interface, penalty,
pause and its reason — with nobody logging in again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from config import Settings
from ivr.controller import HotlineController
from ivr.pbx import LocalPbx, PbxInfo
from ivr.state import WRAP_UP_REASON
from tests.e2e.controller_support import e2e_settings, running

pytestmark = [pytest.mark.pbx, pytest.mark.slow]
READY, WRAPPING = "Local/6871@test-agent/n", "Local/6872@test-agent/n"


@pytest.fixture
async def controller(
    settings: Settings, pbx: PbxInfo, local_pbx: LocalPbx, database: Any
) -> AsyncIterator[HotlineController]:
    async with running(
        e2e_settings(settings, pbx, enabled=False), database, local_pbx, pbx
    ) as ctrl:
        yield ctrl


async def _members(ctrl: HotlineController) -> dict[str, dict[str, Any]]:
    reply = await ctrl.ami.action({"Action": "QueueStatus", "Queue": "hotline"}, as_list=True)
    assert isinstance(reply, list)
    return {
        m["Location"]: {
            k: m.get(k) for k in ("Name", "StateInterface", "Penalty", "Paused", "PausedReason")
        }
        for m in reply
        if m.get("Event") == "QueueMember"
    }


async def test_logged_in_agents_are_back_in_the_queue_after_an_asterisk_restart(
    controller: HotlineController, local_pbx: LocalPbx, pbx: PbxInfo
) -> None:
    await controller.add_agent(READY, "坐席甲")
    await controller.add_agent(WRAPPING, "坐席乙")
    await controller.pause_agent(WRAPPING, True, WRAP_UP_REASON)
    before = await _members(controller)
    assert set(before) == {READY, WRAPPING} and before[WRAPPING]["Paused"] == "1", before
    resyncs = controller.resyncs

    vars(pbx).update(vars(await asyncio.to_thread(local_pbx.restart)))
    async with asyncio.timeout(60):
        while controller.resyncs == resyncs or not controller.ami.connected.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.2)

    assert await _members(controller) == before
    assert {
        i: (m.name, m.penalty, m.paused, m.paused_reason)
        for i, m in controller.state.members.items()
    } == {
        READY: ("坐席甲", controller.cfg.agent_penalty, False, ""),
        WRAPPING: ("坐席乙", controller.cfg.agent_penalty, True, WRAP_UP_REASON),
    }
