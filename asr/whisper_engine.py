"""Whisper engine: Silero VAD cuts the call into utterances, faster-whisper decodes each one on the decode threads.

Whisper is not a streaming model, so this engine gives no Partial events: it reports SpeechStart as soon as the
VAD has heard ``asr.vad.start_ms`` of speech, and one Final per utterance once the caller pauses. Output is converted
to Simplified Chinese with OpenCC (Whisper often writes traditional characters for Mandarin). Decoding is fitted
to the utterance's length and batched across calls (asr.whisper_decoder). With ``asr.vad.speculative_ms`` set, the
decode starts at a short pause and its text is kept if the pause becomes the end of the utterance (投机解码);
if the caller speaks on, it is cancelled (or, when already running, stopped after its encoder). Guesses are
made only while a decode thread is free: under load they would delay the calls whose caller has finished. A
pause that found every thread busy gets its guess as soon as one is free, if the caller is still silent then.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel

from asr.model_install import whisper_model_dir
from asr.recognizer import AsrError, Event, Final, PcmInput, SpeechStart, pool_size
from asr.vad import VAD_RATE, Dropped, Ended, Endpointer, Paused, Resumed, Started, VadEvent
from asr.whisper_decoder import DecodeOptions, DecodeQueue, Transcript, WhisperDecoder
from config import Settings
from config.settings import VadSettings

log = logging.getLogger(__name__)


class WhisperEngine:
    """One Whisper model and its decode threads per process; ``engine(sample_rate)`` makes a call's session."""

    name = "whisper"

    def __init__(
        self,
        model_dir: Path,
        *,
        workers: int,
        cpu_threads: int,
        compute_type: str,
        decode: DecodeOptions,
        vad: VadSettings,
        max_batch: int = 1,
    ) -> None:
        if not (model_dir / "model.bin").is_file():
            raise AsrError(
                "asr.model_missing",
                f"Whisper 模型不存在：{model_dir}，请先运行 hotline asr install-model",
            )
        logging.getLogger("faster_whisper").setLevel(
            logging.WARNING
        )  # it logs every utterance at INFO
        self.decode_options = decode
        self.vad_params = vad
        model = WhisperModel(
            str(model_dir),
            device="cpu",
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            num_workers=workers,
        )
        self._decoder = WhisperDecoder(model, decode)
        self._queue = DecodeQueue(self._decoder, workers=workers, max_batch=max_batch)

    @classmethod
    def from_settings(cls, settings: Settings, hotwords: Sequence[str] = ()) -> WhisperEngine:
        whisper = settings.asr.whisper
        workers = pool_size(settings)
        return cls(
            whisper_model_dir(settings),
            workers=workers,
            cpu_threads=whisper.cpu_threads or max(1, (os.cpu_count() or 1) // workers),
            compute_type=whisper.compute_type,
            decode=DecodeOptions.from_settings(whisper, hotwords),
            vad=settings.asr.vad,
            max_batch=whisper.max_batch,
        )

    def __call__(self, sample_rate: int = 8000) -> WhisperSession:
        return WhisperSession(self, sample_rate)

    def close(self) -> None:
        self._queue.close()

    def transcribe(self, audio: np.ndarray) -> Transcript:
        """Decode one utterance of 16 kHz float samples here and now (blocking; calls use :meth:`decode`)."""
        return self._decoder.decode([audio])[0]

    @property
    def idle(self) -> bool:
        """A decode thread is free and no utterance waits for one."""
        return self._queue.idle

    def decode(self, audio: np.ndarray, *, guess: bool = False) -> _Job:
        """Queue one utterance (or a speculative ``guess``) for the decode threads."""
        return _Job(self._queue, self._queue.submit(audio, guess=guess))


class _Job:
    """A queued decode: awaitable; cancelling drops it (see :meth:`DecodeQueue.drop`). A guess's result is None
    when its fitted decode was doubtful (guesses never pay for the full-window fallback)."""

    def __init__(self, queue: DecodeQueue, future: Future[Transcript | None]) -> None:
        self._queue = queue
        self._future = future
        self.future: asyncio.Future[Transcript | None] = asyncio.wrap_future(future)

    def promote(self) -> None:
        """The guess's pause became the end of the utterance: decode it before the other guesses."""
        self._queue.promote(self._future)

    def cancel(self) -> None:
        self._queue.drop(self._future)
        self.future.cancel()


@dataclass
class _Utterance:
    job: _Job
    start_s: float
    end_s: float
    speech_end: int = 0  # VAD stream position where the speech stopped
    audio: np.ndarray | None = (
        None  # the finished utterance, kept for a doubtful guess to be decoded again
    )


class WhisperSession:
    """One call: VAD inline, decoding of utterances on the engine's decode threads (see asr.recognizer)."""

    def __init__(self, engine: WhisperEngine, sample_rate: int) -> None:
        self._engine = engine
        self._pcm = PcmInput(sample_rate, VAD_RATE)
        self.sample_rate = self._pcm.rate
        self._vad = Endpointer(engine.vad_params)
        self._pending: deque[_Utterance] = deque()
        self._guess: _Utterance | None = None  # speculative decode started at a short pause
        self._paused: Paused | None = (
            None  # a short pause still waiting for a free decode thread to guess
        )

    async def feed(self, pcm: bytes) -> list[Event]:
        events = self._ready()
        events += self._start(self._vad.push(_to_float(self._pcm.push(pcm))))
        self._try_guess()
        return events

    async def flush(self) -> list[Event]:
        events = self._ready()
        events += self._start(self._vad.push(_to_float(self._pcm.finish())) + self._vad.finish())
        while self._pending:
            await asyncio.wait([u.job.future for u in self._pending])
            events += self._ready()
        return events

    def _start(self, vad_events: list[VadEvent]) -> list[Event]:
        out: list[Event] = []
        for ev in vad_events:
            if isinstance(ev, Started):
                out.append(SpeechStart(round(ev.sample / VAD_RATE, 3)))
            elif isinstance(ev, Paused):
                self._drop_guess()
                self._paused = ev
            elif isinstance(ev, Ended):
                self._paused = None
                self._pending.append(self._take_guess(ev))
            elif isinstance(ev, Resumed | Dropped):
                self._drop_guess()
        return out

    def _try_guess(self) -> None:
        """Start the speculative decode of the current pause once a decode thread is free."""
        ev = self._paused
        if ev is not None and self._engine.idle:
            self._paused = None
            self._guess = _Utterance(
                self._engine.decode(ev.audio, guess=True),
                ev.start / VAD_RATE,
                ev.end / VAD_RATE,
                ev.speech_end,
            )

    def _take_guess(self, ev: Ended) -> _Utterance:
        """The speculative decode if it heard the same speech (only less of the trailing pause), else a new one."""
        start_s, end_s = ev.start / VAD_RATE, ev.end / VAD_RATE
        guess, self._guess = self._guess, None
        if guess is not None and (guess.start_s, guess.speech_end) == (start_s, ev.speech_end):
            guess.end_s, guess.audio = end_s, ev.audio
            guess.job.promote()
            return guess
        if guess is not None:
            guess.job.cancel()
        return _Utterance(self._engine.decode(ev.audio), start_s, end_s)

    def _drop_guess(self) -> None:
        self._paused = None
        if self._guess is not None:
            self._guess.job.cancel()
            self._guess = None

    def _ready(self) -> list[Event]:
        out: list[Event] = []
        while self._pending and self._pending[0].job.future.done():
            u = self._pending.popleft()
            if u.job.future.cancelled():
                continue
            try:
                t = u.job.future.result()
            except Exception:
                log.exception(
                    "Whisper decoding failed; utterance %.2f–%.2f s dropped", u.start_s, u.end_s
                )
                continue
            if t is None:  # a doubtful guess: the utterance is decoded in full
                assert u.audio is not None
                u.job, u.audio = self._engine.decode(u.audio), None
                self._pending.appendleft(u)
                break
            if t.text:
                out.append(Final(t.text, round(u.start_s, 3), round(u.end_s, 3), t.confidence))
        return out


def _to_float(samples: np.ndarray) -> np.ndarray:
    return samples.astype(np.float32) / 32768.0
