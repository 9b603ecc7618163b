"""Whisper decoding fitted to short utterances and batched across calls (解码).

faster-whisper pads every input to Whisper's 30 s window (3000 mel frames, ``pad_or_trim``) before the encoder,
so a 4 s question costs as much as 30 s of speech. CTranslate2's Whisper encoder accepts fewer frames and its
cost falls with them (measured: 3000 frames 0.62 s, 800 frames 0.06 s on 2 idle cores), so here an utterance is
encoded with only ``window_pad_s`` of silence after it. The model must see silence after the speech to end its
text: with under ~3 s it starts repeating itself. The silence is padded as Whisper was trained on it (that
utterance's log-mel floor, its maximum − 8), not as faster-whisper's zeros, which measured worse on short windows.

Utterances waiting at the same time are decoded as one batch (one encoder and one ``generate`` call). An output
that looks wrong — gzip compression ratio above 2.4 (Whisper's own test for a repetition loop) or the token limit
reached — and an uncertain one — no-speech probability above 0.6 or average log-probability below −1, the
thresholds faster-whisper uses to drop silence and to retry — is decoded again by faster-whisper on the full 30 s
window, which then decides as before (its silence test; temperature fallback when configured).
``window_pad_s = 0`` decodes everything on the full window (the behaviour before this module).
"""

from __future__ import annotations

import math
import threading
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial

import numpy as np
from ctranslate2 import StorageView
from ctranslate2.models import WhisperGenerationResult
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens
from opencc import OpenCC

from config.settings import WhisperSettings

FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
FULL_FRAMES = 3000  # Whisper's 30 s window in mel frames
FRAMES_PER_S = 100
MAX_COMPRESSION = 2.4  # above: a repetition loop (faster-whisper's compression_ratio_threshold)
NO_SPEECH_PROB, LOW_LOGPROB = (
    0.6,
    -1.0,
)  # either: perhaps no speech, or a poor guess (faster-whisper's thresholds)
TOKENS_PER_S, TOKENS_MIN = (
    15,
    16,
)  # token budget of a fitted decode; fast Mandarin is ~6 characters a second

Wanted = Callable[[], Sequence[bool]]  # which utterances of a batch are still wanted


@dataclass(frozen=True)
class DecodeOptions:
    """How each utterance is decoded: ``[asr.whisper]`` in config/hotline.toml, and the recogniser's hot-words."""

    beam_size: int
    initial_prompt: str
    temperature_fallback: bool
    window_pad_s: float  # silence after the speech in a fitted window; 0 = the full 30 s window
    hotwords: str = ""

    @classmethod
    def from_settings(cls, whisper: WhisperSettings, hotwords: Sequence[str] = ()) -> DecodeOptions:
        return cls(
            beam_size=whisper.beam_size,
            initial_prompt=whisper.initial_prompt,
            temperature_fallback=whisper.temperature_fallback,
            window_pad_s=whisper.window_pad_s,
            hotwords="、".join(dict.fromkeys(w.strip() for w in hotwords if w.strip())),
        )

    def kwargs(self) -> dict[str, object]:
        """faster-whisper ``transcribe`` arguments for the full-window decode."""
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


class WhisperDecoder:
    """Decodes batches of utterances (16 kHz float samples, ≤ 30 s each); blocking, for the decode threads."""

    def __init__(self, model: WhisperModel, options: DecodeOptions) -> None:
        self.model = model
        self.options = options
        self._t2s = OpenCC("t2s")
        tokenizer = Tokenizer(
            model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language="zh"
        )
        self._tokenizer = tokenizer
        previous = (
            tokenizer.encode(" " + options.initial_prompt.strip()) if options.initial_prompt else []
        )
        self._prompt = model.get_prompt(
            tokenizer, previous, without_timestamps=True, hotwords=options.hotwords or None
        )
        self._suppress = get_suppressed_tokens(tokenizer, [-1])

    def decode(self, audios: list[np.ndarray]) -> list[Transcript]:
        if self.options.window_pad_s <= 0:
            return [self.full_window(a) for a in audios]
        return [
            t if t is not None else self.full_window(a)
            for a, t in zip(audios, self.fitted(audios), strict=True)
        ]

    def guess(
        self, audios: list[np.ndarray], wanted: Wanted | None = None
    ) -> list[Transcript | None]:
        """A speculative decode: the fitted window only, None where it is doubtful or no longer ``wanted``
        (see :meth:`fitted`)."""
        if self.options.window_pad_s <= 0:
            return list(self.decode(audios))
        return self.fitted(audios, wanted)

    def full_window(self, audio: np.ndarray) -> Transcript:
        """faster-whisper's own decode: the 30 s window, its temperature fallback and silence test."""
        segments = list(self.model.transcribe(audio, **self.options.kwargs())[0])  # type: ignore[arg-type]
        if not segments:
            return Transcript("", None)
        confidence = math.exp(sum(s.avg_logprob for s in segments) / len(segments))
        return self._transcript("".join(s.text for s in segments), confidence)

    def fitted(
        self, audios: list[np.ndarray], wanted: Wanted | None = None
    ) -> list[Transcript | None]:
        """One batch on windows fitted to the longest utterance; None where the full window must decide.

        ``wanted``, asked once the batch is encoded (about a third of the work), names the utterances still worth
        generating text for: the others (a caller who spoke on after a guess's pause) get None at no further cost.
        """
        features = [self._features(a) for a in audios]
        frames = min(
            FULL_FRAMES,
            max(f.shape[-1] for f in features) + round(self.options.window_pad_s * FRAMES_PER_S),
        )
        batch = np.stack([_pad_with_floor(f, frames) for f in features])
        encoded = self.model.model.encode(StorageView.from_array(np.ascontiguousarray(batch)))
        keep = list(wanted()) if wanted is not None else [True] * len(audios)
        if not any(keep):
            return [None] * len(audios)
        if not all(keep):
            encoded = StorageView.from_array(
                np.ascontiguousarray(np.asarray(encoded)[np.flatnonzero(keep)])
            )
        longest = max(len(a) for a, k in zip(audios, keep, strict=True) if k)
        longest_s = longest / self.model.feature_extractor.sampling_rate
        budget = TOKENS_MIN + math.ceil(TOKENS_PER_S * longest_s)
        results = iter(
            self.model.model.generate(
                encoded,
                [self._prompt] * sum(keep),
                beam_size=self.options.beam_size,
                max_length=min(self.model.max_length, len(self._prompt) + budget),
                return_scores=True,
                return_no_speech_prob=True,
                suppress_blank=True,
                suppress_tokens=self._suppress,
            )
        )
        return [self._read(next(results), budget) if k else None for k in keep]

    def _read(self, result: WhisperGenerationResult, budget: int) -> Transcript | None:
        """A fitted decode's text, or None when it is doubtful."""
        tokens = result.sequences_ids[0]
        text = self._tokenizer.decode(tokens).strip()
        avg_logprob = (
            result.scores[0] * len(tokens) / (len(tokens) + 1)
        )  # as faster-whisper (length penalty 1)
        suspect = result.no_speech_prob > NO_SPEECH_PROB or avg_logprob < LOW_LOGPROB
        if suspect or len(tokens) >= budget or get_compression_ratio(text) > MAX_COMPRESSION:
            return None
        return self._transcript(text, math.exp(avg_logprob))

    def _features(self, audio: np.ndarray) -> np.ndarray:
        features = self.model.feature_extractor(audio)
        return features[
            :, : min(FULL_FRAMES, features.shape[-1] - 1)
        ]  # the last frame is STFT padding

    def _transcript(self, text: str, confidence: float) -> Transcript:
        text = self._t2s.convert(text.strip())
        if not any(ch.isalnum() for ch in text):
            return Transcript("", None)
        return Transcript(text, round(confidence, 3))


def _pad_with_floor(features: np.ndarray, frames: int) -> np.ndarray:
    """``features`` followed by silence up to ``frames``: the normalised log-mel floor (max − 8, as Whisper)."""
    floor = (float(features.max()) - 8.0 + 4.0) / 4.0
    return np.pad(
        features, ((0, 0), (0, frames - features.shape[-1])), constant_values=floor
    ).astype(np.float32)


_Queued = tuple[np.ndarray, Future[Transcript | None]]


class DecodeQueue:
    """Decode threads; each takes every waiting utterance (up to ``max_batch``) as one batch.

    Utterances the caller has finished go before speculative guesses and are never batched with them (a guess
    is promoted when its pause becomes the end). A guess dropped before a thread takes it is skipped; one dropped
    while its batch is being encoded gets no text generated (a stale guess costs little then).
    """

    def __init__(self, decoder: WhisperDecoder, *, workers: int, max_batch: int) -> None:
        self._decoder = decoder
        self._max_batch = max_batch
        self._finished: deque[_Queued] = deque()
        self._guesses: deque[_Queued] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._running = 0  # batches being decoded
        # Guesses no longer wanted, already being decoded (weak: forgotten with the job).
        self._dropped: weakref.WeakSet[Future[Transcript | None]] = weakref.WeakSet()
        self._threads = [
            threading.Thread(target=self._work, name=f"asr-whisper-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    @property
    def waiting(self) -> int:
        """Utterances queued and not yet taken by a decode thread."""
        return len(self._finished) + len(self._guesses)

    @property
    def idle(self) -> bool:
        """A decode thread is free and nothing waits for one."""
        return self._running < len(self._threads) and not self.waiting

    def submit(self, audio: np.ndarray, *, guess: bool = False) -> Future[Transcript | None]:
        """Queue an utterance; a ``guess`` is decoded by :meth:`WhisperDecoder.guess` (None when doubtful)."""
        future: Future[Transcript | None] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("decode queue closed")
            (self._guesses if guess else self._finished).append((audio, future))
            self._cond.notify()
        return future

    def promote(self, future: Future[Transcript | None]) -> None:
        """A queued guess became a finished utterance: it goes before the other guesses."""
        with self._cond:
            for i, job in enumerate(self._guesses):
                if job[1] is future:
                    del self._guesses[i]
                    self._finished.append(job)
                    return

    def drop(self, future: Future[Transcript | None]) -> None:
        """The caller spoke on after a guess's pause: skip it if it waits, stop it at the encoder if it runs."""
        with self._cond:
            if not future.cancel() and future.running():
                self._dropped.add(future)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for jobs in (self._finished, self._guesses):
                while jobs:
                    jobs.popleft()[1].cancel()
            self._cond.notify_all()
        for t in self._threads:
            t.join()  # a batch under way finishes first (CTranslate2 must not be torn down mid-call)

    def _take(self) -> tuple[list[_Queued], bool]:
        """The next batch, and whether it is of guesses."""
        with self._cond:
            while not self.waiting and not self._closed:
                self._cond.wait()
            # A batch costs its members about the sum of their decodes: a guess never rides with a finished one.
            guesses = not self._finished
            jobs = self._guesses if guesses else self._finished
            batch: list[_Queued] = []
            while jobs and len(batch) < self._max_batch:
                audio, future = jobs.popleft()
                if future.set_running_or_notify_cancel():
                    batch.append((audio, future))
            self._running += bool(batch)
            return batch, guesses

    def _wanted(self, batch: list[_Queued]) -> list[bool]:
        with self._cond:
            return [future not in self._dropped for _, future in batch]

    def _work(self) -> None:
        while not self._closed:
            batch, guesses = self._take()
            if not batch:
                continue
            audios = [audio for audio, _ in batch]
            try:
                if guesses:
                    results = self._decoder.guess(audios, partial(self._wanted, batch))
                else:
                    results = list(self._decoder.decode(audios))
            except (
                Exception
            ) as exc:  # reported to every waiting session, which logs and drops the utterance
                for _, future in batch:
                    future.set_exception(exc)
                continue
            finally:
                with self._cond:
                    self._running -= 1
            for (_, future), result in zip(batch, results, strict=True):
                future.set_result(result)
