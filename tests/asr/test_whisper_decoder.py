"""Fitted-window, batched and speculative Whisper decoding on real telephone-band Mandarin."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from ctranslate2.models import WhisperGenerationResult
from rapidfuzz import fuzz

from asr.evaluate import cer, load_references, read_wav
from asr.model_install import install_whisper_model, whisper_model_dir
from asr.recognizer import Final, PcmInput
from asr.vad import VAD_RATE, WINDOW, SileroStream
from asr.whisper_decoder import Transcript, Wanted, WhisperDecoder
from asr.whisper_engine import WhisperEngine
from config import Settings
from config.settings import replace_settings

pytestmark = pytest.mark.serial  # compares decoding times: not beside other tests

UTTERANCES = ("BAC009S0764W0121", "common_voice_zh-CN_18536155", "magicdata_cs_000018")
FRAME = 320  # 20 ms at 8 kHz


class CountingDecoder(WhisperDecoder):
    """The real decoder, recording every batch (its size and kind), every text generated and every full-window
    decode; ``hold`` and ``encoded``/``resume`` let a test act while a batch waits to start or sits between its
    encoder and its text generation."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.batches: list[int] = []
        self.kinds: list[str] = []  # "guess" or "finished", per batch
        self.generated = 0  # utterances text was generated for
        self.full_windows = 0
        self.busy = threading.Event()  # set when a batch starts
        self.hold = threading.Event()  # a batch starts only once this is set
        self.hold.set()
        self.encoded = threading.Event()  # set when a batch of guesses is encoded
        self.resume = threading.Event()  # its text is generated only once this is set
        self.resume.set()
        self.order: list[int] = []  # id() of each audio, in the order decoded

    def fitted(
        self, audios: list[np.ndarray], wanted: Wanted | None = None
    ) -> list[Transcript | None]:
        self.batches.append(len(audios))
        self.kinds.append("finished" if wanted is None else "guess")
        self.order.extend(id(a) for a in audios)
        self.busy.set()
        self.hold.wait(30)
        return super().fitted(
            audios, None if wanted is None else partial(self._paused_before, wanted)
        )

    def _paused_before(self, wanted: Wanted) -> Sequence[bool]:
        self.encoded.set()
        self.resume.wait(30)
        return wanted()

    def _read(self, result: WhisperGenerationResult, budget: int) -> Transcript | None:
        self.generated += 1
        return super()._read(result, budget)

    def full_window(self, audio: np.ndarray) -> Transcript:
        self.full_windows += 1
        return super().full_window(audio)


def live(settings: Settings, **whisper: object) -> Settings:
    """One recognition thread, greedy decoding, a 400 ms end of utterance and 200 ms guesses; ``whisper``:
    more ``[asr.whisper]`` keys."""
    return replace_settings(
        settings,
        {
            "asr": {
                "threads": 1,
                "whisper": {"beam_size": 1, **whisper},
                "vad": {"min_silence_ms": 400, "speculative_ms": 200},
            }
        },
    )


def counting(engine: WhisperEngine) -> CountingDecoder:
    """Swap the engine's decoder for a counting one over the same model and options."""
    decoder = CountingDecoder(engine._decoder.model, engine._decoder.options)
    engine._decoder = engine._queue._decoder = decoder
    return decoder


@pytest.fixture(scope="module")
def engine(settings: Settings) -> Iterator[WhisperEngine]:
    install_whisper_model(whisper_model_dir(settings))
    eng = WhisperEngine.from_settings(live(settings, cpu_threads=2, max_batch=4))
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def speech(shared_dir: Path) -> dict[str, tuple[bytes, str]]:
    refs = dict(load_references(shared_dir / "speech" / "transcripts.tsv"))
    folder = shared_dir / "speech" / "wav8k_telephone_sim"
    return {u: (read_wav(folder / f"{u}.wav")[0], refs[u]) for u in UTTERANCES}


def samples16k(pcm: bytes) -> np.ndarray:
    inp = PcmInput(8000, VAD_RATE)
    return np.concatenate([inp.push(pcm), inp.finish()]).astype(np.float32) / 32768.0


def speech_only(pcm: bytes) -> bytes:
    """``pcm`` (8 kHz) cut to the windows Silero scores as speech: the pauses around it are the test's own."""
    speech = np.flatnonzero(SileroStream().push(samples16k(pcm)) >= 0.5)
    to_bytes = WINDOW * 8000 // VAD_RATE * 2
    return pcm[speech[0] * to_bytes : (speech[-1] + 1) * to_bytes]


def test_a_fitted_window_reads_as_well_as_the_full_window_and_faster(
    engine: WhisperEngine, speech: dict[str, tuple[bytes, str]]
) -> None:
    full = WhisperDecoder(engine._decoder.model, replace(engine.decode_options, window_pad_s=0))
    for utt in UTTERANCES:
        pcm, ref = speech[utt]
        audio = samples16k(pcm)
        t0 = time.perf_counter()
        fitted_text = engine.transcribe(audio).text
        fitted_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        full_text = full.decode([audio])[0].text
        full_s = time.perf_counter() - t0
        assert cer(ref, fitted_text) <= cer(ref, full_text) + 0.1, (utt, fitted_text, full_text)
        assert fitted_s < full_s, utt


def test_concurrent_utterances_are_decoded_in_one_batch_with_the_same_text(
    engine: WhisperEngine, speech: dict[str, tuple[bytes, str]]
) -> None:
    decoder = counting(engine)
    audios = [samples16k(speech[u][0]) for u in UTTERANCES]
    alone = [engine.transcribe(a).text for a in audios]
    together = decoder.decode(audios)
    assert decoder.batches[-1] == len(UTTERANCES)
    for utt, one, batched in zip(UTTERANCES, alone, together, strict=True):
        assert cer(speech[utt][1], batched.text) <= cer(speech[utt][1], one) + 0.1, (
            utt,
            one,
            batched.text,
        )


def test_a_doubtful_fitted_decode_is_decided_by_the_full_window(
    engine: WhisperEngine, shared_dir: Path
) -> None:
    # Speech cut tight with only 0.3 s of silence after it: Whisper cannot end this sentence cleanly.
    pcm, _ = read_wav(
        shared_dir / "speech" / "wav8k_telephone_sim" / "common_voice_zh-CN_18567452.wav"
    )
    audio = samples16k(speech_only(pcm))
    options = engine.decode_options
    short = CountingDecoder(engine._decoder.model, replace(options, window_pad_s=0.3))
    full = WhisperDecoder(engine._decoder.model, replace(options, window_pad_s=0))
    assert short.fitted([audio]) == [None]
    assert short.decode([audio]) == full.decode([audio])
    assert short.full_windows == 1


async def stream(engine: WhisperEngine, pcm: bytes) -> list[Final]:
    session = engine(8000)
    events = []
    for i in range(0, len(pcm), FRAME):
        events += await session.feed(pcm[i : i + FRAME])
    return [e for e in events + await session.flush() if isinstance(e, Final)]


async def test_the_speculative_decode_is_kept_when_the_caller_stays_silent(
    engine: WhisperEngine, speech: dict[str, tuple[bytes, str]]
) -> None:
    decoder = counting(engine)
    pcm, ref = speech["BAC009S0764W0121"]
    finals = await stream(
        engine, pcm + bytes(8000 * 2)
    )  # then 1 s of silence: the pause becomes the end
    assert len(finals) == 1 and cer(ref, finals[0].text) < 0.3
    assert sum(decoder.batches) == 1  # decoded once, at the short pause, not again at the end


async def test_speech_after_the_short_pause_drops_the_guess(
    engine: WhisperEngine, speech: dict[str, tuple[bytes, str]]
) -> None:
    first = speech["BAC009S0764W0121"][0]
    second, ref2 = speech["magicdata_cs_000018"]
    pause = bytes(
        int(8000 * 0.3) * 2
    )  # longer than the speculative pause, shorter than the end pause
    finals = await stream(
        engine, speech_only(first) + pause + speech_only(second) + bytes(8000 * 2)
    )
    # One utterance, decoded with the speech after the pause: the guess made at the pause (first sentence only)
    # never became the Final. (Whisper base may drop one of two spliced speakers' sentences, so only the
    # second one, which the guess cannot contain, is asserted.)
    assert len(finals) == 1
    assert finals[0].end_s > (len(speech_only(first)) + len(pause)) / 2 / 8000
    assert fuzz.partial_ratio(ref2, finals[0].text) >= 80, finals[0].text


async def test_a_stale_guess_still_waiting_is_never_decoded(
    engine: WhisperEngine, speech: dict[str, tuple[bytes, str]]
) -> None:
    decoder = counting(engine)
    audio = samples16k(speech["BAC009S0764W0121"][0])
    first = engine.decode(audio)
    assert await asyncio.to_thread(decoder.busy.wait, 30)  # the decode thread is busy with it
    stale = engine.decode(audio, guess=True)
    stale.cancel()
    await asyncio.wait_for(first.future, timeout=30)
    # The queue has moved past the stale one.
    await asyncio.wait_for(engine.decode(audio[:VAD_RATE]).future, timeout=30)
    assert sum(decoder.batches) == 2


async def test_a_doubtful_guess_is_not_decided_by_the_full_window(
    settings: Settings, engine: WhisperEngine, shared_dir: Path
) -> None:
    # The same tight cut as above: the fitted window is doubtful at the pause and again at the end.
    utt = "common_voice_zh-CN_18567452"
    pcm, _ = read_wav(shared_dir / "speech" / "wav8k_telephone_sim" / f"{utt}.wav")
    ref = dict(load_references(shared_dir / "speech" / "transcripts.tsv"))[utt]
    tight = WhisperEngine.from_settings(live(settings, window_pad_s=0.3))
    try:
        decoder = CountingDecoder(tight._decoder.model, tight._decoder.options)
        tight._decoder = tight._queue._decoder = decoder
        finals = await stream(tight, speech_only(pcm) + bytes(8000 * 2))
    finally:
        tight.close()
    assert len(finals) == 1 and cer(ref, finals[0].text) < 0.5, finals
    # The guesses (one per pause) stopped at their fitted decode; only the finished utterance paid for the 30 s
    # window.
    assert (
        decoder.kinds[-1] == "finished"
        and set(decoder.kinds[:-1]) == {"guess"}
        and decoder.full_windows == 1
    )


async def test_a_finished_utterance_is_decoded_before_waiting_guesses(
    engine: WhisperEngine, speech: dict[str, tuple[bytes, str]]
) -> None:
    decoder = counting(engine)
    audios = [samples16k(speech[u][0]) for u in UTTERANCES]
    blocker, guess, finished = audios[0], audios[1], audios[2]
    promoted_audio = guess[:VAD_RATE]
    decoder.hold.clear()
    first = engine.decode(blocker)
    assert await asyncio.to_thread(
        decoder.busy.wait, 30
    )  # the only decode thread is held on the first
    later_guess = engine.decode(guess, guess=True)
    promoted = engine.decode(promoted_audio, guess=True)
    done = engine.decode(finished)
    promoted.promote()  # its pause became the end of that caller's utterance
    assert not engine.idle
    decoder.hold.set()
    await asyncio.wait_for(
        asyncio.gather(first.future, later_guess.future, promoted.future, done.future), 60
    )
    # The finished utterances first, in one batch; the other caller's guess after them and alone.
    assert decoder.order[1:] == [id(finished), id(promoted_audio), id(guess)]
    assert decoder.batches == [1, 2, 1]


async def test_a_guess_the_caller_spoke_over_while_it_was_encoded_gets_no_text(
    engine: WhisperEngine, speech: dict[str, tuple[bytes, str]]
) -> None:
    decoder = counting(engine)
    audios = [samples16k(speech[u][0]) for u in UTTERANCES[:2]]
    decoder.hold.clear()
    blocker = engine.decode(audios[0])
    assert await asyncio.to_thread(decoder.busy.wait, 30)
    decoder.resume.clear()
    stale, kept = engine.decode(audios[0], guess=True), engine.decode(audios[1], guess=True)
    decoder.hold.set()
    await asyncio.wait_for(blocker.future, 30)
    assert await asyncio.to_thread(decoder.encoded.wait, 30)  # both guesses encoded in one batch
    stale.cancel()  # the first caller spoke on
    decoder.resume.set()
    transcript = await asyncio.wait_for(kept.future, 30)
    assert decoder.kinds == ["finished", "guess"] and decoder.batches == [1, 2]
    # Text for the blocker and the kept guess only; the kept guess reads as it would alone.
    assert decoder.generated == 2
    assert transcript is not None and cer(speech[UTTERANCES[1]][1], transcript.text) < 0.3, (
        transcript
    )
    assert stale.future.cancelled()


async def test_a_pause_that_found_every_thread_busy_is_guessed_once_one_is_free(
    engine: WhisperEngine, speech: dict[str, tuple[bytes, str]]
) -> None:
    decoder = counting(engine)
    pcm, ref = speech["BAC009S0764W0121"]
    decoder.hold.clear()
    blocker = engine.decode(
        samples16k(speech["magicdata_cs_000018"][0])
    )  # another caller's utterance
    assert await asyncio.to_thread(decoder.busy.wait, 30)
    session = engine(8000)
    events: list[object] = []
    tight = speech_only(pcm)
    # The call up to the end of its speech, then 320 ms of silence: past the 200 ms guess pause, short of the end.
    head = pcm[: pcm.find(tight) + len(tight)] + bytes(int(8000 * 0.32) * 2)
    for i in range(0, len(head), FRAME):
        events += await session.feed(head[i : i + FRAME])
    assert (
        session._paused is not None and engine._queue.waiting == 0
    )  # the pause found no free thread
    decoder.resume.clear()
    decoder.hold.set()
    await asyncio.wait_for(blocker.future, 30)
    events += await session.feed(bytes(FRAME))  # the caller is still silent: 20 ms more
    assert await asyncio.to_thread(
        decoder.encoded.wait, 30
    )  # the guess is under way before the pause ended
    decoder.resume.set()
    tail = bytes(8000 * 2)
    for i in range(0, len(tail), FRAME):
        events += await session.feed(tail[i : i + FRAME])
    finals = [e for e in events + await session.flush() if isinstance(e, Final)]
    assert len(finals) == 1 and cer(ref, finals[0].text) < 0.3, finals
    # The utterance was decoded once, as the guess started when the thread came free, before the pause ended.
    assert decoder.kinds == ["finished", "guess"] and decoder.batches == [1, 1]
