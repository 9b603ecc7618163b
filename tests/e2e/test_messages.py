"""Voice messages (留言) against the real local Asterisk: the caller records after the tone, the controller files
the ticket and sets its number on the channel, the dialplan reads it back, Whisper transcribes the recording.

Callers are ``Local/s@test-caller/n`` channels into hotline-inbound (see [test-caller]); ``TEST_AUDIO_AT=message``
holds their speech back until the hotline side records. Nobody listens on the bot's port here, so a caller
sent to the bot finds it unreachable (BOT_STATUS=FAILED).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from asr.evaluate import cer, load_references
from asr.messages import MessageTranscriber
from asr.whisper_engine import WhisperEngine
from config import Settings
from config.settings import replace_settings
from hotline.wiring import Telephony
from ivr import events as ev
from ivr.controller import HotlineController
from ivr.messages import MESSAGE_FAMILY, MessageFiler
from ivr.pbx.harness import MESSAGES
from ivr.pbx.testcall import install_test_audio
from tests.asr.live_whisper import live_whisper
from tests.e2e.conftest import AmiEvents
from tests.e2e.controller_support import (
    Events,
    controller_on,
    dial_12345,
    new_number,
    start,
    stop,
    until_in_use,
)
from tickets.models import Ticket, VoiceMessage

pytestmark = [pytest.mark.pbx, pytest.mark.slow]

UTT = "BAC009S0764W0121"  # 甚至出现交易几乎停滞的情况 (telephone band)
BUSY_AGENT = "Local/6871@test-agent/n"  # 68xx: reserved for the e2e tests
PREFIX = "e2e-msg-"  # Uniqueids of these tests' callers, and so their message files


@pytest.fixture(scope="module")
def message_dialplan(local_pbx: Any) -> None:
    """The PBX runs the current dialplan (one started by an older checkout needs `hotline pbx restart`)."""
    for context in ("hotline-message", "hotline-message-report", "hotline-queue-exit"):
        assert context in local_pbx.rx(f"dialplan show {context}"), (
            f"{context} missing: restart the local PBX"
        )


@pytest.fixture(scope="module")
def whisper(settings: Settings) -> Iterator[WhisperEngine]:
    with live_whisper(settings) as engine:
        yield engine


@pytest.fixture
def folder(local_pbx: Any) -> Iterator[Path]:
    """The PBX's messages folder, without the messages of earlier runs of these tests (each test's fresh database
    would file them all again)."""
    path = Path(local_pbx.root) / MESSAGES
    for stale in path.glob(f"{PREFIX}*"):
        stale.unlink()
    yield path
    for ours in path.glob(f"{PREFIX}*"):
        ours.unlink()


@pytest.fixture
async def controller(
    settings: Settings, pbx: Any, local_pbx: Any, database: Any, message_dialplan: None
) -> AsyncIterator[HotlineController]:
    ctrl = controller_on(
        replace_settings(
            settings,
            {"ami": {"host": pbx.ami_host, "port": pbx.ami_port}, "overflow": {"enabled": False}},
        ),
        database,
        local_pbx,
        pbx,
    )
    yield ctrl
    await stop(ctrl, (BUSY_AGENT,))


@pytest.fixture
async def filer(controller: HotlineController, database: Any, folder: Path) -> MessageFiler:
    filer = MessageFiler(controller, database, controller.settings, folder)
    await start(controller, Telephony(controller, messages=filer))
    return filer


@pytest.fixture
def events(controller: HotlineController) -> Events:
    return Events(controller)


async def place_call(
    ctrl: HotlineController,
    number: str,
    *,
    dtmf: str = "0",
    audio: str = "",
    end: str = "#",
    wait_s: int = 40,
    agent_wait_s: int = 60,
) -> str:
    """A caller from ``number`` dialling 12345 who presses ``dtmf``, speaks ``audio`` once a message is being
    recorded and presses ``end`` after it, then stays ``wait_s`` seconds; returns the Uniqueid of its hotline
    side. (Over a Local channel a silent caller sends no audio at all, so only # or the hang-up ends a message.)"""
    variables = [f"TEST_WAIT={wait_s}", f"TEST_DTMF={dtmf}", f"__TEST_AGENT_WAIT={agent_wait_s}"]
    if audio:
        variables += [f"TEST_AUDIO={audio}", "TEST_AUDIO_AT=message", f"TEST_DTMF_AFTER={end}"]
    return await dial_12345(ctrl.ami, number, variables, prefix=PREFIX)


async def message_row(database: Any, uniqueid: str) -> tuple[VoiceMessage, Ticket]:
    async with asyncio.timeout(15):  # filed by the controller's listener
        while True:
            async with database() as session:
                row = await session.scalar(
                    select(VoiceMessage).where(VoiceMessage.call_id == uniqueid)
                )
                if row is not None:
                    ticket = await session.get(Ticket, row.ticket_id)
                    assert ticket is not None
                    return row, ticket
            await asyncio.sleep(0.1)


def read_back(ami_events: AmiEvents, uniqueid: str) -> Any:
    return ami_events.wait_for(
        lambda e: e.get("UserEvent") == "HotlineMessageEnd" and e.get("Uniqueid") == uniqueid, 60
    )


async def test_a_caller_nobody_can_take_leaves_a_spoken_message_that_becomes_a_transcribed_ticket(
    controller: HotlineController,
    filer: MessageFiler,
    events: Events,
    ami_events: AmiEvents,
    database: Any,
    pbx: Any,
    shared_dir: Path,
    whisper: WhisperEngine,
    folder: Path,
) -> None:
    speech = shared_dir / "speech"
    reference = dict(load_references(speech / "transcripts.tsv"))[UTT]
    audio = install_test_audio(pbx, speech / "wav8k_telephone_sim" / f"{UTT}.wav")
    number = new_number()
    # no agent logged in, the bot unreachable: the queue, then the bot, then the queue again turn the caller away
    uniqueid = await place_call(controller, number, audio=audio)
    left = await events.wait(
        lambda e: isinstance(e, ev.MessageLeft) and e.chan.uniqueid == uniqueid, 90
    )
    assert isinstance(left, ev.MessageLeft)
    assert (left.record_status, left.caller_number, left.file) == (
        "DTMF",
        number,
        f"{uniqueid}-{number}.wav",
    )
    row, ticket = await message_row(database, uniqueid)
    assert (ticket.channel, ticket.caller_phone, ticket.recording, ticket.call_id) == (
        "message",
        number,
        left.file,
        uniqueid,
    )
    end = await read_back(ami_events, uniqueid)  # the number was set on the channel and read back
    assert end.get("Ticket") == ticket.ticket_no.replace("-", "")
    assert await controller.astdb_get(MESSAGE_FAMILY, uniqueid) == "DTMF"
    assert (folder / left.file).is_file()

    transcriber = MessageTranscriber(controller.settings, database, folder, whisper)
    while await transcriber.run_once():  # other suites' messages may be pending too: until none is
        pass
    async with database() as session:
        ticket = await session.get(Ticket, ticket.id, populate_existing=True)
        row = await session.get(VoiceMessage, row.id, populate_existing=True)
    assert ticket is not None and row is not None and row.transcription == "transcribed"
    assert cer(reference, ticket.content) <= 0.3, ticket.content


async def test_a_caller_waiting_in_the_queue_presses_9_to_leave_a_message(
    controller: HotlineController,
    filer: MessageFiler,
    events: Events,
    ami_events: AmiEvents,
    database: Any,
    pbx: Any,
    shared_dir: Path,
) -> None:
    audio = install_test_audio(pbx, shared_dir / "speech" / "wav8k_telephone_sim" / f"{UTT}.wav")
    await controller.add_agent(BUSY_AGENT, "忙碌坐席")
    await events.wait(lambda e: isinstance(e, ev.MemberState) and e.interface == BUSY_AGENT)
    since = len(events.seen)
    occupant = await place_call(controller, new_number(), wait_s=90)
    busy = await events.wait(
        lambda e: isinstance(e, ev.AgentConnected) and e.chan.uniqueid == occupant
    )
    await until_in_use(events, BUSY_AGENT, since)
    try:
        number = new_number()
        uniqueid = await place_call(
            controller, number, dtmf="0wwwwww9", audio=audio
        )  # 9: 3 s into the queue
        await events.wait(lambda e: isinstance(e, ev.CallerJoined) and e.chan.uniqueid == uniqueid)
        await events.wait(
            lambda e: isinstance(e, ev.MessageLeft) and e.chan.uniqueid == uniqueid, 60
        )
        _, ticket = await message_row(database, uniqueid)
        end = await read_back(ami_events, uniqueid)
    finally:
        await controller.ami.action({"Action": "Hangup", "Channel": busy.chan.channel})
    assert (ticket.channel, ticket.caller_phone) == ("message", number)
    assert end.get("Ticket") == ticket.ticket_no.replace("-", "")


async def test_a_caller_who_hangs_up_while_recording_still_gets_a_ticket(
    controller: HotlineController,
    filer: MessageFiler,
    events: Events,
    database: Any,
    pbx: Any,
    shared_dir: Path,
    folder: Path,
) -> None:
    audio = install_test_audio(pbx, shared_dir / "speech" / "wav8k_telephone_sim" / f"{UTT}.wav")
    number = new_number()
    uniqueid = await place_call(
        controller, number, audio=audio, end="", wait_s=1
    )  # hangs up 1 s after speaking
    left = await events.wait(
        lambda e: isinstance(e, ev.MessageLeft) and e.chan.uniqueid == uniqueid, 90
    )
    assert isinstance(left, ev.MessageLeft) and left.record_status == "HANGUP"
    row, ticket = await message_row(database, uniqueid)
    assert (row.record_status, ticket.channel, ticket.caller_phone) == ("HANGUP", "message", number)
    assert (
        folder / left.file
    ).stat().st_size > 8000 * 2  # the spoken part was kept (Record's k option)
    assert await controller.astdb_get(MESSAGE_FAMILY, uniqueid) == "HANGUP"
