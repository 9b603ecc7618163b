"""The bot's parts without a call: intents, prompts, prompt trimming, and the desk on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from asr import intents
from asr.audio import FRAME_BYTES
from asr.audiosocket_server import AudioSocketServer
from asr.bot import HotlineDesk, SpeechBot, live_settings
from asr.dialogue import DialogueConfig, Intake, trim_silence
from asr.prompts import PromptsError, load_prompts
from asr.tts import speech_pieces
from config import Settings
from config.settings import AudioSocketSettings, BotSettings, replace_settings
from knowledge import services as kb
from knowledge.schemas import EntryContent
from tickets import services as tickets
from tickets.categories import load_categories
from tickets.dispatch_suggest import DispatchSuggester
from tickets.errors import InvalidInput

# An entry an editor adds while the bot runs (the desk and the console's panel must find it).
NEW_ENTRY = EntryContent(
    question="社保卡丢了怎么补办",
    answer_speech="请带身份证到社保服务大厅补办。",
    answer_text="请携带身份证到社保服务大厅补办。",
    keywords=["社保卡"],
)


# --- what the caller means ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("是的，解决了", "yes"),
        ("解决了，谢谢。", "yes"),
        ("好的", "yes"),
        ("嗯", "yes"),
        ("没问题了", "yes"),
        ("没有解决", "no"),
        ("不是", "no"),
        ("否", "no"),
        ("还是不清楚", "no"),
        ("没用", "no"),
        ("广州市房地产中介协会分析", None),
        ("", None),
    ],
)
def test_yes_no_from_speech(text: str, expected: str | None) -> None:
    assert intents.yes_no(text) == expected


def test_keys_1_and_2_are_yes_and_no() -> None:
    assert [intents.yes_no_key(k) for k in "1203#"] == ["yes", "no", None, None, None]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("转人工", True),
        ("我要人工服务。", True),
        ("找你们的话务员", True),
        ("帮我转一下真人", True),
        ("我想问一下社保怎么交", False),
        ("工人工资拖欠", True),
    ],
)
def test_asking_for_a_human(text: str, expected: bool) -> None:
    # "工人工资" contains 人工: a rare false alarm that costs only a transfer to a person, never a lost call.
    assert intents.wants_human(text) is expected


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("我要举报有人偷排污水", "举报"),
        ("投诉小区物业乱收费", "投诉"),
        ("家里停水了请帮忙", "求助"),
        ("建议在路口增加红绿灯", "建议"),
        ("社保卡怎么补办", "咨询"),
    ],
)
def test_kind_of_matter(text: str, kind: str) -> None:
    assert intents.kind_of(text) == kind


# --- prompts -------------------------------------------------------------------------------------------------


def test_shipped_prompts_load_and_read_the_ticket_number(settings: Settings) -> None:
    prompts = load_prompts(settings)
    assert "12345" not in prompts.greeting  # numbers are written out for TTS
    assert prompts.ticket("幺 二").count("幺 二") == 1
    assert "ticket_created" not in prompts.fixed() and prompts.greeting in prompts.fixed()


def test_broken_prompts_file_is_refused_with_a_clear_error(
    settings: Settings, tmp_path: Path
) -> None:
    bad = tmp_path / "prompts.toml"
    text = (Path(__file__).resolve().parents[2] / "config" / "bot_prompts.toml").read_text(
        encoding="utf-8"
    )
    bad.write_text(text.replace("{digits}", "[号码]"), encoding="utf-8")
    with pytest.raises(PromptsError) as err:
        load_prompts(replace_settings(settings, {"asr": {"bot": {"prompts": str(bad)}}}))
    assert err.value.code == "bot.prompts_invalid" and "ticket_created" in err.value.message
    with pytest.raises(PromptsError, match=r"bot\.prompts_missing"):
        load_prompts(
            replace_settings(settings, {"asr": {"bot": {"prompts": str(tmp_path / "none.toml")}}})
        )


def test_prompt_audio_is_trimmed_to_its_speech() -> None:
    tone = (np.sin(np.arange(8000) / 3) * 8000).astype("<i2").tobytes()
    pcm = bytes(FRAME_BYTES * 50) + tone + bytes(FRAME_BYTES * 40)
    trimmed = trim_silence(pcm)
    assert len(tone) <= len(trimmed) <= len(tone) + 6 * FRAME_BYTES + FRAME_BYTES
    assert trim_silence(bytes(FRAME_BYTES * 3)) == bytes(FRAME_BYTES * 3)  # all silence: left alone


def test_live_settings_use_the_bot_beam_and_pause(settings: Settings) -> None:
    live = live_settings(settings)
    assert live.asr.whisper.beam_size == settings.asr.bot.beam_size
    assert live.asr.vad.min_silence_ms == settings.asr.bot.vad_min_silence_ms
    assert live.asr.vad.speculative_ms == settings.asr.bot.vad_speculative_ms


def bot_on(settings: Settings) -> SpeechBot:
    """A bot that is never started: only what its constructor builds from ``settings`` is looked at."""
    idle: Any = None
    return SpeechBot(
        settings, recognizers=idle, tts=idle, desk=idle, prompts=load_prompts(settings)
    )


def test_the_bot_takes_its_dialogue_timings_and_server_from_the_settings_alone(
    settings: Settings,
) -> None:
    with pytest.raises(TypeError):
        DialogueConfig()  # type: ignore[call-arg]  # no defaults of its own: asr.bot is the one source
    with pytest.raises(TypeError):
        AudioSocketServer(bot_on(settings).handle)  # type: ignore[call-arg]  # nor the server: asr.audiosocket
    default = bot_on(settings)
    bot = BotSettings()
    assert (
        default.cfg.silence_timeout_s,
        default.cfg.filler_after_s,
        default.cfg.phone_attempts,
    ) == (bot.silence_timeout_s, bot.filler_after_ms / 1000, bot.phone_attempts)
    assert default.server.max_sessions == AudioSocketSettings().max_sessions
    changed = bot_on(
        replace_settings(
            settings,
            {
                "asr": {
                    "bot": {
                        "silence_timeout_s": 4.5,
                        "filler_after_ms": 250,
                        "barge_in_energy_ms": 100,
                    },
                    "audiosocket": {"max_sessions": 3},
                }
            },
        )
    )
    assert (
        changed.cfg.silence_timeout_s,
        changed.cfg.filler_after_s,
        changed.cfg.barge_in_window_s,
    ) == (4.5, 0.25, 0.1)
    assert changed.server.max_sessions == 3


class WarmingTts:
    """Speech synthesis that only notes what it is asked for, and says when it has had ``expected`` texts."""

    def __init__(self, expected: int) -> None:
        self.texts: list[str] = []
        self.expected = expected
        self.done = asyncio.Event()

    async def asynthesize(self, text: str) -> bytes:
        self.texts.append(text)
        if len(self.texts) == self.expected:
            self.done.set()
        return b""


async def test_the_warm_up_synthesises_the_prompts_and_only_the_first_piece_of_each_answer(
    settings: Settings,
) -> None:
    answers = [
        "社保卡丢失的，请携带身份证到社保经办窗口挂失补办，补卡需要五个工作日，工本费二十元。",
        "可以在网上办理。",
    ]
    prompts = load_prompts(settings)
    tts = WarmingTts(len(prompts.fixed()) + len(answers))
    entries = [SimpleNamespace(answer_speech=text) for text in answers]

    async def no_ticket_writes() -> None:
        return None

    desk: Any = SimpleNamespace(
        index=SimpleNamespace(entries=lambda: entries),
        writes=SimpleNamespace(drain=no_ticket_writes),
    )
    idle: Any = None
    bot = SpeechBot(
        settings,
        recognizers=idle,
        tts=cast(Any, tts),
        desk=desk,
        prompts=prompts,
        port=0,
        owns_recognizers=False,
    )
    await bot.start()
    try:
        async with asyncio.timeout(30):
            await tts.done.wait()
    finally:
        await bot.close()
    warmed = len(prompts.fixed())
    assert tts.texts[:warmed] == list(prompts.fixed())
    assert tts.texts[warmed:] == [speech_pieces(text)[0] for text in answers]  # heard first
    assert len(tts.texts[warmed]) < len(answers[0])


# --- the desk: knowledge base and ticket services, on both databases ---------------------------------------


def intake(text: str, phone: str = "13800138000") -> Intake:
    return Intake(
        call_id=str(uuid.uuid4()),
        caller_phone=phone,
        content=text,
        transcript=f"来电人：{text}",
        kind=intents.kind_of(text),
        recording="rec-1.wav",
    )


async def test_empty_knowledge_base_answers_nothing_confidently(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    desk = await HotlineDesk.load(settings, sessionmaker)
    answer = await desk.ask("社保卡丢了怎么补办")
    assert (answer.answer_id, answer.confident) == (None, False)
    assert desk.hotwords(10) == []


async def test_desk_sees_new_entries_and_files_tickets(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    suggester = DispatchSuggester.from_settings(settings)
    desk = await HotlineDesk.load(settings, sessionmaker, suggester=suggester)
    assert await desk.refresh() is False  # nothing changed
    async with sessionmaker() as session:
        entry = await kb.create_entry(
            session,
            NEW_ENTRY,
            "编辑",
        )
        await kb.publish_entry(session, entry.id, "编辑")
    assert await desk.refresh() is True
    assert "社保卡" in desk.hotwords(5)
    answer = await desk.ask("我的社保卡丢了，怎么补办")
    assert answer.confident and answer.answer_id == entry.id

    instant_no = await desk.close_instant(intake("我的社保卡丢了，怎么补办"), answer)
    complaint = "投诉小区物业乱收费，物业费涨了一倍"
    filed_no = await desk.create_ticket(intake(complaint))
    await desk.record_miss("我的社保卡丢了，怎么补办", answer, "not_solved")

    async with sessionmaker() as session:
        instant = await tickets.get_ticket(session, instant_no)
        filed = await tickets.get_ticket(session, filed_no)
        misses = await kb.list_misses(session)
    assert (instant.state, instant.channel, instant.knowledge_id) == (
        "closed",
        "bot",
        str(entry.id),
    )
    assert instant.answer == "请携带身份证到社保服务大厅补办。" and instant.recording == "rec-1.wav"
    assert (filed.state, filed.kind, filed.channel) == ("accepted", "投诉", "bot")
    best = suggester.suggest(complaint, 1)[
        0
    ].label  # 城乡建设 (小区, 物业) with the shipped catalogue
    assert filed.category == best and best in load_categories().paths()
    assert [(m.reason, m.best_entry_id) for m in misses] == [("not_solved", entry.id)]


async def test_desk_refuses_a_ticket_without_a_valid_number(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    desk = await HotlineDesk.load(settings, sessionmaker)
    with pytest.raises(InvalidInput) as err:
        await desk.create_ticket(intake("路灯坏了", phone="anonymous"))
    assert err.value.code == "ticket.invalid_phone"
