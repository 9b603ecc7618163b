"""The spoken bench's simulated caller answers a clarifying question as a real caller would: it understands what
the bot said from the audio it received, presses 1 or 2 (a DTMF frame) when the entry it means is named and
hears that entry's answer, and otherwise stays silent while the bot moves on. A real call over loopback
AudioSocket with the real dialogue and espeak-ng voice; the recogniser and the knowledge base's answer are
scripted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from asr import audio
from asr.bot import build_bot
from asr.dialogue import BotOutcome, brief
from asr.recognizer import Event, Final
from bench.containment import BotVoice, Ear, Marks, Question, one_call
from config import Settings
from config.settings import replace_settings
from hotline.db import create_schema, make_engine, make_sessionmaker
from knowledge.retrieval import Answer, Candidate, IndexedEntry

pytestmark = pytest.mark.slow

ASKED = "身份证的事怎么办"
LOST = IndexedEntry(101, "居民身份证丢了怎么补办", "请带户口簿到派出所申请补领。", "", "户政")
RENEW = IndexedEntry(102, "身份证快到期了怎么换领", "请在到期前三个月内到派出所换领。", "", "户政")
CLOSE = Answer.of(LOST, 0.6, False, (Candidate(RENEW, 0.9, 0.5, 0.5),))


class HearsInFirstLoudFrame:
    """A recogniser that hears ``ASKED`` in the caller's first loud frame (the line's silence is nothing)."""

    sample_rate = 8000

    def __init__(self) -> None:
        self.heard = False

    async def feed(self, pcm: bytes) -> list[Event]:
        if self.heard or audio.frame_dbfs(pcm) < -30:
            return []
        self.heard = True
        return [Final(ASKED, 0.0, 0.1)]

    async def flush(self) -> list[Event]:
        return []


@dataclass
class Recognizers:
    name: str = "scripted"

    def __call__(self, sample_rate: int = 8000) -> HearsInFirstLoudFrame:
        return HearsInFirstLoudFrame()

    def close(self) -> None: ...


def tone(seconds: float) -> bytes:
    t = np.arange(int(seconds * audio.SAMPLE_RATE)) / audio.SAMPLE_RATE
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()


@pytest.fixture
async def ear(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Ear, int]]:
    """The bot on loopback whose knowledge base finds ``LOST`` and ``RENEW`` equally good for ``ASKED``."""
    bot_settings = replace_settings(
        settings,
        {
            "asr": {"bot": {"kb_poll_s": 3600, "silence_timeout_s": 1.0}},
            "tts": {"engine": "espeak-ng", "cache_dir": str(tmp_path / "tts"), "speed_wpm": 300},
        },
    )
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    await create_schema(engine)
    outcomes: dict[str, BotOutcome] = {}

    async def on_outcome(call_id: str, outcome: BotOutcome) -> None:
        outcomes[call_id] = outcome

    marks = Marks()
    bot = await build_bot(
        bot_settings,
        make_sessionmaker(engine),
        recognizers=Recognizers(),
        on_outcome=on_outcome,
        trace=marks,
        port=0,
    )

    async def ask(text: str, context: Answer | None = None) -> Answer:
        assert (text, context) == (ASKED, None)
        return CLOSE

    monkeypatch.setattr(bot.desk, "ask", ask)
    bot.tts = voice = BotVoice(bot.tts)
    await bot.start()
    yield Ear(voice, marks, bot.prompts.clarify, 30.0, outcomes), bot.port
    await bot.close()
    await engine.dispose()


async def test_a_caller_presses_the_key_of_the_named_entry_it_means_and_hears_its_answer(
    ear: tuple[Ear, int],
) -> None:
    listener, port = ear
    pcm = tone(0.2)
    question = Question(ASKED, RENEW.question, pcm, len(pcm) // audio.FRAME_BYTES)

    call = await one_call(port, question, listener, seed=0)

    assert call.offered == (brief(LOST.question), brief(RENEW.question))
    assert call.pressed == "2"
    assert call.outcome is not None and call.outcome.answer_id == RENEW.id
    assert RENEW.answer_speech in call.outcome.transcript


async def test_a_caller_whose_entry_is_not_named_presses_nothing_and_the_bot_moves_on(
    ear: tuple[Ear, int],
) -> None:
    listener, port = ear
    pcm = tone(0.2)
    question = Question(ASKED, "住房公积金怎么提取", pcm, len(pcm) // audio.FRAME_BYTES)

    call = await one_call(port, question, listener, seed=0)

    assert call.offered == (brief(LOST.question), brief(RENEW.question))
    assert call.pressed is None
    assert call.outcome is not None and call.outcome.answer_id is None
    calls = list(listener.marks.calls.values())
    assert [m for m, _ in calls[0] if m in ("clarify", "ask_matter")] == [
        "clarify",
        "clarify",
        "ask_matter",
    ]
