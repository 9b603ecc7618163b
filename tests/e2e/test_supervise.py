"""Supervision (班长) on the real Asterisk: a supervisor's whisper (密语, ChanSpy w) reaches the agent's leg only,
listening (监听) reaches nobody, barging in (强插, ChanSpy B) reaches both.

Every phone plays its own steady tone — caller 440 Hz, agent 620 Hz, supervisor 1400 Hz (a sound file written
here, 3 s) — and each emulated phone records what it hears (MixMonitor r()).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from config import Settings
from ivr.callcontrol import SpyAction
from ivr.models import SupervisionAction
from tests.e2e.callcontrol_support import (
    AGENT,
    answered_call,
    callcontrol_settings,
    stop_recordings,
    tone_share,
    write_tone,
)
from tests.e2e.conftest import AmiEvents

pytestmark = [pytest.mark.pbx, pytest.mark.slow]
CALLER_HZ, AGENT_HZ, SUPERVISOR_HZ = 440, 620, 1400
SUPERVISOR_PHONE = "Local/s@test-supervisor/n"


# what the supervisor's voice reaches: (the agent, the caller)
HEARD_BY = {"listen": (False, False), "whisper": (True, False), "barge": (True, True)}


@pytest.mark.parametrize("action", list(HEARD_BY))
async def test_a_supervisors_voice_reaches_whom_listen_whisper_or_barge_says(
    settings: Settings,
    pbx: Any,
    local_pbx: Any,
    database: Any,
    ami_events: AmiEvents,
    action: SpyAction,
) -> None:
    """监听: nobody hears the supervisor; 密语: the agent only; 强插: both."""
    cfg = callcontrol_settings(settings, pbx)
    write_tone(Path(pbx.sounds_dir) / "test-supervisor.wav", SUPERVISOR_HZ, 3.0)
    tag = f"{action}-{uuid.uuid4().hex[:8]}"
    tones = [
        f"TEST_TONE={CALLER_HZ}",
        f"TEST_RECORD={tag}-caller",
        f"__TEST_AGENT_TONE={AGENT_HZ}",
        f"__TEST_AGENT_RECORD={tag}-agent",
    ]
    async with answered_call(cfg, database, local_pbx, pbx, tones) as call:
        spy = await call.control.spy(
            AGENT,
            action,
            agent="agent1",
            supervisor="banzhang",
            role="supervisor",
            phone=SUPERVISOR_PHONE,
        )
        started = await ami_events.wait_for(lambda e: e.event == "ChanSpyStart")
        assert started.get("SpyeeChannel") == call.connected.member_channel
        # the supervisor's phone talks for 3 s, then hangs up: the spy stops
        await ami_events.wait_for(lambda e: e.event == "ChanSpyStop", timeout_s=15)
        await stop_recordings(call.ctrl, call.connected)
    recordings = Path(pbx.recordings_dir)
    agent_heard = recordings / f"{tag}-agent-heard.wav"
    caller_heard = recordings / f"{tag}-caller-heard.wav"
    assert tone_share(agent_heard, CALLER_HZ) > 0.1  # the agent hears the caller …
    assert tone_share(caller_heard, AGENT_HZ) > 0.1  # … and the caller the agent, whatever happens
    agent_hears, caller_hears = HEARD_BY[action]
    for heard, expected in ((agent_heard, agent_hears), (caller_heard, caller_hears)):
        share = tone_share(heard, SUPERVISOR_HZ)
        assert share > 0.1 if expected else share < 0.001, f"{heard.name}: supervisor {share:.4f}"
    async with database() as db:
        audit = (
            await db.scalars(
                select(SupervisionAction).where(SupervisionAction.uniqueid == spy.uniqueid)
            )
        ).all()
    assert [(a.action, a.supervisor, a.agent) for a in audit] == [(action, "banzhang", "agent1")]
