"""SIP load through the real Asterisk: SIPp places concurrent calls to 12345 through the simulated carrier trunk,
each from its own mobile number, while `hotline run` serves them; nobody is logged in, so every caller must reach
the speech bot, and the call log must hold each call exactly once with the caller's number and the menu choice
the caller keyed in over RTP."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from panoramisk import Manager
from sqlalchemy import select

from hotline.db import make_engine
from ivr.models import CallRecord
from ivr.pbx import PbxInfo
from tests.conftest import missing
from tests.e2e.conftest import RunningHotline

pytestmark = pytest.mark.slow
SCENARIO = Path(__file__).parent / "sipp" / "caller_12345.xml"
CALLS = (
    12  # concurrent callers, more than the machine's cores and than any agent team on duty at night
)


NUMBERS = [f"1390000{n:04d}" for n in range(1, CALLS + 1)]  # one citizen per call


async def _sipp(pbx: PbxInfo, carrier: tuple[str, str], workdir: Path) -> tuple[int, str]:
    sipp = shutil.which("sipp")
    if sipp is None:
        missing("the SIP load test needs sipp (Debian package sip-tester; make system)")
    numbers = workdir / "numbers.csv"
    numbers.write_text("SEQUENTIAL\n" + "".join(f"{n};\n" for n in NUMBERS))
    user, password = carrier
    proc = await asyncio.create_subprocess_exec(
        sipp,
        f"127.0.0.1:{pbx.sip_port}",
        "-sf",
        str(SCENARIO),
        "-s",
        "12345",
        "-au",
        user,
        "-ap",
        password,
        "-inf",
        str(numbers),
        "-i",
        "127.0.0.1",
        "-mi",
        "127.0.0.1",
        "-p",
        "0",
        "-mp",
        "26000",
        "-m",
        str(CALLS),
        "-l",
        str(CALLS),
        "-r",
        "4",
        "-timeout",
        "120s",
        "-timeout_error",
        "-nostdin",
        "-trace_err",
        "-trace_screen",
        cwd=workdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")[-3000:] + _sipp_logs(workdir)


def _sipp_logs(workdir: Path) -> str:
    """The tails of SIPp's error and screen logs, for a failure message."""
    return "\n".join(p.read_text(errors="replace")[-3000:] for p in workdir.glob("*.log"))


async def _finished_calls(url: str, expected: int) -> list[CallRecord]:
    """The controller's call log once it holds ``expected`` ended calls (it writes them after each hang-up)."""
    engine = make_engine(url)
    try:
        while True:
            async with engine.connect() as conn:
                rows = list(
                    (
                        await conn.execute(
                            select(CallRecord).where(CallRecord.ended_at.is_not(None))
                        )
                    ).all()
                )
            if len(rows) >= expected:
                return rows  # type: ignore[return-value]
            await asyncio.sleep(0.5)
    finally:
        await engine.dispose()


async def test_concurrent_sip_callers_all_reach_the_bot_and_are_logged_once(
    carrier: tuple[str, str],
    hotline_run: RunningHotline,
    pbx: PbxInfo,
    ami: Manager,
    tmp_path: Path,
) -> None:
    code, report = await asyncio.wait_for(_sipp(pbx, carrier, tmp_path), 240)
    assert code == 0, f"SIPp: not every call succeeded\n{report}"

    async with asyncio.timeout(60):
        rows = await _finished_calls(hotline_run.env["HOTLINE_DATABASE_URL"], CALLS)
    assert len(rows) == CALLS, "the call log lost or duplicated calls"
    assert len({r.uniqueid for r in rows}) == CALLS
    assert sorted(r.caller_number for r in rows) == NUMBERS, (
        "the caller's number is not the From of the carrier"
    )
    assert all(r.dialled_number == "12345" for r in rows)
    assert [r.outcome for r in rows] == ["bot"] * CALLS, "a caller was not answered by the bot"
    assert all(r.menu == "consult" for r in rows), "the menu digit sent as RFC 4733 was not heard"
    assert len({r.bot_uuid for r in rows}) == CALLS

    channels = await ami.send_action({"Action": "CoreShowChannels"})
    live = (
        [m for m in channels if getattr(m, "event", "") == "CoreShowChannel"]
        if isinstance(channels, list)
        else []
    )
    assert live == [], (
        f"channels left behind after every caller hung up: {[m.get('Channel') for m in live]}"
    )
