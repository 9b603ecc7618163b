"""The streaming speech-recognition interface (语音识别) shared by the Whisper and Vosk engines.

One engine per process holds the model and a thread pool sized to the cores; one session per call::

    factory = make_recognizer_factory(settings, hotwords=kb_vocabulary)
    session = factory(sample_rate=8000)          # signed-linear 16-bit mono at that rate
    for frame in frames:                          # any byte count, odd ones too
        for event in await session.feed(frame):   # SpeechStart / Partial / Final, in order
            ...
    for event in await session.flush():           # end of input: the last Final(s)
        ...
    factory.close()                               # at shutdown

``feed`` never waits for a decode: speech detection runs inline (well under a millisecond per frame) and the
heavy decoding runs in the engine's pool; an event is returned by the first ``feed`` (or ``flush``) call after
it is ready. On a live call frames arrive every 20 ms, so a result is at most one frame late. Calls on one
session must not overlap (one reader per call); sessions of one engine run concurrently.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import av
import numpy as np

from config import HotlineError, Settings

MIN_RATE, MAX_RATE = 4000, 192000


@dataclass(frozen=True)
class SpeechStart:
    """The caller started speaking (for barge-in, 打断); ``at_s`` is the stream time of the speech onset."""

    at_s: float


@dataclass(frozen=True)
class Partial:
    """Text recognised so far in the current utterance; replaced by the next Partial or the Final."""

    text: str


@dataclass(frozen=True)
class Final:
    """A finished utterance (句子) in Simplified Chinese; times in seconds from the start of the session."""

    text: str
    start_s: float
    end_s: float
    confidence: float | None = None


Event = SpeechStart | Partial | Final


class AsrError(HotlineError):
    """A recogniser that cannot work as configured: stable ``code``, Chinese ``message``."""


class RecognizerSession(Protocol):
    """One call's recogniser; see the module docstring for the calling rules."""

    sample_rate: int

    async def feed(self, pcm: bytes) -> list[Event]: ...

    async def flush(self) -> list[Event]: ...


class RecognizerFactory(Protocol):
    """An engine: holds the model and the pool; makes a session per call."""

    name: str

    def __call__(self, sample_rate: int = 8000) -> RecognizerSession: ...

    def close(self) -> None: ...


def pool_size(settings: Settings) -> int:
    """Decoding threads: ``asr.threads``, or one per core."""
    return settings.asr.threads or os.cpu_count() or 1


def check_sample_rate(sample_rate: int) -> int:
    if not MIN_RATE <= sample_rate <= MAX_RATE:
        raise AsrError(
            "asr.bad_sample_rate",
            f"不支持的采样率 {sample_rate} Hz（应在 {MIN_RATE}–{MAX_RATE} Hz 之间）",
        )
    return sample_rate


class PcmInput:
    """Signed-linear 16-bit mono bytes at ``rate`` → int16 samples at ``target_rate``.

    Keeps a trailing half sample for the next chunk and resamples with libswresample (PyAV), whose filter state
    carries across chunks, so 20 ms frames resample as cleanly as one whole recording.
    """

    def __init__(self, rate: int, target_rate: int) -> None:
        self.rate = check_sample_rate(rate)
        self.target_rate = target_rate
        self._carry = b""
        self._resampler = (
            None
            if rate == target_rate
            else av.AudioResampler(format="s16", layout="mono", rate=target_rate)
        )

    def push(self, pcm: bytes) -> np.ndarray:
        data = self._carry + pcm
        usable = len(data) - len(data) % 2
        self._carry = data[usable:]
        samples = np.frombuffer(data[:usable], dtype="<i2")
        if self._resampler is None or len(samples) == 0:
            return samples.astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        return self._collect(self._resampler.resample(frame))

    def finish(self) -> np.ndarray:
        """The resampler's buffered tail (a half sample left over is dropped)."""
        self._carry = b""
        if self._resampler is None:
            return np.zeros(0, dtype=np.int16)
        return self._collect(self._resampler.resample(None))

    @staticmethod
    def _collect(frames: Sequence[av.AudioFrame]) -> np.ndarray:
        if not frames:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.int16)


def make_recognizer_factory(settings: Settings, hotwords: Sequence[str] = ()) -> RecognizerFactory:
    """The engine ``settings.asr.engine`` names, loaded once; ``hotwords`` bias it towards domain words."""
    if settings.asr.engine == "vosk":
        from asr.vosk_engine import VoskEngine

        return VoskEngine.from_settings(settings, hotwords)
    from asr.whisper_engine import WhisperEngine

    return WhisperEngine.from_settings(settings, hotwords)
