"""A whole call through the real Asterisk to the speech bot: 12345 → empty queue → hotline-bot → AudioSocket.

The emulated caller (``test-caller``) waits until its call has reached the bot, then plays a real utterance;
the bot (real Whisper, TTS, knowledge base, ticket services) answers from the knowledge base, hears no
"yes", takes no further words, and files a ticket. The AMI controller runs beside it, as in ``hotline bot
--with-ivr``: it tells the bot the caller's number and recording, and sets BOT_NEXT=hangup so the dialplan
hangs up instead of requeueing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from asr.bot import build_bot
from asr.dialogue import BotOutcome
from asr.evaluate import cer
from asr.whisper_engine import WhisperEngine
from config import Settings
from config.settings import replace_settings
from hotline.wiring import bot_hooks
from ivr.pbx.testcall import place_call
from knowledge import services as kb
from knowledge.schemas import EntryContent
from tests.asr.live_whisper import live_whisper
from tests.e2e.conftest import AmiEvents
from tests.e2e.controller_support import controller_on, start
from tickets import services as tickets

pytestmark = [pytest.mark.pbx, pytest.mark.slow]
UTT = "magicdata_cs_000018"
QUESTION = "我安排工作人员根据您的情况给您做一个保险计划"
ANSWER = "保险计划请到区社保中心一楼窗口办理。"
CALLER = "13800138000"


@pytest.fixture
def bot_settings(settings: Settings, pbx: Any, tmp_path: Path) -> Settings:
    return replace_settings(
        settings,
        {
            "asr": {  # short waits keep the suite quick; the flow is the same
                "bot": {"silence_timeout_s": 2.5, "dtmf_timeout_s": 3.0, "kb_poll_s": 3600}
            },
            "tts": {"cache_dir": str(tmp_path / "tts"), "speed_wpm": 300},
            "ami": {"host": pbx.ami_host, "port": pbx.ami_port},
        },
    )


@pytest.fixture
def whisper(bot_settings: Settings) -> Iterator[WhisperEngine]:
    with live_whisper(bot_settings) as engine:
        yield engine


@pytest.fixture
async def database(
    database: async_sessionmaker[AsyncSession],
) -> async_sessionmaker[AsyncSession]:
    """The e2e database with one published knowledge entry, the one the caller asks about."""
    async with database() as session:
        entry = await kb.create_entry(
            session,
            EntryContent(question=QUESTION, answer_speech=ANSWER, answer_text=ANSWER),
            "测试",
        )
        await kb.publish_entry(session, entry.id, "测试")
    return database


async def test_a_call_through_asterisk_reaches_the_bot_and_ends_as_a_ticket(
    bot_settings: Settings,
    pbx: Any,
    local_pbx: Any,
    whisper: WhisperEngine,
    database: async_sessionmaker[AsyncSession],
    ami_events: AmiEvents,
    shared_dir: Path,
) -> None:
    controller = controller_on(bot_settings, database, local_pbx, pbx)
    outcomes: dict[
        str, BotOutcome
    ] = {}  # by call uuid: other suites on the shared PBX may call the bot too
    hooks = bot_hooks(controller)

    async def on_outcome(call_uuid: str, outcome: BotOutcome) -> None:
        outcomes[call_uuid] = outcome
        await hooks["on_outcome"](call_uuid, outcome)

    bot = await build_bot(
        bot_settings,
        database,
        recognizers=whisper,
        host=pbx.ami_host,
        port=pbx.audiosocket_port,
        **(hooks | {"on_outcome": on_outcome}),
    )
    await start(controller)
    await bot.start()
    try:
        wav = shared_dir / "speech" / "wav8k_telephone_sim" / f"{UTT}.wav"
        report = await place_call(
            pbx,
            wav,
            caller=CALLER,
            context="hotline-inbound",
            audio_at="bot",
            caller_wait_s=60,
            wait=True,
            timeout_s=120,
        )
        end = await ami_events.wait_for(
            lambda e: e.get("UserEvent") == "HotlineBotEnd" and e.get("Uuid") == report.bot_uuid, 10
        )
    finally:
        await bot.close()
        await controller.stop()

    assert (
        report.bot_uuid and end.get("Next") == "hangup"
    )  # settled: the dialplan hung up, no requeue
    outcome = outcomes[report.bot_uuid]
    assert (outcome.next, outcome.reason, outcome.caller) == ("hangup", "ticket", CALLER)
    async with database() as session:
        ticket = await tickets.get_ticket(session, outcome.ticket_no or "")
    assert (ticket.channel, ticket.state, ticket.caller_phone) == ("bot", "accepted", CALLER)
    assert cer(QUESTION, ticket.content) <= 0.3, ticket.content
    assert ANSWER in (ticket.transcript or "") and ticket.call_id == report.bot_uuid
    assert ticket.recording and ticket.recording.endswith(".wav")
