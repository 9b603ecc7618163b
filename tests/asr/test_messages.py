"""Voice messages (留言) transcribed by the real Whisper model: a spoken telephone-band message becomes the ticket's
text; silence, noise, a stray click and an unreadable file leave the ticket marked 无语音."""

from __future__ import annotations

import shutil
import wave
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from asr.evaluate import cer, load_references
from asr.messages import MessageTranscriber, spoken_text
from asr.whisper_engine import WhisperEngine
from config import Settings
from tests.asr.live_whisper import live_whisper
from tickets.models import Ticket, VoiceMessage
from tickets.voice_messages import NO_SPEECH_TEXT, LeftMessage, file_message

UTT = "BAC009S0764W0121"  # 甚至出现交易几乎停滞的情况, telephone band (8 kHz)
CALLER = "13812345678"
NOW = datetime(2025, 3, 3, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def whisper(settings: Settings) -> Iterator[WhisperEngine]:
    with live_whisper(settings) as engine:
        yield engine


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(samples.astype("<i2").tobytes())


async def leave(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, call_id: str
) -> str:
    async with sessionmaker() as session:
        filed = await file_message(
            session,
            LeftMessage(call_id, f"{call_id}-{CALLER}.wav", CALLER, "SILENCE"),
            settings=settings,
            now=NOW,
            sms=False,
        )
    return filed.ticket_no


async def test_a_spoken_message_becomes_the_tickets_text(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    whisper: WhisperEngine,
    shared_dir: Path,
    tmp_path: Path,
) -> None:
    speech = shared_dir / "speech"
    reference = dict(load_references(speech / "transcripts.tsv"))[UTT]
    shutil.copy(speech / "wav8k_telephone_sim" / f"{UTT}.wav", tmp_path / f"call-1-{CALLER}.wav")
    ticket_no = await leave(sessionmaker, settings, "call-1")

    transcriber = MessageTranscriber(settings, sessionmaker, tmp_path, whisper, clock=lambda: NOW)
    assert await transcriber.run_once() == 1
    assert await transcriber.run_once() == 0  # done: never transcribed twice
    async with sessionmaker() as session:
        ticket = await session.scalar(select(Ticket).where(Ticket.ticket_no == ticket_no))
        row = await session.scalar(select(VoiceMessage))
    assert ticket is not None and row is not None
    assert cer(reference, ticket.content) <= 0.3, ticket.content
    assert ticket.transcript == ticket.content and row.transcription == "transcribed"


async def test_messages_without_speech_stay_tickets_marked_no_speech(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    whisper: WhisperEngine,
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(12345)
    write_wav(tmp_path / f"silence-{CALLER}.wav", np.zeros(8000 * 4))
    write_wav(tmp_path / f"noise-{CALLER}.wav", rng.normal(0, 300, 8000 * 4))  # line hiss, no voice
    write_wav(
        tmp_path / f"click-{CALLER}.wav", np.full(800, 20000)
    )  # 0.1 s: too short to be a message
    (tmp_path / f"broken-{CALLER}.wav").write_bytes(b"RIFF\x00\x00garbage, not audio")
    calls = ("silence", "noise", "click", "broken", "missing")
    for call_id in calls:
        await leave(sessionmaker, settings, call_id)

    assert (
        await MessageTranscriber(
            settings, sessionmaker, tmp_path, whisper, clock=lambda: NOW
        ).run_once()
        == 5
    )
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                select(VoiceMessage.call_id, VoiceMessage.transcription, Ticket.content).join(
                    Ticket, Ticket.id == VoiceMessage.ticket_id
                )
            )
        ).all()
    assert sorted(rows) == sorted((c, "no_speech", NO_SPEECH_TEXT) for c in calls)


async def test_an_unmounted_folder_leaves_messages_pending(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    whisper: WhisperEngine,
    tmp_path: Path,
) -> None:
    await leave(sessionmaker, settings, "elsewhere")
    transcriber = MessageTranscriber(
        settings, sessionmaker, tmp_path / "not-mounted", whisper, clock=lambda: NOW
    )
    assert await transcriber.run_once() == 0
    async with sessionmaker() as session:
        assert await session.scalar(select(VoiceMessage.transcription)) == "pending"


def test_credits_and_stray_syllables_are_not_messages() -> None:
    assert (
        spoken_text("谢谢观看！") is None and spoken_text("嗯") is None and spoken_text(" ") is None
    )
    assert spoken_text(" 路灯坏了 ") == "路灯坏了"
