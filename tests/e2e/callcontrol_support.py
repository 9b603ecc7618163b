"""What the call-control e2e tests share: a controller with :class:`ivr.callcontrol.CallControl` on the local PBX,
outside numbers routed to ``[test-department]``, and one agent answering a caller (no sleeps: events)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from ivr import events as ev
from ivr.callcontrol import CallControl
from ivr.controller import HotlineController
from ivr.state import CONTROL_ID_PREFIX
from tests.e2e.controller_support import (
    Events,
    dial_12345,
    e2e_settings,
    hang_up,
    new_number,
    running,
)

AGENT = "Local/6841@test-agent/n"
DEPARTMENT_TEMPLATE = "Local/{number}@test-department/n"


def callcontrol_settings(settings: Settings, pbx: Any) -> Settings:
    """No overflow (the caller stays with the agent); outside numbers answer in ``[test-department]``."""
    base = e2e_settings(settings, pbx, enabled=False)
    return base.model_copy(
        update={
            "callcontrol": base.callcontrol.model_copy(
                update={"outside_template": DEPARTMENT_TEMPLATE}
            )
        }
    )


@dataclass
class AnsweredCall:
    ctrl: HotlineController
    control: CallControl
    seen: Events
    uniqueid: str  # the caller's channel (hotline side)
    caller: str
    connected: ev.AgentConnected


@contextlib.asynccontextmanager
async def answered_call(
    settings: Settings,
    database: async_sessionmaker[AsyncSession],
    local_pbx: Any,
    pbx: Any,
    variables: list[str] = (),  # type: ignore[assignment]
) -> AsyncIterator[AnsweredCall]:
    """A caller dialled 12345 (0: straight to the queue) and the emulated agent ``AGENT`` answered."""
    async with running(settings, database, local_pbx, pbx, agents=[AGENT]) as ctrl:
        seen = Events(ctrl)
        control = CallControl(ctrl, settings.callcontrol, database, lambda: datetime.now(UTC))
        ctrl.add_listener(control.on_event)
        await ctrl.add_agent(AGENT, "测试坐席")
        await seen.wait(lambda e: isinstance(e, ev.MemberState) and e.interface == AGENT)
        caller = new_number()
        uniqueid = await dial_12345(
            ctrl.ami,
            caller,
            ["TEST_DTMF=0", "TEST_WAIT=60", "__TEST_AGENT_WAIT=60", *variables],
            prefix="cc-",
        )
        try:
            connected = await seen.wait(
                lambda e: isinstance(e, ev.AgentConnected) and e.chan.uniqueid == uniqueid
            )
            assert isinstance(connected, ev.AgentConnected) and connected.member_channel
            yield AnsweredCall(ctrl, control, seen, uniqueid, caller, connected)
        finally:
            await hang_up_all(ctrl, uniqueid)


async def hang_up_all(ctrl: HotlineController, uniqueid: str) -> None:
    """Hang up every channel of the test's call and the legs call control placed (other suites share the PBX)."""
    channels = await ctrl.ami.action({"Action": "CoreShowChannels"}, as_list=True)
    assert isinstance(channels, list)
    for c in channels:
        linked = str(c.get("Linkedid", ""))
        if c.get("Event") == "CoreShowChannel" and (
            linked == uniqueid
            or linked.startswith(f"{uniqueid}")
            or linked.startswith(CONTROL_ID_PREFIX)
        ):
            await hang_up(ctrl, str(c.get("Channel")))
