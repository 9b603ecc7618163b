"""Small PCM helpers for the telephone side: WAV → 8 kHz signed-linear mono, 20 ms framing.

Telephone audio in this project is always "slin": signed 16-bit little-endian mono at 8 kHz, which is what
Asterisk's ``AudioSocket()`` application exchanges. One 20 ms frame is 160 samples = 320 bytes.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator
from math import gcd
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

SAMPLE_RATE = 8000
SAMPLE_BYTES = 2
FRAME_SECONDS = 0.02
FRAME_BYTES = int(SAMPLE_RATE * FRAME_SECONDS) * SAMPLE_BYTES  # 320


class AudioFormatError(ValueError):
    """A WAV file this module cannot turn into telephone audio."""

    code = "audio.bad_wav"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def duration_s(pcm: bytes) -> float:
    """Length in seconds of 8 kHz slin audio."""
    return len(pcm) / (SAMPLE_RATE * SAMPLE_BYTES)


def silence(seconds: float) -> bytes:
    """Digital silence of the given length, a whole number of samples."""
    return bytes(int(seconds * SAMPLE_RATE) * SAMPLE_BYTES)


def frames(pcm: bytes, frame_bytes: int = FRAME_BYTES) -> Iterator[bytes]:
    """Cut audio into frames of ``frame_bytes``; the last one is padded with silence."""
    for start in range(0, len(pcm), frame_bytes):
        chunk = pcm[start : start + frame_bytes]
        yield chunk if len(chunk) == frame_bytes else chunk + bytes(frame_bytes - len(chunk))


def _samples_from_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Float samples in [-1, 1] (mono mix) and the sample rate of a PCM WAV file's bytes."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            # readframes stops at the end of the data, so streamed WAVs whose header
            # claims a huge length (espeak-ng --stdout) read correctly too.
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise AudioFormatError(f"不是可读取的 PCM WAV 文件：{exc}") from exc
    if width == 1:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = (
            np.frombuffer(raw[: len(raw) - len(raw) % 3], dtype=np.uint8)
            .reshape(-1, 3)
            .astype(np.int32)
        )
        ints = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        samples = (np.where(ints >= 1 << 23, ints - (1 << 24), ints)).astype(np.float32) / float(
            1 << 23
        )
    elif width == 4:
        samples = np.frombuffer(raw, dtype="<i4").astype(np.float32) / float(1 << 31)
    else:
        raise AudioFormatError(f"不支持的采样位宽：{width * 8} 位")
    usable = len(samples) - len(samples) % channels
    mono = samples[:usable].reshape(-1, channels).mean(axis=1)
    return mono, rate


def to_slin8k(samples: np.ndarray, rate: int) -> bytes:
    """Float mono samples at ``rate`` → 8 kHz slin, with an anti-aliasing polyphase resampler."""
    if rate != SAMPLE_RATE:
        g = gcd(rate, SAMPLE_RATE)
        samples = resample_poly(samples, SAMPLE_RATE // g, rate // g)
    clipped = np.clip(np.rint(np.asarray(samples) * 32768.0), -32768, 32767)
    return clipped.astype("<i2").tobytes()


def wav_bytes_to_slin8k(data: bytes) -> bytes:
    """A PCM WAV file's bytes (any rate, width, channel count) → 8 kHz slin mono."""
    samples, rate = _samples_from_wav(data)
    return to_slin8k(samples, rate)


def read_wav_slin8k(path: str | Path) -> bytes:
    """Read a PCM WAV file as 8 kHz slin mono."""
    return wav_bytes_to_slin8k(Path(path).read_bytes())


def frame_dbfs(pcm: bytes) -> float:
    """The level of ``pcm`` (slin) in dB below full scale; -120 for nothing."""
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.float64)
    if samples.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(samples * samples)))
    return 20 * np.log10(max(rms, 1e-3) / 32768.0)


def trim_silence(pcm: bytes, keep_s: float = 0.06, floor_dbfs: float = -55.0) -> bytes:
    """Leading and trailing near-silence of a synthesised prompt cut to ``keep_s`` (less dead air)."""
    n = len(pcm) // FRAME_BYTES
    loud = [
        i for i in range(n) if frame_dbfs(pcm[i * FRAME_BYTES : (i + 1) * FRAME_BYTES]) > floor_dbfs
    ]
    if not loud:
        return pcm
    keep = round(keep_s / 0.02)
    start = max(0, loud[0] - keep) * FRAME_BYTES
    end = min(n, loud[-1] + 1 + keep) * FRAME_BYTES
    return pcm[start:end]
