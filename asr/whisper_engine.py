"""Whisper engine: Silero VAD cuts the call into utterances, faster-whisper decodes each one in the pool.

Whisper is not a streaming model, so this engine gives no Partial events: it reports SpeechStart as soon as the
VAD has heard ``vad_start_ms`` of speech, and one Final per utterance once the caller pauses. Output is converted
to Simplified Chinese with OpenCC (Whisper often writes traditional characters for Mandarin).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel
from opencc import OpenCC

from asr.model_install import whisper_model_dir
from asr.recognizer import AsrError, Event, Final, PcmInput, SpeechStart, pool_size
from asr.vad import VAD_RATE, Dropped, Ended, Endpointer, Started, VadEvent, VadParams
from config import Settings

log = logging.getLogger(__name__)
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass(frozen=True)
class DecodeOptions:
    """How each utterance is decoded (see ``[asr]`` in config/hotline.toml)."""

    beam_size: int = 5
    initial_prompt: str = ""
    hotwords: str = ""
    temperature_fallback: bool = False

    def kwargs(self) -> dict[str, object]:
        return {
            "language": "zh",
            "beam_size": self.beam_size,
            "temperature": list(FALLBACK_TEMPERATURES) if self.temperature_fallback else 0.0,
            "condition_on_previous_text": False,
            "initial_prompt": self.initial_prompt or None,
            "hotwords": self.hotwords or None,
            "without_timestamps": True,
            "vad_filter": False,
        }


@dataclass(frozen=True)
class Transcript:
    text: str
    confidence: float | None


class WhisperEngine:
    """One Whisper model and one decoding pool per process; ``engine(sample_rate)`` makes a call's session."""

    name = "whisper"

    def __init__(
        self,
        model_dir: Path,
        *,
        workers: int,
        cpu_threads: int,
        compute_type: str,
        decode: DecodeOptions,
        vad: VadParams,
    ) -> None:
        if not (model_dir / "model.bin").is_file():
            raise AsrError("asr.model_missing", f"Whisper 模型不存在：{model_dir}，请先运行 hotline asr install-model")
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # it logs every utterance at INFO
        self.decode_options = decode
        self.vad_params = vad
        self._model = WhisperModel(
            str(model_dir), device="cpu", compute_type=compute_type, cpu_threads=cpu_threads, num_workers=workers
        )
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="asr-whisper")
        self._t2s = OpenCC("t2s")

    @classmethod
    def from_settings(cls, settings: Settings, hotwords: Sequence[str] = ()) -> WhisperEngine:
        a = settings.asr
        decode = DecodeOptions(
            beam_size=a.beam_size,
            initial_prompt=a.initial_prompt,
            hotwords="、".join(dict.fromkeys(w.strip() for w in hotwords if w.strip())),
            temperature_fallback=a.temperature_fallback,
        )
        return cls(
            whisper_model_dir(settings),
            workers=pool_size(settings),
            cpu_threads=a.whisper_cpu_threads or os.cpu_count() or 1,
            compute_type=a.compute_type,
            decode=decode,
            vad=VadParams.from_settings(a),
        )

    def __call__(self, sample_rate: int = 8000) -> WhisperSession:
        return WhisperSession(self, sample_rate)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def transcribe(self, audio: np.ndarray) -> Transcript:
        """Decode one utterance of 16 kHz float samples (blocking: runs on a pool thread)."""
        segments, _info = self._model.transcribe(audio, **self.decode_options.kwargs())  # type: ignore[arg-type]
        segments = list(segments)
        text = self._t2s.convert("".join(s.text for s in segments).strip())
        if not segments or not any(ch.isalnum() for ch in text):
            return Transcript("", None)
        confidence = math.exp(sum(s.avg_logprob for s in segments) / len(segments))
        return Transcript(text, round(confidence, 3))

    async def decode(self, audio: np.ndarray) -> Transcript:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.transcribe, audio)


@dataclass
class _Utterance:
    future: asyncio.Future[Transcript]
    start_s: float
    end_s: float


class WhisperSession:
    """One call: VAD inline, decoding of finished utterances in the engine's pool (see asr.recognizer)."""

    def __init__(self, engine: WhisperEngine, sample_rate: int) -> None:
        self._engine = engine
        self._pcm = PcmInput(sample_rate, VAD_RATE)
        self.sample_rate = self._pcm.rate
        self._vad = Endpointer(engine.vad_params)
        self._pending: deque[_Utterance] = deque()

    async def feed(self, pcm: bytes) -> list[Event]:
        events = self._ready()
        events += self._start(self._vad.push(_to_float(self._pcm.push(pcm))))
        return events

    async def flush(self) -> list[Event]:
        events = self._ready()
        events += self._start(self._vad.push(_to_float(self._pcm.finish())) + self._vad.finish())
        if self._pending:
            await asyncio.wait([u.future for u in self._pending])
        return events + self._ready()

    def _start(self, vad_events: list[VadEvent]) -> list[Event]:
        out: list[Event] = []
        for ev in vad_events:
            if isinstance(ev, Started):
                out.append(SpeechStart(round(ev.sample / VAD_RATE, 3)))
            elif isinstance(ev, Ended):
                future = asyncio.ensure_future(self._engine.decode(ev.audio))
                self._pending.append(_Utterance(future, ev.start / VAD_RATE, ev.end / VAD_RATE))
            else:
                assert isinstance(ev, Dropped)
        return out

    def _ready(self) -> list[Event]:
        out: list[Event] = []
        while self._pending and self._pending[0].future.done():
            u = self._pending.popleft()
            try:
                t = u.future.result()
            except Exception:
                log.exception("Whisper decoding failed; utterance %.2f–%.2f s dropped", u.start_s, u.end_s)
                continue
            if t.text:
                out.append(Final(t.text, round(u.start_s, 3), round(u.end_s, 3), t.confidence))
        return out


def _to_float(samples: np.ndarray) -> np.ndarray:
    return samples.astype(np.float32) / 32768.0
