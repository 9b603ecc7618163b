"""Text to speech: espeak-ng Mandarin at 8 kHz, the disk cache per sentence, speech clause by clause,
digit-by-digit ticket numbers."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import jieba
import numpy as np
import pytest

from asr import audio
from asr.audiosocket_client import AudioSocketClient
from asr.audiosocket_server import AudioSocketServer, AudioSocketSession
from asr.dialogue import Dialogue, DialogueConfig
from asr.prompts import load_prompts
from asr.tts import (
    CachedTts,
    EspeakNg,
    TtsError,
    build_tts,
    digits_for_speech,
    speak_sentences,
    speech_pieces,
    split_sentences,
)
from config import Settings
from tests.asr.fakes import FakeDesk, FakeLine, FakeRecogniser, any_port

GREETING = "您好，这里是12345市民服务热线，请问有什么可以帮您？"


@pytest.fixture(scope="module")
def espeak() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        message = "espeak-ng is not installed (Debian package espeak-ng, in the Makefile's DEBS)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def tts(settings: Settings, tmp_path: Path, espeak: str) -> CachedTts:
    return build_tts(settings.tts.model_copy(update={"cache_dir": str(tmp_path / "tts")}))


def test_mandarin_text_becomes_8khz_speech_of_plausible_length(tts: CachedTts) -> None:
    pcm = tts.synthesize(GREETING)
    assert len(pcm) % 2 == 0
    seconds = audio.duration_s(pcm)
    assert 3.0 < seconds < 15.0, seconds  # 26 syllables at a speaking pace
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    assert np.sqrt(np.mean(samples**2)) > 500  # speech, not silence
    assert np.count_nonzero(np.abs(samples) >= 32767) == 0  # headroom: no clipping


def test_the_configured_voice_speaks_mandarin_not_english_tone_numbers(
    settings: Settings, espeak: str
) -> None:
    phonemes = subprocess.run(
        [espeak, "-v", settings.tts.voice, "-x", "-q"],
        input="您好，工单编号幺二三".encode(),
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert "(en)" not in phonemes, (
        phonemes
    )  # the plain "cmn" voice of espeak-ng 1.51 says "ni two, hao three"


def test_second_request_comes_from_the_cache_without_a_subprocess(
    tts: CachedTts, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = tts.synthesize(GREETING)

    def no_subprocess(*args: object, **kwargs: object) -> None:
        raise AssertionError("espeak-ng ran again for a cached text")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    assert tts.synthesize(GREETING) == first
    assert tts.synthesize(f"  {GREETING}\n") == first  # surrounding whitespace is not a new text
    restarted = CachedTts(tts.engine, tts.cache_dir)  # another worker, or after a restart
    assert restarted.synthesize(GREETING) == first
    assert tts.syntheses == len(speech_pieces(GREETING)) == 3 and restarted.syntheses == 0


def test_a_sentence_said_again_in_another_text_comes_from_the_cache(tts: CachedTts) -> None:
    tts.synthesize("请问解决您的问题了吗？没有解决请按二。")
    assert tts.syntheses == 2  # one per sentence
    tts.synthesize("请问解决您的问题了吗？解决了请按一。")
    assert tts.syntheses == 3  # only the new sentence was synthesised


def test_texts_are_cut_at_clause_and_sentence_ends_and_short_clauses_stay_joined() -> None:
    greeting = (
        "您好，这里是幺二三四五智能助手，请简要说出您要咨询的问题。说“人工”或按零转人工服务。"
    )
    assert split_sentences(greeting) == [
        "您好，这里是幺二三四五智能助手，",
        "请简要说出您要咨询的问题。",
        "说“人工”或按零转人工服务。",
    ]
    assert split_sentences("好的，请稍等。") == ["好的，请稍等。"]
    assert split_sentences("很高兴为您解答，感谢您的来电，再见。") == [
        "很高兴为您解答，",
        "感谢您的来电，再见。",
    ]
    assert split_sentences("带上身份证、户口簿、照片到窗口办理") == [
        "带上身份证、户口簿、照片到窗口办理"
    ]
    assert split_sentences("  再见  ") == ["再见"]
    for text in (greeting, "已为您登记工单，工单号是：幺 二 三，零 零 四 二。谢谢！"):
        pieces = split_sentences(text)
        assert "".join(pieces).replace(" ", "") == text.replace(" ", "")
        assert all(split_sentences(piece) == [piece] for piece in pieces)
    with pytest.raises(TtsError) as err:
        split_sentences(" 。\n")
    assert err.value.code == "tts.empty_text"


@pytest.mark.parametrize(
    ("text", "first"),
    [
        # a short first clause
        ("您好，这里是幺二三四五智能助手，请简要说出您要咨询的问题。", "您好，"),
        # the subject, then its predicate: before a modal verb, a preposition
        ("医保电子凭证可以在国家医保服务平台手机应用里激活。", "医保电子凭证"),
        ("用人单位应当按时足额为职工缴纳社会保险费。", "用人单位"),
        ("职工本人和配偶在缴存城市没有自有住房的，可以提取公积金。", "职工本人和配偶"),
        # short enough as it is
        ("好的，请稍等。", "好的，请稍等。"),
        # no natural pause in the first eight characters: the clause stays whole
        ("十六到二十五周岁办的身份证有效期十年。", "十六到二十五周岁办的身份证有效期十年。"),
        # 需要 ends a modifier here (出国需要的护照), it does not open a predicate
        ("因私出国需要的普通护照，由本人向出入境管理机构申请。", "因私出国需要的普通护照，"),
    ],
)
def test_a_long_first_clause_starts_with_its_leading_phrase_cut_at_a_natural_pause(
    text: str, first: str
) -> None:
    pieces = speech_pieces(text)
    assert pieces[0] == first
    assert "".join(pieces) == text
    words = set(itertools.accumulate(jieba.lcut(text)))
    assert all(cut in words for cut in itertools.accumulate(pieces))  # never inside a word


def test_a_text_synthesised_ahead_is_cached_in_the_pieces_the_bot_then_speaks(
    tts: CachedTts,
) -> None:
    text = (
        "用人单位应当按时足额为职工缴纳社会保险费。单位不缴的，由社会保险费征收机构责令限期缴纳。"
    )
    tts.synthesize(text)  # the bot's warm-up
    warmed = tts.syntheses

    async def speak() -> list[bytes]:
        return [pcm async for pcm in speak_sentences(tts, text)]

    assert len(asyncio.run(speak())) == len(speech_pieces(text)) == warmed == 3
    assert tts.syntheses == warmed  # every piece came from the cache


async def test_the_bot_speaks_its_first_clause_before_the_next_is_synthesised(
    settings: Settings,
) -> None:
    text = "您好，这里是幺二三四五热线，请说出您的问题。"
    first, *rest = speech_pieces(text)
    played: list[bytes] = []
    first_played = asyncio.Event()

    class Line(FakeLine):
        async def play(
            self, pcm: bytes, *, on_first_frame: Callable[[], None] | None = None
        ) -> bool:
            played.append(pcm)
            first_played.set()
            return True

    class Tts:
        async def asynthesize_piece(self, piece: str) -> bytes:
            if piece != first:
                await first_played.wait()  # ready only once the caller has heard the first clause
            return piece.encode()

    dialogue = Dialogue(
        Line(1, hang_up=False, connected=True),  # type: ignore[arg-type]
        FakeRecogniser(),  # type: ignore[arg-type]
        tts=Tts(),  # type: ignore[arg-type]
        desk=FakeDesk(),  # type: ignore[arg-type]
        prompts=load_prompts(settings),
        cfg=DialogueConfig.from_settings(settings.asr.bot),
    )
    assert await asyncio.wait_for(dialogue.say(text, skip_if_answered=False), 10)
    assert played == [piece.encode() for piece in [first, *rest]]


async def test_the_next_clause_is_synthesised_while_the_first_plays() -> None:
    started: list[str] = []
    second_started, release = asyncio.Event(), asyncio.Event()

    class Engine:
        async def asynthesize_piece(self, text: str) -> bytes:
            started.append(text)
            if len(started) > 1:
                second_started.set()
                await release.wait()
            return text.encode()

    pieces = speak_sentences(Engine(), "您好，这里是幺二三四五热线，请说出您的问题。")
    assert await anext(pieces) == "您好，".encode()
    # While the caller hears the greeting, the next clause is under way without being asked for.
    await asyncio.wait_for(second_started.wait(), 5)
    assert started == ["您好，", "这里是幺二三四五热线，"]
    release.set()
    assert [p async for p in pieces] == [
        "这里是幺二三四五热线，".encode(),
        "请说出您的问题。".encode(),
    ]


async def test_concurrent_requests_for_one_text_synthesise_once(tts: CachedTts) -> None:
    text = "请稍候，正在为您查询。"
    results = await asyncio.gather(*(tts.asynthesize(text) for _ in range(6)))
    assert len(set(results)) == 1 and results[0]
    assert tts.syntheses == len(speech_pieces(text)) == 2  # each piece once


def test_cache_key_changes_with_voice_and_rate(tmp_path: Path) -> None:
    texts = [
        CachedTts(EspeakNg(v, speed_wpm=s), tmp_path).path_for("您好")
        for v, s in [("cmn-latn-pinyin", 150), ("cmn-latn-pinyin", 170), ("yue", 150)]
    ]
    assert len(set(texts)) == 3


def test_digits_are_read_one_by_one_with_yao_for_one() -> None:
    assert (
        digits_for_speech("12345-20261123-00042")
        == "幺 二 三 四 五，二 零 二 六 幺 幺 二 三，零 零 零 四 二"
    )
    assert digits_for_speech(" 7 89 ") == "七，八 九"
    assert digits_for_speech("A1") == "A 幺"


def test_a_ticket_number_is_spoken_digit_by_digit(tts: CachedTts) -> None:
    spoken = tts.synthesize(digits_for_speech("12345-20261123-00042"))
    cardinal = tts.synthesize("12345-20261123-00042")  # what espeak-ng does with the raw number
    assert audio.duration_s(spoken) > 4.0  # 18 digits, each its own syllable, with two pauses
    assert spoken != cardinal


def test_errors_carry_a_code_and_a_chinese_message(tmp_path: Path, espeak: str) -> None:
    with pytest.raises(TtsError) as err:
        CachedTts(EspeakNg(), tmp_path).synthesize("  ")
    assert err.value.code == "tts.empty_text"
    with pytest.raises(TtsError) as err:
        EspeakNg(executable=str(tmp_path / "no-such-espeak")).synthesize("您好")
    assert err.value.code == "tts.engine_missing" and "espeak-ng" in err.value.message
    with pytest.raises(TtsError) as err:
        EspeakNg(voice="no-such-voice").synthesize("您好")  # espeak-ng itself would speak English
    assert err.value.code == "tts.unknown_voice"


async def test_a_synthesised_prompt_reaches_the_caller_over_audiosocket(tts: CachedTts) -> None:
    prompt = await tts.asynthesize("您好")

    async def bot(session: AudioSocketSession) -> None:
        await session.play(prompt)
        await session.hangup()

    async with (
        AudioSocketServer(bot, any_port()) as server,
        AudioSocketClient("127.0.0.1", server.port) as caller,
    ):
        assert await caller.wait_ended(10) == "hangup"
    heard = caller.received_pcm
    assert heard[: len(prompt)] == prompt and set(heard[len(prompt) :]) <= {0}
