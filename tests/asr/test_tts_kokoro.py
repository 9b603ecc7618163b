"""Kokoro-82M, the neural Mandarin voice: real model, real Whisper; espeak-ng when Kokoro cannot be loaded."""

from __future__ import annotations

import asyncio
import itertools
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from asr import audio
from asr.dialogue import trim_silence
from asr.evaluate import cer, syllable_edits, transcribe_pcm
from asr.model_install import KOKORO_MODEL, install_kokoro_model
from asr.tts import CachedTts, EspeakNg, build_tts, speak_sentences
from asr.tts_kokoro import KokoroTts, pinyin_words
from config import Settings
from config.settings import TtsSettings
from tests.asr.live_whisper import live_whisper

# Sentences of the bot's kind, with a hotline number and an amount as the knowledge base writes them.
SENTENCES = (
    "您好，这里是市民服务热线，请简要说出您要咨询的问题。",
    "身份证丢失的，应当到户籍所在地派出所申请补领。",
    "如有疑问，请拨打12345热线咨询。",
)


@pytest.fixture(scope="module")
def kokoro_settings(settings: Settings) -> TtsSettings:
    """The shipped TTS settings on Kokoro (the test session defaults the bot's tests to espeak-ng)."""
    install_kokoro_model(Path(settings.tts.kokoro.model_dir))  # fast when `make models` did it
    return settings.tts.model_copy(update={"engine": "kokoro"})


@pytest.fixture(scope="module")
def kokoro(kokoro_settings: TtsSettings) -> KokoroTts:
    return KokoroTts.from_settings(kokoro_settings.kokoro)


@pytest.fixture
def cached(kokoro: KokoroTts, tmp_path: Path) -> CachedTts:
    return CachedTts(kokoro, tmp_path / "tts")


@pytest.mark.serial  # synthesis and recognition take both cores for a few seconds
async def test_kokoro_speaks_mandarin_that_whisper_recognises(
    cached: CachedTts, settings: Settings
) -> None:
    with live_whisper(settings) as whisper:
        heard = []
        for text in SENTENCES:
            pcm = b"".join([trim_silence(p) async for p in speak_sentences(cached, text)])
            heard.append(await transcribe_pcm(whisper, pcm, audio.SAMPLE_RATE))
    said = "".join(SENTENCES).replace("12345", "一二三四五")
    hypothesis = "".join(heard).replace("12345", "一二三四五").replace("幺", "一")
    # Whisper base writes many a syllable with another character of the same sound (咨询 → 自行): the
    # syllables must be right, the characters mostly. espeak-ng: above 0.6 on both (bench/results/tts.md).
    wrong, syllables = syllable_edits(said, hypothesis)
    assert wrong / syllables <= 0.15 and cer(said, hypothesis) <= 0.3, heard


def test_speech_is_8khz_telephone_audio_of_plausible_length(kokoro: KokoroTts) -> None:
    pcm = kokoro.synthesize(SENTENCES[0])
    seconds = audio.duration_s(trim_silence(pcm))
    assert 2.5 < seconds < 9.0, seconds  # 24 syllables at a speaking pace
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    assert np.sqrt(np.mean(samples**2)) > 300  # speech, not silence


def test_numbers_are_read_as_the_hotline_reads_them(kokoro: KokoroTts) -> None:
    """A telephone number digit by digit with 幺 (yāo), not 一万二千… as the G2P alone would read it."""
    phonemes = kokoro.phonemes("请拨打12345热线")
    assert phonemes.count("jau→") == 1 and "wa" not in phonemes, phonemes
    assert kokoro.phonemes("幺二三四五") in phonemes


def test_a_third_tone_before_another_is_said_as_a_rising_one(kokoro: KokoroTts) -> None:
    assert kokoro.phonemes("可以") == "kʰɤ↗i↓"  # kéyǐ, as it is said; not kěyǐ
    # also across two short words: wó yě hén hǎo
    assert list(itertools.chain(*pinyin_words("我也很好"))) == ["wo2", "ye3", "hen2", "hao3"]


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("2025年3月", "二零二五年三月"),  # a year digit by digit, the month as a number
        ("2021年10月1日", "二零二一年十月一日"),
        ("请拨打12345", "请拨打幺二三四五"),  # the hotline number digit by digit with 幺
        ("请致电13812345678", "请致电幺三八幺二三四五六七八"),
        ("上午9:30前", "上午九点三十分前"),
        ("比例为35.5%", "比例为百分之三十五点五"),
        ("费用1500元", "费用一千五百元"),
        ("2025-03-05", "二零二五年三月五日"),
        ("3-5个工作日", "三至五个工作日"),
    ],
)
def test_numbers_dates_times_and_phone_numbers_are_read_as_a_person_reads_them(
    kokoro: KokoroTts, written: str, spoken: str
) -> None:
    assert kokoro.phonemes(written) == kokoro.phonemes(spoken)


def test_latin_letters_are_spelt_as_callers_say_them(kokoro: KokoroTts) -> None:
    """ETC is 「E T C」; the letters are not read as the phoneme symbols that some of them also are (A = eɪ)."""
    assert (
        kokoro.phonemes("办理ETC业务")
        == f"{kokoro.phonemes('办理')} ˈi tˈi sˈi {kokoro.phonemes('业务')}"
    )
    assert "ˈA pˈi pˈi" in kokoro.phonemes("下载App")


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("一样", ["yi2", "yang4"]),  # 一 before a fourth tone: yí
        # a one-syllable word before a third tone: yí
        ("以井号键结束", ["yi2", "jing3", "hao4", "jian4", "jie2", "shu4"]),
        ("看一看", ["kan4", "yi5", "kan4"]),
        ("好不好", ["hao3", "bu5", "hao3"]),
        # a digit 一 keeps its first tone (it was yì)
        ("二零二一年", ["er4", "ling2", "er4", "yi1", "nian2"]),
        ("一九九八年", ["yi1", "jiu3", "jiu3", "ba1", "nian2"]),
        ("以当地规定为准", ["yi3", "dang1", "di4", "gui1", "ding4", "wei2", "zhun3"]),  # wéizhǔn
        ("慢慢地走", ["man4", "man4", "de5", "zou3"]),  # the particle 地 is de; 当地 stays dì
    ],
)
def test_tones_change_as_in_speech(text: str, said: list[str]) -> None:
    assert list(itertools.chain(*pinyin_words(text))) == said


def test_a_sentence_comes_from_the_cache_the_second_time(
    cached: CachedTts, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = cached.synthesize("好的，请稍等。")

    def no_synthesis(_text: str) -> bytes:
        raise AssertionError("Kokoro ran again for a cached sentence")

    monkeypatch.setattr(cached.engine, "synthesize", no_synthesis)
    assert cached.synthesize("好的，请稍等。") == first
    assert cached.syntheses == 1
    assert cached.path_for("好的，请稍等。") != CachedTts(EspeakNg(), cached.cache_dir).path_for(
        "好的，请稍等。"
    )


@pytest.mark.serial  # three syntheses at once
async def test_calls_synthesise_at_the_same_time_on_one_loaded_engine(kokoro: KokoroTts) -> None:
    texts = ["请稍等。", "感谢您的来电。", "正在为您转接。"]
    results = await asyncio.gather(*(asyncio.to_thread(kokoro.synthesize, t) for t in texts))
    assert all(0.5 < audio.duration_s(trim_silence(pcm)) < 4.0 for pcm in results)


def test_build_tts_speaks_with_kokoro_when_it_is_installed(
    kokoro_settings: TtsSettings, tmp_path: Path
) -> None:
    tts = build_tts(kokoro_settings.model_copy(update={"cache_dir": str(tmp_path)}))
    assert isinstance(tts.engine, KokoroTts) and tts.engine.cache_id.startswith("kokoro")


@pytest.fixture
def broken_model_dir(kokoro_settings: TtsSettings, tmp_path: Path) -> Path:
    """A copy of the installed voice and vocabulary beside a model file that is not one."""
    installed = Path(kokoro_settings.kokoro.model_dir)
    broken = tmp_path / "kokoro"
    shutil.copytree(installed / "voices", broken / "voices")
    shutil.copyfile(installed / "vocab.json", broken / "vocab.json")
    (broken / KOKORO_MODEL).write_bytes(b"not an onnx model")
    return broken


@pytest.mark.parametrize("damage", ["missing", "unloadable"])
def test_without_a_usable_kokoro_the_bot_speaks_with_espeak_ng_and_says_why_once(
    kokoro_settings: TtsSettings,
    broken_model_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    model_dir = tmp_path / "never-installed" if damage == "missing" else broken_model_dir
    kokoro = kokoro_settings.kokoro.model_copy(update={"model_dir": str(model_dir)})
    with caplog.at_level(logging.WARNING, logger="asr.tts"):
        tts = build_tts(kokoro_settings.model_copy(update={"kokoro": kokoro}))
    assert isinstance(tts.engine, EspeakNg) and tts.engine.voice == kokoro_settings.voice
    [record] = [r for r in caplog.records if r.name == "asr.tts"]
    expected = "hotline asr install-model" if damage == "missing" else "无法加载"
    assert "espeak-ng" in record.getMessage() and expected in record.getMessage()
