"""`hotline run` as `make run` starts it: a caller phones 12345 through the real Asterisk, nobody is logged in,
the bot takes the call, and the caller can follow the resulting ticket on the citizen API."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import RunningHotline

pytestmark = pytest.mark.slow
CALLER = "13812345678"
UTTERANCE = "wav8k_telephone_sim/magicdata_cs_000018.wav"


async def test_an_overflow_caller_is_answered_by_the_bot_and_gets_a_ticket(
    hotline_run: RunningHotline, shared_dir: Path
) -> None:  # nobody in the queue (known_queue)
    base, env, log_path = hotline_run
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/healthz") as resp:
            assert resp.status == 200 and (await resp.json())["database"] == "ok"

    call = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hotline.cli",
        "pbx",
        "call",
        "--audio",
        str(shared_dir / "speech" / UTTERANCE),
        "--caller",
        CALLER,
        "--dtmf",
        "2",  # 投诉: a digit during the welcome ends the menu at once
        "--wait",
        "--ticket-wait",
        "60",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(240):
        out, _ = await call.communicate()
    report = json.loads(out)
    assert report["answered_by"] == "bot"
    service_log = log_path.read_text(errors="replace")[-4000:]
    assert report["ticket_no"], (
        f"{json.dumps(report, ensure_ascii=False)}\n--- hotline run log ---\n{service_log}"
    )
    assert "来电人：" in report["transcript"]

    async with aiohttp.ClientSession() as http:
        url = f"{base}/api/v1/tickets/{report['ticket_no']}"
        async with http.get(url, params={"phone": CALLER}) as resp:
            assert resp.status == 200
            progress = await resp.json()
        async with http.get(url, params={"phone": "13900000000"}) as resp:
            assert resp.status == 404
    assert progress["ticket_no"] == report["ticket_no"]
