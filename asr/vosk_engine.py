"""Vosk engine: Kaldi's streaming recogniser, with partial results and its own endpointing.

One ``vosk.Model`` per process, one ``KaldiRecognizer`` per call. Audio is resampled to the model's rate
(``--sample-frequency`` in ``conf/mfcc.conf``, 16 kHz by default) before Kaldi sees it, so 8 kHz telephone
audio works with 16 kHz models. Each chunk is decoded on the engine's pool; Kaldi releases the GIL, so calls
decode in parallel. SpeechStart comes from the same Silero VAD as the Whisper engine (a first partial word is
often too late for barge-in), or from the first partial if that comes earlier.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import vosk

from asr.model_install import VOSK_MODELS, model_cache
from asr.recognizer import AsrError, Event, Final, Partial, PcmInput, SpeechStart, pool_size
from asr.vad import VAD_RATE, Endpointer, Started
from config import Settings
from config.settings import VadSettings

_CJK_GAP = re.compile(r"(?<=[\u3400-\u9fff])\s+(?=[\u3400-\u9fff])")


def model_rate(model_dir: Path) -> int:
    """The sample rate a Vosk model's features expect."""
    conf = model_dir / "conf" / "mfcc.conf"
    if conf.is_file():
        for line in conf.read_text().splitlines():
            if line.strip().startswith("--sample-frequency="):
                return int(float(line.split("=", 1)[1]))
    return 16000


def join_words(text: str) -> str:
    """Vosk separates Chinese words by spaces; Chinese text has none."""
    return _CJK_GAP.sub("", text.strip())


class VoskEngine:
    """One shared Vosk model and decoding pool; ``engine(sample_rate)`` makes a call's session."""

    name = "vosk"

    def __init__(self, model_dir: Path, *, workers: int, vad: VadSettings) -> None:
        if not (model_dir / "am").is_dir() and not (model_dir / "conf").is_dir():
            raise AsrError(
                "asr.model_missing",
                f"Vosk 模型不存在：{model_dir}，请运行 hotline asr fetch-model vosk-cn 或设置 asr.vosk.model_path",
            )
        vosk.SetLogLevel(-1)
        self.model_dir = model_dir
        self.rate = model_rate(model_dir)
        self.vad_params = vad
        self._model = vosk.Model(str(model_dir))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="asr-vosk")
        self._lock = threading.Lock()
        self._busy = 0
        self.peak_concurrency = (
            0  # most chunks decoded at the same moment (a metric for the pool's use)
        )

    @classmethod
    def from_settings(cls, settings: Settings, hotwords: Sequence[str] = ()) -> VoskEngine:
        """Vosk ignores ``hotwords``: its small models take a closed grammar, not a bias list."""
        configured = settings.asr.vosk.model_path
        path = (
            Path(configured) if configured else model_cache(settings) / VOSK_MODELS["vosk-cn"].name
        )
        return cls(path, workers=pool_size(settings), vad=settings.asr.vad)

    def __call__(self, sample_rate: int = 8000) -> VoskSession:
        return VoskSession(self, sample_rate)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def recognizer(self) -> vosk.KaldiRecognizer:
        rec = vosk.KaldiRecognizer(self._model, float(self.rate))
        rec.SetWords(True)
        return rec

    async def run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._counted, fn, args)

    def _counted(self, fn: Any, args: tuple[Any, ...]) -> Any:
        with self._lock:
            self._busy += 1
            self.peak_concurrency = max(self.peak_concurrency, self._busy)
        try:
            return fn(*args)
        finally:
            with self._lock:
                self._busy -= 1


class VoskSession:
    """One call on a KaldiRecognizer (see asr.recognizer for the calling rules)."""

    def __init__(self, engine: VoskEngine, sample_rate: int) -> None:
        self._engine = engine
        self._pcm = PcmInput(sample_rate, engine.rate)
        self.sample_rate = self._pcm.rate
        self._vad_pcm = PcmInput(engine.rate, VAD_RATE)
        self._vad = Endpointer(engine.vad_params)
        self._rec = engine.recognizer()
        self._speaking = False  # SpeechStart sent for the current utterance
        self._partial = ""
        self._fed = 0  # samples at the model rate given to Kaldi

    async def feed(self, pcm: bytes) -> list[Event]:
        return await self._decode(self._pcm.push(pcm), last=False)

    async def flush(self) -> list[Event]:
        return await self._decode(self._pcm.finish(), last=True)

    async def _decode(self, samples: np.ndarray, *, last: bool) -> list[Event]:
        events = self._speech_start(samples)
        if len(samples) == 0 and not last:
            return events
        self._fed += len(samples)
        final, result = await self._engine.run(self._accept, samples.astype("<i2").tobytes(), last)
        return events + (self._final(result) if final else self._partial_event(result))

    def _accept(self, data: bytes, last: bool) -> tuple[bool, dict[str, Any]]:
        """On a pool thread: feed Kaldi, then read the final result at an endpoint, else the partial one."""
        endpoint = self._rec.AcceptWaveform(data) if data else False
        if last:
            return True, json.loads(self._rec.FinalResult())
        return endpoint, json.loads(self._rec.Result() if endpoint else self._rec.PartialResult())

    def _speech_start(self, samples: np.ndarray) -> list[Event]:
        vad_events = self._vad.push(
            self._vad_pcm.push(samples.astype("<i2").tobytes()).astype(np.float32) / 32768.0
        )
        started = [e for e in vad_events if isinstance(e, Started)]
        if started and not self._speaking:
            self._speaking = True
            return [SpeechStart(round(started[0].sample / VAD_RATE, 3))]
        return []

    def _partial_event(self, result: dict[str, Any]) -> list[Event]:
        text = join_words(result.get("partial", ""))
        if not text or text == self._partial:
            return []
        self._partial = text
        return [*self._start_now(), Partial(text)]

    def _final(self, result: dict[str, Any]) -> list[Event]:
        self._partial = ""
        text = join_words(result.get("text", ""))
        starts = self._start_now() if text else []
        self._speaking = False
        if not text:
            return []
        words = result.get("result") or []
        now_s = self._fed / self._engine.rate
        start_s = float(words[0]["start"]) if words else now_s
        end_s = float(words[-1]["end"]) if words else now_s
        confidence = round(sum(float(w["conf"]) for w in words) / len(words), 3) if words else None
        return [*starts, Final(text, start_s, end_s, confidence)]

    def _start_now(self) -> list[Event]:
        """SpeechStart for an utterance that produced words before the VAD fired."""
        if self._speaking:
            return []
        self._speaking = True
        return [SpeechStart(round(self._fed / self._engine.rate, 3))]
