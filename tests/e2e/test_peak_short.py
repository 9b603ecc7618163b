"""The peak in short (bench/peak.py): about 20 SIP callers with real speech through the real Asterisk, agents
answering as SIPp softphones, the service on PostgreSQL as its own process, killed and restarted mid-peak.
Callers come through the simulated carrier trunk with their own mobile numbers, so a caller who tells the bot a
matter gets a ticket: every call must end with an outcome, tickets are filed, and none is lost or filed twice."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.peak import Profile, one_run
from config import Settings
from ivr.pbx import PbxInfo
from tests.conftest import missing

pytestmark = [pytest.mark.pbx, pytest.mark.slow, pytest.mark.timeout(300)]
# 2 agents talking 6–18 s (capacity about 5 calls a minute): 15 s normal, 1.25 min at 3× (≈ 19 calls), 15 s
# recovery; the bot process is killed in the middle of the peak; callers give up after five rounds of an utterance
# and a 5 s pause (about 50 s): long enough to tell the bot a question and a matter and hear the ticket number.
SHORT = Profile(
    normal_minutes=0.25,
    peak_minutes=1.25,
    recovery_minutes=0.25,
    agents=2,
    talk_scale=0.1,
    rounds=5,
    fault="bot_kill",
)


async def test_a_short_peak_with_the_bot_killed_loses_no_caller_and_no_ticket(
    settings: Settings, pbx: PbxInfo, shared_dir: Path
) -> None:
    if shutil.which("sipp") is None:
        missing("the peak needs sipp (Debian package sip-tester; make system)")
    result = await one_run(
        settings, SHORT, "test-short"
    )  # figures in var/bench-peak/test-short/result.json

    assert result["calls"] >= 15, result["sipp"]
    assert result["sipp"]["sipp_placed"] == result["call_log_rows"], (
        "the call log lost or duplicated calls"
    )
    assert result["calls_without_outcome"] == 0, result["without_outcome"]
    assert result["tickets_created"] >= 1, result["bot_outcomes"]
    assert result["lost_tickets"] == 0, result["lost_ticket_numbers"]
    assert result["duplicate_tickets"] == 0
    assert any(e["event"].startswith("fault") for e in result["events"]), result["events"]
