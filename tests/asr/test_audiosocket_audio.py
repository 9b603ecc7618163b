"""PCM helpers behind the AudioSocket client and TTS: WAV → 8 kHz slin, 20 ms framing."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np
import pytest

from asr import audio

UTTERANCE = "BAC009S0724W0121.wav"


def make_wav(frames: bytes, *, rate: int, width: int, channels: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(frames)
    return out.getvalue()


def loudness_per_frame(pcm: bytes) -> np.ndarray:
    x = np.frombuffer(pcm, dtype="<i2").astype(float)
    x = x[: len(x) // 160 * 160].reshape(-1, 160)
    return np.log10((x**2).mean(axis=1) + 1)


def test_16khz_speech_resamples_to_the_telephone_version(shared_dir: Path) -> None:
    speech = shared_dir / "speech"
    ours = audio.read_wav_slin8k(speech / "wav16k" / UTTERANCE)
    phone = audio.read_wav_slin8k(speech / "wav8k_telephone_sim" / UTTERANCE)
    assert abs(len(ours) - len(phone)) <= 2
    # Same words at the same instants (20 ms loudness contour); the telephone copy's band-pass filter and
    # µ-law change the waveform's phase, so samples are not compared one by one.
    a, b = loudness_per_frame(ours), loudness_per_frame(phone)
    n = min(len(a), len(b))
    assert np.corrcoef(a[:n], b[:n])[0, 1] > 0.9
    assert np.corrcoef(a[:n], np.roll(b[:n], 5))[0, 1] < 0.8  # 100 ms off would not match


def test_8khz_16bit_mono_passes_through_unchanged() -> None:
    pcm = np.arange(-800, 800, dtype="<i2").tobytes()
    assert audio.wav_bytes_to_slin8k(make_wav(pcm, rate=8000, width=2, channels=1)) == pcm


def test_stereo_8bit_is_mixed_to_mono_16bit() -> None:
    # left at +64, right at 0 (unsigned 8-bit, 128 = zero) → mono +32 → 16-bit 8192
    data = make_wav(bytes([192, 128]) * 80, rate=8000, width=1, channels=2)
    assert set(np.frombuffer(audio.wav_bytes_to_slin8k(data), dtype="<i2")) == {8192}


def test_24bit_at_48khz_is_converted() -> None:
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(48000) / 48000) * (1 << 23)).astype(np.int32)
    raw = b"".join(int(v).to_bytes(3, "little", signed=True) for v in tone)
    out = np.frombuffer(
        audio.wav_bytes_to_slin8k(make_wav(raw, rate=48000, width=3, channels=1)), dtype="<i2"
    )
    assert len(out) == 8000
    assert abs(int(out.max()) - 16384) < 200  # same loudness after resampling


def test_not_a_wav_is_a_clear_error() -> None:
    with pytest.raises(audio.AudioFormatError) as err:
        audio.wav_bytes_to_slin8k(b"ID3 this is an mp3")
    assert err.value.code == "audio.bad_wav"


def test_frames_are_20ms_and_the_last_is_padded_with_silence() -> None:
    chunks = list(audio.frames(b"\x01" * 330))
    assert [len(c) for c in chunks] == [320, 320]
    assert chunks[1] == b"\x01" * 10 + bytes(310)
    assert list(audio.frames(b"")) == []
    assert audio.duration_s(audio.silence(1.5)) == 1.5
