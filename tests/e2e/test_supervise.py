"""Supervision (班长) on the real Asterisk: a supervisor's whisper (密语, ChanSpy w) reaches the agent's leg only.

Every phone plays its own steady tone — caller 440 Hz, agent 620 Hz, supervisor 1400 Hz (a sound file written
here, 3 s) — and each emulated phone records what it hears (MixMonitor r()). The agent must hear the caller and
the supervisor; the caller must hear the agent and never the supervisor.
"""

from __future__ import annotations

import uuid
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from config import Settings
from ivr.models import SupervisionAction
from tests.e2e.callcontrol_support import AGENT, answered_call, callcontrol_settings
from tests.e2e.conftest import AmiEvents

pytestmark = [pytest.mark.pbx, pytest.mark.slow]
CALLER_HZ, AGENT_HZ, SUPERVISOR_HZ = 440, 620, 1400
SUPERVISOR_PHONE = "Local/s@test-supervisor/n"


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


async def test_a_supervisors_whisper_reaches_the_agents_leg_only(
    settings: Settings, pbx: Any, local_pbx: Any, database: Any, ami_events: AmiEvents
) -> None:
    cfg = callcontrol_settings(settings, pbx)
    write_tone(Path(pbx.sounds_dir) / "test-supervisor.wav", SUPERVISOR_HZ, 3.0)
    tag = f"whisper-{uuid.uuid4().hex[:8]}"
    tones = [
        f"TEST_TONE={CALLER_HZ}",
        f"TEST_RECORD={tag}-caller",
        f"__TEST_AGENT_TONE={AGENT_HZ}",
        f"__TEST_AGENT_RECORD={tag}-agent",
    ]
    async with answered_call(cfg, database, local_pbx, pbx, tones) as call:
        spy = await call.control.spy(
            AGENT,
            "whisper",
            agent="agent1",
            supervisor="banzhang",
            role="supervisor",
            phone=SUPERVISOR_PHONE,
        )
        started = await ami_events.wait_for(lambda e: e.event == "ChanSpyStart")
        assert started.get("SpyeeChannel") == call.connected.member_channel
        # the supervisor's phone talks for 3 s, then hangs up: the spy stops
        await ami_events.wait_for(lambda e: e.event == "ChanSpyStop", timeout_s=15)
        # each phone is the ;2 half of its Local channel; StopMixMonitor closes its files before it answers
        for leg in (call.connected.chan.channel, call.connected.member_channel):
            phone = leg.removesuffix(";1") + ";2"
            await call.ctrl.ami.action({"Action": "StopMixMonitor", "Channel": phone})
    recordings = Path(pbx.recordings_dir)
    agent_heard = recordings / f"{tag}-agent-heard.wav"
    caller_heard = recordings / f"{tag}-caller-heard.wav"
    assert tone_share(agent_heard, CALLER_HZ) > 0.1  # the agent hears the caller …
    assert tone_share(agent_heard, SUPERVISOR_HZ) > 0.1  # … and the supervisor
    assert tone_share(caller_heard, AGENT_HZ) > 0.1  # the caller hears the agent …
    assert tone_share(caller_heard, SUPERVISOR_HZ) < 0.001  # … never the supervisor
    async with database() as db:
        audit = await db.get(SupervisionAction, 1)
    assert audit is not None and (audit.action, audit.supervisor, audit.agent, audit.uniqueid) == (
        "whisper",
        "banzhang",
        "agent1",
        spy.uniqueid,
    )
