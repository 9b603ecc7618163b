"""Accuracy and speed of a recogniser on recorded speech: character error rate (字错误率, CER) and real-time factor.

Each WAV goes through the streaming interface exactly as a call does: 20 ms frames at the file's own rate
(8 kHz telephone audio stays 8 kHz), then ``flush``; the Finals joined are the hypothesis.
"""

from __future__ import annotations

import csv
import time
import unicodedata
import wave
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from faster_whisper import decode_audio
from opencc import OpenCC
from pypinyin import lazy_pinyin
from rapidfuzz.distance import Levenshtein

from asr.recognizer import AsrError, Final, RecognizerFactory

FRAME_S = 0.02
NATIVE_RATES = (8000, 16000)


@lru_cache(maxsize=1)
def _t2s() -> OpenCC:
    return OpenCC("t2s")


def normalize(text: str) -> str:
    """Simplified characters without punctuation, symbols or spaces; Latin letters upper-cased, widths folded."""
    text = unicodedata.normalize("NFKC", _t2s().convert(text)).upper()
    return "".join(ch for ch in text if unicodedata.category(ch)[0] in "LN")


def edits(reference: str, hypothesis: str) -> tuple[int, int]:
    """Character edits (substitutions, insertions, deletions) and reference length, after :func:`normalize`."""
    ref = normalize(reference)
    return Levenshtein.distance(ref, normalize(hypothesis)), len(ref)


def cer(reference: str, hypothesis: str) -> float:
    """Edits per reference character."""
    n_edits, n_ref = edits(reference, hypothesis)
    return n_edits / max(n_ref, 1)


def syllable_edits(reference: str, hypothesis: str) -> tuple[int, int]:
    """Edits between the toneless pinyin syllables of both texts (a homophone written with other characters,
    公积金 → 攻击金, is no error here), and the reference's syllable count."""
    ref, hyp = (lazy_pinyin(normalize(text)) for text in (reference, hypothesis))
    return Levenshtein.distance(ref, hyp), len(ref)


def read_wav(path: Path) -> tuple[bytes, int]:
    """Signed-linear 16-bit mono PCM and its rate: 8/16 kHz mono 16-bit WAVs as they are, others at 16 kHz."""
    if not path.is_file():
        raise AsrError("asr.missing_wav", f"音频文件不存在：{path}")
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() == 2 and w.getnchannels() == 1 and w.getframerate() in NATIVE_RATES:
                return w.readframes(w.getnframes()), w.getframerate()
    except (wave.Error, EOFError):
        pass  # not plain PCM: let FFmpeg (PyAV) decode it
    try:
        samples = decode_audio(str(path), sampling_rate=16000)
    except Exception as exc:  # PyAV raises many error types for unreadable input
        raise AsrError("asr.bad_audio", f"无法读取音频文件 {path}：{exc}") from exc
    pcm = np.clip(np.rint(samples * 32768.0), -32768, 32767).astype("<i2").tobytes()
    return pcm, 16000


async def transcribe_pcm(factory: RecognizerFactory, pcm: bytes, sample_rate: int) -> str:
    """Stream ``pcm`` in 20 ms frames through a new session; the Finals' texts joined."""
    session = factory(sample_rate)
    step = int(sample_rate * FRAME_S) * 2
    events = []
    for i in range(0, len(pcm), step):
        events += await session.feed(pcm[i : i + step])
    events += await session.flush()
    return "".join(e.text for e in events if isinstance(e, Final))


@dataclass
class Utterance:
    utt_id: str
    reference: str
    hypothesis: str
    edits: int
    ref_chars: int
    audio_s: float
    seconds: float

    @property
    def cer(self) -> float:
        return self.edits / max(self.ref_chars, 1)


@dataclass
class EvalReport:
    cer: float  # corpus level: all edits / all reference characters
    rtf: float  # processing time / audio duration
    n: int
    utterances: list[Utterance] = field(default_factory=list)

    def summary(self) -> dict[str, float | int]:
        return {"cer": round(self.cer, 4), "rtf": round(self.rtf, 4), "n": self.n}


def load_references(tsv: Path) -> list[tuple[str, str]]:
    """``(utt_id, text_norm)`` rows of a transcripts TSV."""
    with tsv.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if rows and not {"utt_id", "text_norm"} <= rows[0].keys():
        raise AsrError("asr.bad_tsv", f"{tsv} 缺少 utt_id 或 text_norm 列")
    return [(r["utt_id"], r["text_norm"]) for r in rows]


async def evaluate(
    factory: RecognizerFactory, wav_dir: Path, tsv: Path, *, only: set[str] | None = None
) -> EvalReport:
    """Transcribe every ``wav_dir/<utt_id>.wav`` listed in ``tsv`` (or only the ids in ``only``) and score it."""
    refs = [(u, t) for u, t in load_references(tsv) if only is None or u in only]
    missing = [u for u, _ in refs if not (wav_dir / f"{u}.wav").is_file()]
    if missing:
        raise AsrError("asr.missing_wav", f"{wav_dir} 中缺少音频：{', '.join(missing[:5])}")
    results = []
    for utt_id, reference in refs:
        pcm, rate = read_wav(wav_dir / f"{utt_id}.wav")
        t0 = time.perf_counter()
        hyp = await transcribe_pcm(factory, pcm, rate)
        seconds = time.perf_counter() - t0
        results.append(
            Utterance(utt_id, reference, hyp, *edits(reference, hyp), len(pcm) / 2 / rate, seconds)
        )
    chars = sum(u.ref_chars for u in results)
    audio = sum(u.audio_s for u in results)
    return EvalReport(
        cer=sum(u.edits for u in results) / chars if chars else 0.0,
        rtf=sum(u.seconds for u in results) / audio if audio else 0.0,
        n=len(results),
        utterances=results,
    )
