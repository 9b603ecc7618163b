"""Streaming voice activity detection (语音端点检测) with the Silero VAD model bundled in faster-whisper.

faster-whisper's own ``get_speech_timestamps`` needs the whole recording. Here the same ONNX model runs
incrementally: its recurrent state (``h``, ``c``) and the 64-sample context carry over from one 32 ms window to
the next, so feeding a call 20 ms at a time gives the same probabilities as one batch run. A window costs about
0.1 ms of CPU, so it runs inline on the caller's thread; only Whisper decoding goes to the thread pool.

Why Silero rather than an energy gate: telephone audio carries line noise, clicks and hold music at speech-like
levels, where an energy threshold either misses quiet callers or fires on noise; Silero rejects white noise and
silence outright, which keeps Whisper from hallucinating text on them.

:class:`Endpointer` turns the probabilities into utterances: :class:`Started` as soon as speech has lasted
``start_ms`` (barge-in, 打断), :class:`Ended` with the padded audio once ``min_silence_ms`` of silence follows,
or :class:`Dropped` when the burst was too short to be speech. With ``speculative_ms`` set (shorter than
``min_silence_ms``), a shorter pause first gives :class:`Paused` with the audio the utterance would have if it
ended there, so its decoding can start early; :class:`Resumed` follows if the caller speaks on. The
:class:`Ended` of the same pause has the same ``start`` and ``speech_end`` (its audio may hold more of the trailing
silence when ``speculative_ms`` < ``pad_ms``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from faster_whisper.vad import get_vad_model

from config.settings import VadSettings

VAD_RATE = 16000
WINDOW = 512  # samples per Silero window at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous window the model sees


class SileroStream:
    """Speech probability per 32 ms window of a 16 kHz float stream, computed as audio arrives."""

    def __init__(self) -> None:
        self._session = get_vad_model().session
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Probabilities of the windows completed by ``samples`` (possibly none)."""
        buf = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        n = len(buf) // WINDOW
        self._pending = buf[n * WINDOW :]
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        windows = buf[: n * WINDOW].reshape(n, WINDOW)
        contexts = np.vstack([self._context[None, :], windows[:-1, -CONTEXT:]])
        out, self._h, self._c = self._session.run(
            None, {"input": np.concatenate([contexts, windows], axis=1), "h": self._h, "c": self._c}
        )
        self._context = windows[-1, -CONTEXT:].copy()
        return np.asarray(out, dtype=np.float32).reshape(-1)


@dataclass(frozen=True)
class Started:
    sample: int  # first speech sample, 16 kHz stream position


@dataclass(frozen=True)
class Ended:
    start: int  # padded bounds, 16 kHz stream positions
    end: int
    audio: np.ndarray  # float32 16 kHz samples start:end
    speech_end: int  # where the speech stopped (end without the trailing pad)


@dataclass(frozen=True)
class Paused:
    """A short pause inside an utterance: what :class:`Ended` would carry if the pause lasts (投机解码)."""

    start: int
    end: int
    audio: np.ndarray
    speech_end: int


@dataclass(frozen=True)
class Resumed:
    """Speech again after :class:`Paused`: that guess is stale."""


@dataclass(frozen=True)
class Dropped:
    """A burst that set off :class:`Started` but was too short to be speech."""


VadEvent = Started | Ended | Dropped | Paused | Resumed


class Endpointer:
    """Cuts a 16 kHz float stream into utterances (句子) with :class:`SileroStream`."""

    def __init__(self, params: VadSettings) -> None:
        self.params = params
        self._silero = SileroStream()
        self._neg = max(params.threshold - 0.15, 0.01)
        ms = VAD_RATE // 1000
        self._start_windows = max(1, -(-params.start_ms * ms // WINDOW))
        self._silence_windows = max(1, -(-params.min_silence_ms * ms // WINDOW))
        early = -(-params.speculative_ms * ms // WINDOW)
        self._paused_windows = early if 0 < early < self._silence_windows else 0
        self._pad = params.pad_ms * ms
        self._min_speech = params.min_speech_ms * ms
        self._max_utterance = int(params.max_utterance_s * VAD_RATE)
        self._audio = np.zeros(
            0, dtype=np.float32
        )  # kept audio; _offset is the stream position of _audio[0]
        self._offset = 0
        self._windows = 0  # windows scored so far
        self._run = 0  # consecutive speech windows while idle
        self._start: int | None = None  # stream position of the current utterance's speech start
        self._silence = 0  # trailing silent windows inside an utterance
        self._paused = False  # Paused given for the current pause

    @property
    def in_speech(self) -> bool:
        return self._start is not None

    def push(self, samples: np.ndarray) -> list[VadEvent]:
        self._audio = np.concatenate([self._audio, samples.astype(np.float32, copy=False)])
        events: list[VadEvent] = []
        for prob in self._silero.push(samples):
            pos = self._windows * WINDOW
            self._windows += 1
            events.extend(self._step(float(prob), pos))
        if self._start is None:
            self._trim((self._windows - self._run) * WINDOW - self._pad)
        return events

    def finish(self) -> list[VadEvent]:
        """End of input: close an open utterance at the last sample."""
        if self._start is None:
            return []
        return [self._close(self._offset + len(self._audio), pad_end=False)]

    def _step(self, prob: float, pos: int) -> list[VadEvent]:
        if self._start is None:
            self._run = self._run + 1 if prob >= self.params.threshold else 0
            if self._run < self._start_windows:
                return []
            self._start = pos - (self._run - 1) * WINDOW
            self._silence = 0
            return [Started(self._start)]
        if prob >= self.params.threshold:
            self._silence = 0
            if self._paused:
                self._paused = False
                return [Resumed()]
        elif prob < self._neg or self._silence:
            self._silence += 1
        end = pos + WINDOW
        if self._silence >= self._silence_windows:
            return [self._close(end - self._silence * WINDOW, pad_end=True)]
        speech_end = end - self._silence * WINDOW
        long_enough = speech_end - self._start >= self._min_speech
        if self._paused_windows and self._silence == self._paused_windows and long_enough:
            self._paused = True
            lo, hi = self._bounds(speech_end, pad_end=True)
            return [
                Paused(
                    lo, hi, self._audio[lo - self._offset : hi - self._offset].copy(), speech_end
                )
            ]
        if end - self._start >= self._max_utterance:
            # Too long for one Whisper window: cut here and carry on as a new utterance.
            cut = self._close(end, pad_end=False)
            self._start, self._silence = end, 0
            return [cut]
        return []

    def _close(self, speech_end: int, *, pad_end: bool) -> VadEvent:
        start = self._start
        assert start is not None
        lo, hi = self._bounds(speech_end, pad_end=pad_end)
        self._start, self._run, self._silence, self._paused = None, 0, 0, False
        if speech_end - start < self._min_speech:
            return Dropped()
        audio = self._audio[lo - self._offset : hi - self._offset].copy()
        self._trim(hi)
        return Ended(lo, hi, audio, speech_end)

    def _bounds(self, speech_end: int, *, pad_end: bool) -> tuple[int, int]:
        """Stream positions of the current utterance's padded audio if its speech ended at ``speech_end``."""
        assert self._start is not None
        lo = max(self._offset, self._start - self._pad)
        hi = min(self._offset + len(self._audio), speech_end + (self._pad if pad_end else 0))
        return lo, hi

    def _trim(self, keep_from: int) -> None:
        drop = keep_from - self._offset
        if drop > 0:
            self._audio = self._audio[drop:]
            self._offset += drop
