"""The engine-independent parts of the streaming interface: PCM input, the streaming VAD, the factory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from faster_whisper.vad import get_vad_model

from asr.evaluate import read_wav
from asr.recognizer import AsrError, PcmInput, make_recognizer_factory
from asr.vad import WINDOW, Dropped, Ended, Endpointer, Paused, Resumed, SileroStream, Started
from config import Settings
from config.settings import VadSettings, replace_settings

RATE16 = 16000


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2")


def dominant_freq(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.argmax(spectrum) * rate / len(samples))


def test_pcm_input_upsamples_8k_frames_like_one_recording() -> None:
    pcm = tone(1000, 1.0, 8000).tobytes()
    stream = PcmInput(8000, RATE16)
    out = np.concatenate(
        [stream.push(pcm[i : i + 320]) for i in range(0, len(pcm), 320)] + [stream.finish()]
    )
    assert abs(len(out) - 2 * len(pcm) // 2) <= 32
    assert dominant_freq(out, RATE16) == pytest.approx(1000, abs=5)


def test_pcm_input_keeps_half_samples_for_the_next_chunk() -> None:
    samples = tone(440, 0.1, RATE16)
    pcm = samples.tobytes()
    stream = PcmInput(RATE16, RATE16)
    pieces = [stream.push(pcm[i : i + 7]) for i in range(0, len(pcm), 7)]
    np.testing.assert_array_equal(np.concatenate(pieces), samples)


@pytest.mark.parametrize("rate", [0, -8000, 1_000_000])
def test_impossible_sample_rate_is_refused_with_a_code(rate: int) -> None:
    with pytest.raises(AsrError) as err:
        PcmInput(rate, RATE16)
    assert err.value.code == "asr.bad_sample_rate"


def test_silero_stream_matches_the_batch_model(shared_dir: Path) -> None:
    pcm, rate = read_wav(shared_dir / "speech" / "wav16k" / "BAC009S0724W0121.wav")
    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    audio = audio[: len(audio) // WINDOW * WINDOW]
    batch = np.asarray(get_vad_model()(audio.copy())).reshape(-1)  # the batch call edits its input
    stream = SileroStream()
    streamed = np.concatenate([stream.push(audio[i : i + 320]) for i in range(0, len(audio), 320)])
    assert rate == RATE16
    # the batch call zeroes the tail of its last window in place, so that one window differs
    np.testing.assert_allclose(streamed[:-1], batch[:-1], atol=1e-4)
    assert batch.max() > 0.9  # the utterance is speech


def test_endpointer_cuts_speech_and_ignores_silence(shared_dir: Path) -> None:
    pcm, _ = read_wav(shared_dir / "speech" / "wav16k" / "BAC009S0724W0121.wav")
    speech = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    gap = np.zeros(RATE16, dtype=np.float32)
    audio = np.concatenate([gap, speech, gap, speech, gap])
    ep = Endpointer(VadSettings())
    events = [
        e for i in range(0, len(audio), 320) for e in ep.push(audio[i : i + 320])
    ] + ep.finish()
    kinds = [type(e) for e in events if not isinstance(e, Dropped)]
    assert kinds == [Started, Ended, Started, Ended]
    first = events[1]
    assert isinstance(first, Ended)
    assert 0.7 * RATE16 < first.start < 1.6 * RATE16
    assert len(first.audio) == first.end - first.start


def speech_with_gaps(shared_dir: Path, *gaps_s: float) -> np.ndarray:
    pcm, _ = read_wav(shared_dir / "speech" / "wav16k" / "BAC009S0724W0121.wav")
    speech = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    scored = np.flatnonzero(SileroStream().push(speech) >= 0.5)
    speech = speech[scored[0] * WINDOW : (scored[-1] + 1) * WINDOW]  # the gaps are the test's own
    parts = [np.zeros(RATE16, dtype=np.float32)]
    for gap in gaps_s:
        parts += [speech, np.zeros(int(gap * RATE16), dtype=np.float32)]
    return np.concatenate(parts)


def endpoint(audio: np.ndarray, params: VadSettings) -> list[object]:
    ep = Endpointer(params)
    return [e for i in range(0, len(audio), 320) for e in ep.push(audio[i : i + 320])] + ep.finish()


def test_a_short_pause_gives_the_utterance_early_and_the_end_confirms_it(shared_dir: Path) -> None:
    events = endpoint(
        speech_with_gaps(shared_dir, 1.0), VadSettings(min_silence_ms=400, speculative_ms=200)
    )
    ended = [e for e in events if isinstance(e, Ended)]
    paused = [e for e in events if isinstance(e, Paused)]
    assert len(ended) == 1 and paused
    last = paused[-1]
    assert events.index(last) < events.index(ended[0])
    assert not [e for e in events[events.index(last) :] if isinstance(e, Resumed)]
    # the guess heard exactly the speech that was then ended: its decode can be kept
    assert (last.start, last.speech_end) == (ended[0].start, ended[0].speech_end)
    assert last.end <= ended[0].end and np.array_equal(
        last.audio, ended[0].audio[: len(last.audio)]
    )


def test_speech_after_a_short_pause_makes_the_guess_stale(shared_dir: Path) -> None:
    # a 0.3 s pause inside the utterance: longer than the speculative pause, shorter than the end pause
    events = endpoint(
        speech_with_gaps(shared_dir, 0.3, 1.0), VadSettings(min_silence_ms=500, speculative_ms=200)
    )
    kinds = [type(e) for e in events if not isinstance(e, Dropped)]
    assert kinds.count(Ended) == 1  # one utterance, not cut at the pause
    first_resume = kinds.index(Resumed)
    assert Paused in kinds[:first_resume] and kinds[-2:] == [Paused, Ended]
    ended = next(e for e in events if isinstance(e, Ended))
    assert (
        len(ended.audio) > 2 * len(speech_with_gaps(shared_dir)) - RATE16
    )  # both halves of the speech


def test_no_guesses_without_a_speculative_pause(shared_dir: Path) -> None:
    events = endpoint(speech_with_gaps(shared_dir, 0.3, 1.0), VadSettings(min_silence_ms=500))
    assert not [e for e in events if isinstance(e, Paused | Resumed)]


def test_endpointer_hears_nothing_in_silence_or_white_noise() -> None:
    rng = np.random.default_rng(7)
    audio = np.concatenate([np.zeros(RATE16 * 2), rng.normal(0, 0.1, RATE16 * 3)]).astype(
        np.float32
    )
    ep = Endpointer(VadSettings())
    events = [
        e for i in range(0, len(audio), 320) for e in ep.push(audio[i : i + 320])
    ] + ep.finish()
    assert not [e for e in events if isinstance(e, Ended)]


def test_factory_reports_a_missing_vosk_model(settings: Settings, tmp_path: Path) -> None:
    vosk = replace_settings(
        settings, {"asr": {"engine": "vosk", "vosk": {"model_path": str(tmp_path / "none")}}}
    )
    with pytest.raises(AsrError) as err:
        make_recognizer_factory(vosk)
    assert err.value.code == "asr.model_missing"


def test_factory_reports_a_missing_whisper_model(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(AsrError) as err:
        make_recognizer_factory(replace_settings(settings, {"asr": {"model_cache": str(tmp_path)}}))
    assert err.value.code == "asr.model_missing"
    assert "install-model" in err.value.message
