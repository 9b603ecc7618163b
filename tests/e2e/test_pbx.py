"""The local PBX against a real Asterisk 22: boot, AMI credentials, the dialplan contract, stop and restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import struct
import uuid
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from panoramisk import Manager
from panoramisk.message import Message

from hotline.cli import main as hotline_main
from ivr.pbx import LocalPbx, PbxError, PbxInfo
from ivr.pbx.harness import MESSAGES
from ivr.pbx.render import TEMPLATE_DIR
from ivr.pbx.testcall import ami_connect, place_call
from tests.conftest import missing
from tests.e2e.conftest import AmiEvents

pytestmark = [pytest.mark.pbx]


def _user_event(name: str, uniqueid: str) -> Callable[[Message], bool]:
    return lambda e: (
        e.event == "UserEvent" and e.get("UserEvent") == name and e.get("Uniqueid") == uniqueid
    )


def _hangup(uniqueid: str) -> Callable[[Message], bool]:
    return lambda e: e.event == "Hangup" and e.get("Uniqueid") == uniqueid


def _chan_vars(event: Message, header: str = "ChanVariable") -> dict[str, str]:
    raw = event.get(header) or []
    pairs = raw if isinstance(raw, list) else [raw]
    return dict(p.split("=", 1) for p in pairs if "=" in p)


async def _originate(ami: Manager, context: str, exten: str, *variables: str) -> str:
    """An emulated caller (Local/s@test-caller/n) into context,exten; returns the hotline side's Uniqueid."""
    uniqueid = str(uuid.uuid4())
    response = await asyncio.wait_for(
        ami.send_action(
            {
                "Action": "Originate",
                "Channel": "Local/s@test-caller/n",
                "Context": context,
                "Exten": exten,
                "Priority": "1",
                "CallerID": '"13800138000" <13800138000>',
                "Variable": list(variables),
                "ChannelId": uniqueid,
                "Async": "true",
            }
        ),
        30,
    )
    final = response[-1] if isinstance(response, list) else response
    assert final.get("Response") == "Success", dict(final)
    return uniqueid


@contextlib.asynccontextmanager
async def _queue_member(ami: Manager, interface: str) -> AsyncIterator[None]:
    # as_list=False: panoramisk would otherwise wait for more responses after "Added interface to queue".
    added = await ami.send_action(
        {
            "Action": "QueueAdd",
            "Queue": "hotline",
            "Interface": interface,
            "MemberName": f"emulated {interface}",
        },
        as_list=False,
    )
    assert added.success, dict(added)
    try:
        yield
    finally:
        await ami.send_action(
            {"Action": "QueueRemove", "Queue": "hotline", "Interface": interface}, as_list=False
        )


async def test_ami_login_with_generated_credentials(ami: Manager) -> None:
    pong = await ami.send_action({"Action": "Ping"})
    assert pong.success


async def test_wrong_or_empty_secret_is_refused(pbx: PbxInfo) -> None:
    for secret in ("wrong-" + pbx.ami_secret, ""):
        with pytest.raises(PbxError) as err:
            await ami_connect(pbx, secret=secret)
        assert err.value.code == "pbx.ami_login_failed"


def test_shipped_manager_conf_has_no_usable_secret(pbx: PbxInfo) -> None:
    shipped = (TEMPLATE_DIR / "manager.conf").read_text()
    assert re.findall(r"^\s*secret\s*=\s*(.*)$", shipped, re.M) == [
        "{{ ami_secret }}",
        "{{ credentials_secret }}",
    ]
    live = (pbx.root / "etc/asterisk/manager.conf").read_text()
    assert f"secret = {pbx.ami_secret}" in live and "{{" not in live
    assert f"secret = {pbx.credentials_secret}" in live
    assert min(len(pbx.ami_secret), len(pbx.credentials_secret)) >= 24


async def test_emulated_agent_answers_an_inbound_call(
    pbx: PbxInfo, ami: Manager, ami_events: AmiEvents
) -> None:
    agent = "Local/6001@test-agent/n"
    async with _queue_member(ami, agent):
        # The caller presses 1 (政策咨询) during the welcome; the agent talks 1 s and hangs up.
        uniqueid = await _originate(
            ami, "hotline-inbound", "12345", "TEST_DTMF=1", "TEST_WAIT=60", "__TEST_AGENT_WAIT=1"
        )
        connect = await ami_events.wait_for(
            lambda e: e.event == "AgentConnect" and e.get("Uniqueid") == uniqueid
        )
        assert connect.get("Interface") == agent
        assert _chan_vars(connect)["HOTLINE_MENU"] == "consult"
        await ami_events.wait_for(_hangup(uniqueid), timeout_s=30)
    recording = pbx.recordings_dir / f"{uniqueid}.wav"
    assert recording.is_file() and recording.stat().st_size > 44  # more than a bare WAV header
    assert not any(_user_event("HotlineBot", uniqueid)(e) for e in ami_events.events)


async def test_without_agents_the_caller_reaches_the_bot_and_is_not_left_in_silence(
    pbx: PbxInfo, ami: Manager, ami_events: AmiEvents
) -> None:
    # No queue member and no bot listening: bot → requeue → a voice message (留言), which the caller (silent,
    # TEST_WAIT=25) ends by hanging up: the message is still reported.
    uniqueid = await _originate(ami, "hotline-inbound", "12345", "TEST_DTMF=0", "TEST_WAIT=25")
    bot = await ami_events.wait_for(_user_event("HotlineBot", uniqueid), timeout_s=30)
    assert bot.get("Menu") == "human"
    assert str(uuid.UUID(bot.get("Uuid"))) == bot.get("Uuid")
    end = await ami_events.wait_for(_user_event("HotlineBotEnd", uniqueid), timeout_s=10)
    assert end.get("Status") == "FAILED"
    message = await ami_events.wait_for(_user_event("HotlineMessage", uniqueid), timeout_s=40)
    assert message.get("Status") == "HANGUP" and message.get("File", "").startswith(f"{uniqueid}-")
    await ami_events.wait_for(_hangup(uniqueid), timeout_s=10)
    (
        pbx.root / MESSAGES / message.get("File")
    ).unlink()  # kept by Record(k); no test files it as a ticket


async def test_bot_session_then_hangup_when_the_controller_says_so(
    pbx: PbxInfo, ami: Manager, ami_events: AmiEvents
) -> None:
    """A real AudioSocket peer: it receives the UUID and audio, the controller's Setvar BOT_NEXT=hangup
    arrives, then the peer closes the socket and the call ends without going back to the queue."""
    sessions: asyncio.Queue[str] = asyncio.Queue()
    close_now = asyncio.Event()

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        kind, length = struct.unpack(">BH", await reader.readexactly(3))
        assert kind == 0x01
        await sessions.put(str(uuid.UUID(bytes=await reader.readexactly(length))))
        kind, length = struct.unpack(">BH", await reader.readexactly(3))
        assert kind == 0x10 and length == 320  # 20 ms of 8 kHz 16-bit audio
        await close_now.wait()
        writer.close()

    try:
        server = await asyncio.start_server(peer, pbx.ami_host, pbx.audiosocket_port)
    except OSError:
        missing(f"AudioSocket port {pbx.audiosocket_port} is taken (a bot is running)")
    async with server:
        uniqueid = await _originate(ami, "hotline-bot", "s", "TEST_WAIT=60")
        bot = await ami_events.wait_for(_user_event("HotlineBot", uniqueid), timeout_s=20)
        assert await asyncio.wait_for(sessions.get(), 10) == bot.get("Uuid")
        setvar = await ami.send_action(
            {
                "Action": "Setvar",
                "Channel": bot.get("Channel"),
                "Variable": "BOT_NEXT",
                "Value": "hangup",
            }
        )
        assert setvar.success
        close_now.set()
        end = await ami_events.wait_for(_user_event("HotlineBotEnd", uniqueid), timeout_s=10)
        assert (end.get("Status"), end.get("Next")) == ("SUCCESS", "hangup")
        await ami_events.wait_for(_hangup(uniqueid), timeout_s=10)
    assert not any(
        e.event == "QueueCallerJoin" and e.get("Uniqueid") == uniqueid for e in ami_events.events
    )


async def test_place_call_reports_the_answering_agent(
    pbx: PbxInfo, ami: Manager, tmp_path: Path
) -> None:
    """`hotline pbx call --wait`: the caller's WAV is converted into the sounds folder and the report says
    which queue member answered."""
    wav = tmp_path / "caller.wav"
    with wave.open(
        str(wav), "wb"
    ) as out:  # 1 s of a 440 Hz tone at 16 kHz: the harness resamples it
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(
            b"".join(
                struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 16000)))
                for i in range(16000)
            )
        )
    async with _queue_member(ami, "Local/6002@test-agent/n"):
        report = await place_call(
            pbx, wav, dtmf="2", audio_at="start", caller_wait_s=5, wait=True, timeout_s=60
        )
    assert (report.answered_by, report.member) == ("agent", "Local/6002@test-agent/n")
    assert report.wait_s is not None and report.wait_s < 5
    assert report.bot_uuid is None and report.duration_s is not None
    converted = pbx.sounds_dir / f"{report.audio}.wav"
    assert (
        converted.read_bytes()[:4] == b"RIFF" and wave.open(str(converted)).getframerate() == 8000
    )


@pytest.mark.parametrize(("digit", "result"), [("3", "unsatisfied"), ("1", "satisfied")])
async def test_callback_survey_reports_the_pressed_digit(
    ami: Manager, ami_events: AmiEvents, digit: str, result: str
) -> None:
    ticket_no = f"T{uuid.uuid4().hex[:10]}"
    uniqueid = await _originate(
        ami, "hotline-callback", "s", f"TICKET_NO={ticket_no}", f"TEST_DTMF={digit}", "TEST_WAIT=60"
    )
    event = await ami_events.wait_for(_user_event("HotlineCallback", uniqueid), timeout_s=30)
    assert (event.get("TicketNo"), event.get("Result")) == (ticket_no, result)


async def test_stop_then_status_then_restart(
    local_pbx: LocalPbx, pbx: PbxInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    old_secret = pbx.ami_secret
    local_pbx.stop()
    assert local_pbx.status() is None
    capsys.readouterr()
    assert hotline_main(["pbx", "status"]) == 1
    assert json.loads(capsys.readouterr().out) == {"running": False}
    with pytest.raises(PbxError):
        await ami_connect(pbx, timeout_s=3)

    fresh = local_pbx.start()
    vars(pbx).update(vars(fresh))  # later tests of this session use the restarted instance
    assert fresh.ami_secret != old_secret
    manager = await ami_connect(fresh)
    assert (await manager.send_action({"Action": "Ping"})).success
    manager.close()
    with pytest.raises(PbxError) as err:
        await ami_connect(fresh, secret=old_secret)
    assert err.value.code == "pbx.ami_login_failed"
    assert local_pbx.start().pid == fresh.pid  # idempotent: an already running PBX is reused

    restarted = local_pbx.restart()  # keeps credentials, so connected clients simply log in again
    vars(pbx).update(vars(restarted))
    assert restarted.pid != fresh.pid and restarted.ami_secret == fresh.ami_secret
    manager = await ami_connect(restarted)
    assert (await manager.send_action({"Action": "Ping"})).success
    manager.close()
