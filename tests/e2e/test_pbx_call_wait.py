"""`hotline pbx call --wait` against the real local Asterisk: who took the call, how long it waited, and the
ticket the bot made (read from the database after the call)."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from panoramisk import Manager

from config import Settings
from hotline.cli import main as hotline_main
from hotline.db import create_schema, make_engine, make_sessionmaker
from ivr.leaders import ShiftInput, add_shift
from ivr.pbx import PbxInfo
from ivr.pbx.harness import MESSAGES
from ivr.pbx.testcall import place_call
from tests.conftest import missing
from tests.e2e.test_pbx import _queue_member
from tests.settings_support import SETTINGS
from tickets.services import Actor, TicketDraft, create_ticket

pytestmark = [pytest.mark.pbx, pytest.mark.slow]


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'wait.db'}"


@pytest.fixture
async def database(db_url: str) -> AsyncIterator[Any]:
    engine = make_engine(db_url)
    await create_schema(engine)
    yield make_sessionmaker(engine)
    await engine.dispose()


def port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


async def test_cli_reports_the_agent_who_answered(
    pbx: PbxInfo,
    ami: Manager,
    local_pbx: Any,
    db_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOTLINE_DATABASE_URL", db_url)
    monkeypatch.setenv("HOTLINE_PBX_CACHE_DIR", str(local_pbx.cache_dir))
    agent = "Local/6841@test-agent/n"
    async with _queue_member(ami, agent):
        code = await asyncio.to_thread(
            hotline_main, ["pbx", "call", "--dtmf", "0", "--caller-wait", "4", "--wait"]
        )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["answered_by"], report["member"]) == ("agent", agent)
    assert 0 <= report["wait_s"] < 3
    assert report["ticket_no"] is None and report["transcript"] is None


async def test_leader_on_duty_is_reported_as_leader(
    pbx: PbxInfo, ami: Manager, database: Any, settings: Settings
) -> None:
    leader = "Local/6842@test-agent/n"
    now = datetime.now(ZoneInfo(settings.timezone))
    async with database() as session:  # 领导接听日: this endpoint is a leader's for the whole day
        await add_shift(
            session, ShiftInput(now.date(), time(0, 0), time(23, 59, 59), "李明", leader, "区长")
        )
    async with _queue_member(ami, leader):
        report = await place_call(
            pbx,
            None,
            dtmf="0",
            caller_wait_s=4,
            wait=True,
            timeout_s=60,
            sessionmaker=database,
            timezone=settings.timezone,
        )
    assert (report.answered_by, report.member) == ("leader", leader)


async def test_without_agent_or_bot_the_call_reaches_the_bot_then_the_message_box(
    pbx: PbxInfo, database: Any
) -> None:
    """No queue member and nothing on the AudioSocket port: the dialplan sends the caller to hotline-bot
    (answered_by "bot"), AudioSocket fails (bot_status FAILED), the caller is queued again, the queue is still
    empty, so the caller may leave a message (留言); this silent caller hangs up while it records, and the
    recording is kept for the controller to file (none runs here, so no ticket)."""
    if not port_free(pbx.ami_host, pbx.audiosocket_port):
        missing(f"AudioSocket port {pbx.audiosocket_port} is taken (a bot is running)")
    report = await place_call(
        pbx,
        None,
        dtmf="0",
        caller_wait_s=25,
        wait=True,
        timeout_s=60,
        sessionmaker=database,
        ticket_wait_s=5,
    )
    messages = sorted((pbx.root / MESSAGES).glob(f"{report.uniqueid}-*.wav"))
    for message in messages:
        message.unlink()  # no other test may file it
    assert (report.answered_by, report.bot_status, report.member) == ("bot", "FAILED", None)
    assert report.bot_uuid and str(uuid.UUID(report.bot_uuid)) == report.bot_uuid
    assert report.ticket_no is None and report.transcript is None
    assert report.duration_s is not None and report.duration_s < 60
    assert (
        report.wait_s is not None and report.wait_s < 5
    )  # joinempty: the empty queue is left at once
    assert len(messages) == 1, "the caller reached the message box and its recording was kept"


async def test_bots_ticket_and_transcript_are_reported(pbx: PbxInfo, database: Any) -> None:
    """A bot peer on the AudioSocket port takes the session and files a ticket under its session id (what
    asr/bot.py does), then hangs up the session; the report reads the ticket back from the database."""

    async def bot_peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        kind, length = struct.unpack(">BH", await reader.readexactly(3))
        assert kind == 0x01
        session_id = str(uuid.UUID(bytes=await reader.readexactly(length)))
        async with database() as session:
            await create_ticket(
                session,
                TicketDraft(
                    channel="bot",
                    caller_phone="13800138000",
                    content="咨询居住证办理需要哪些材料",
                    transcript="我想问一下居住证怎么办理",
                    call_id=session_id,
                ),
                Actor("语音机器人", "bot"),
                settings=SETTINGS,
            )
        writer.write(b"\x00\x00\x00")  # hangup frame: the session is over
        await writer.drain()
        writer.close()

    try:
        server = await asyncio.start_server(bot_peer, pbx.ami_host, pbx.audiosocket_port)
    except OSError:
        missing(f"AudioSocket port {pbx.audiosocket_port} is taken (a bot is running)")
    async with server:
        report = await place_call(
            pbx,
            None,
            dtmf="0",
            caller_wait_s=60,
            wait=True,
            timeout_s=60,
            sessionmaker=database,
            ticket_wait_s=5,
        )
    assert (report.answered_by, report.bot_status) == ("bot", "SUCCESS")
    assert report.ticket_no is not None and report.ticket_no.startswith("12345-")
    assert report.transcript == "我想问一下居住证怎么办理"
