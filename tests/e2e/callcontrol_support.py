"""What the call-control e2e tests share: a controller with :class:`ivr.callcontrol.CallControl` on the local PBX,
outside numbers routed to ``[test-department]``, one agent answering a caller (no sleeps: events), and the steady
tones each phone plays so a recording tells who was heard."""

from __future__ import annotations

import contextlib
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
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
        control = CallControl(ctrl, settings.callcontrol, database, lambda: datetime.now(UTC))
        ctrl.add_listener(control.on_event)
        async with agent_answers(ctrl, variables) as (seen, uniqueid, caller, connected):
            yield AnsweredCall(ctrl, control, seen, uniqueid, caller, connected)


@contextlib.asynccontextmanager
async def agent_answers(
    ctrl: HotlineController,
    variables: list[str] = (),  # type: ignore[assignment]
) -> AsyncIterator[tuple[Events, str, str, ev.AgentConnected]]:
    """On a running controller: the emulated agent ``AGENT`` joins the queue, a caller dials 12345 (0: the queue)
    and the agent answers; every channel of the call is hung up on exit."""
    seen = Events(ctrl)
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
        yield seen, uniqueid, caller, connected
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


async def stop_recordings(ctrl: HotlineController, connected: ev.AgentConnected) -> None:
    """Close the recordings of what the emulated caller and agent heard (``TEST_RECORD``, ``TEST_AGENT_RECORD``):
    each phone is the ;2 half of its Local channel; StopMixMonitor closes the files before it answers."""
    assert connected.member_channel
    for leg in (connected.chan.channel, connected.member_channel):
        phone = leg.removesuffix(";1") + ";2"
        await ctrl.ami.action({"Action": "StopMixMonitor", "Channel": phone})


def write_tone(path: Path, hz: int, seconds: float, rate: int = 8000) -> None:
    """A mono 16-bit WAV of a steady tone, readable by the PBX."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (8000 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    path.chmod(0o644)


def tone_share(path: Path, hz: int) -> float:
    """The share of the recording's energy within ±20 Hz of ``hz``."""
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    assert samples.size > rate, f"{path.name}: less than a second of audio"
    spectrum = np.abs(np.fft.rfft(samples)) ** 2
    freqs = np.fft.rfftfreq(samples.size, 1 / rate)
    return float(spectrum[np.abs(freqs - hz) <= 20].sum() / spectrum.sum())
