"""The bot's voice: intelligibility and speed of Kokoro-82M against espeak-ng, in the same run.

Texts: the bot's fixed prompts (config/bot_prompts.toml), a ticket read-back, and the spoken answers of the
first 50 entries of the sample knowledge base (config/knowledge_sample.jsonl, cut as an import cuts them).
Each kind is split in two halves by position: the even-numbered texts are the tuning half (looked at while
fixing the voice's front end), the odd-numbered ones are held out (only measured, before and after). Each
text is synthesised piece by piece as the bot speaks it (``asr.tts.speech_pieces``: a short leading phrase,
then clauses; every piece's silence trimmed as ``asr.dialogue.say`` does), at 8 kHz as the bot sends it, and
transcribed by the project's Whisper (beam 5, no hot-words). Intelligibility is the corpus CER against the
text; digits in Whisper's output are read as the text writes them (digit by digit where the text has those
digits, else as a quantity; 幺 is scored as 一); a homophone Whisper writes with other characters (公积金 →
攻击金) is a character error but not a syllable error: the toneless pinyin syllable error rate (SER) is given
beside the CER. Speed, with the engine on one thread: time to first audio of a text (the synthesis of its
first piece, uncached), p50/p95, absolute and as a ratio to espeak-ng's in the same run, and the CPU time it
used (on a busy machine the wall time includes waiting for a core); the same per piece; the stalls a caller
would hear between pieces (the next piece synthesised while one plays, as ``asr.tts.speak_sentences`` does);
the real-time factor. Results go to bench/results/tts.json and .md. Targets (issue #12): CER ≤ 10 %, first
audio per sentence ≤ 300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cn2an
import numpy as np

from asr.audio import duration_s
from asr.dialogue import trim_silence
from asr.evaluate import edits, syllable_edits, transcribe_pcm
from asr.prompts import load_prompts
from asr.recognizer import RecognizerFactory, make_recognizer_factory
from asr.tts import EspeakNg, SpeechSynthesizer, digits_for_speech, speech_pieces
from asr.tts_kokoro import KokoroTts
from config.settings import Settings, config_path, load_settings
from knowledge.io import parse_file

RESULTS = Path(__file__).with_name("results")
ANSWERS = 50
TICKET_NO = "12345-20261207-00042"
HALVES = ("tuning", "held_out")
_DIGITS = re.compile(r"\d+")


@dataclass(frozen=True)
class BenchText:
    kind: str  # prompts | answers
    half: str  # tuning | held_out
    text: str


def bench_texts(settings: Settings) -> list[BenchText]:
    """The texts spoken in the bench, each with its kind and half."""
    prompts = load_prompts(settings)
    sample = parse_file(
        config_path(settings.knowledge.sample), max_speech=settings.knowledge.max_speech_chars
    )
    kinds = {
        "prompts": [*prompts.fixed(), prompts.ticket(digits_for_speech(TICKET_NO))],
        "answers": [row.content.answer_speech for row in sample[:ANSWERS]],
    }
    return [
        BenchText(kind, HALVES[i % 2], text)
        for kind, texts in kinds.items()
        for i, text in enumerate(texts)
    ]


def as_written(hypothesis: str, reference: str) -> str:
    """Whisper's digits as the reference writes the number: digit by digit (幺 as 一) where the reference has
    those digits, else as a quantity."""
    plain = reference.replace("幺", "一").replace(" ", "")

    def spoken(m: re.Match[str]) -> str:
        one_by_one = "".join("零一二三四五六七八九"[int(d)] for d in m.group(0))
        return one_by_one if one_by_one in plain else str(cn2an.an2cn(m.group(0)))

    return _DIGITS.sub(spoken, hypothesis)


def _cpu_s() -> float:
    """CPU seconds of this thread and of finished child processes (espeak-ng)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.thread_time() + children.ru_utime + children.ru_stime


@dataclass
class Spoken:
    """One text as the bot plays it, and what each piece cost."""

    pcm: bytes
    wall_ms: list[float]
    cpu_ms: list[float]
    stall_ms: float  # silence between pieces while the next is still being synthesised


def synthesise(engine: SpeechSynthesizer, text: str) -> Spoken:
    """The text piece by piece as the bot plays it, with the synthesis time of each piece."""
    pcm, wall, cpu, seconds = [], [], [], []
    for piece in speech_pieces(text):
        t0, c0 = time.perf_counter(), _cpu_s()
        audio = trim_silence(engine.synthesize(piece))
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((_cpu_s() - c0) * 1000)
        pcm.append(audio)
        seconds.append(duration_s(audio))
    return Spoken(b"".join(pcm), wall, cpu, playback_stall_ms(wall, seconds))


def playback_stall_ms(synthesis_ms: list[float], played_s: list[float]) -> float:
    """Silence between pieces when each next piece starts synthesising as the one before is handed over
    (``speak_sentences``) and plays as soon as it is ready and the one before has ended."""
    handed = synthesis_ms[0]  # the first piece is handed over (and starts playing) when synthesised
    ends = handed + played_s[0] * 1000
    stall = 0.0
    for ms, seconds in zip(synthesis_ms[1:], played_s[1:], strict=True):
        ready = handed + ms  # synthesis started when the piece before was handed over
        stall += max(0.0, ready - ends)
        handed = max(ready, ends)
        ends = handed + seconds * 1000
    return stall


def _ms(values: list[float], q: float) -> int:
    return round(float(np.percentile(values, q)))


def _rate(edit_count: int, total: int) -> float:
    return round(edit_count / max(total, 1), 4)


async def measure(
    engine: SpeechSynthesizer, texts: list[BenchText], whisper: RecognizerFactory
) -> dict[str, Any]:
    engine.synthesize("您好。")  # warm-up: the first call loads lazily what the engine did not load
    piece_ms: list[float] = []
    piece_cpu_ms: list[float] = []
    first_ms: list[float] = []
    first_cpu_ms: list[float] = []
    stalls: list[float] = []
    synth_ms = audio_s = 0.0
    items: list[dict[str, Any]] = []
    for item in texts:
        spoken = synthesise(engine, item.text)
        piece_ms += spoken.wall_ms
        piece_cpu_ms += spoken.cpu_ms
        first_ms.append(spoken.wall_ms[0])
        first_cpu_ms.append(spoken.cpu_ms[0])
        stalls.append(spoken.stall_ms)
        synth_ms += sum(spoken.wall_ms)
        audio_s += duration_s(spoken.pcm)
        heard = await transcribe_pcm(whisper, spoken.pcm, 8000)
        reference = item.text.replace("幺", "一")
        hypothesis = as_written(heard, item.text).replace("幺", "一")
        e, n = edits(reference, hypothesis)
        se, ns = syllable_edits(reference, hypothesis)
        items.append(
            {"kind": item.kind, "half": item.half, "text": item.text, "heard": heard}
            | {"edits": e, "chars": n, "syllable_edits": se, "syllables": ns}
        )
    return {
        "engine": engine.cache_id,
        **error_rates(items),
        "pieces": len(piece_ms),
        "text_first_audio_ms_p50": _ms(first_ms, 50),
        "text_first_audio_ms_p95": _ms(first_ms, 95),
        "text_first_audio_cpu_ms_p50": _ms(first_cpu_ms, 50),
        "text_first_audio_cpu_ms_p95": _ms(first_cpu_ms, 95),
        "piece_first_audio_ms_p50": _ms(piece_ms, 50),
        "piece_first_audio_ms_p95": _ms(piece_ms, 95),
        "piece_cpu_ms_p50": _ms(piece_cpu_ms, 50),
        "piece_cpu_ms_p95": _ms(piece_cpu_ms, 95),
        "texts_with_stall": sum(s > 0 for s in stalls),
        "stall_ms_p95": _ms(stalls, 95),
        "rtf": round(synth_ms / 1000 / audio_s, 3),
        "rtf_cpu": round(sum(piece_cpu_ms) / 1000 / audio_s, 3),
        "audio_s": round(audio_s, 1),
        "items": items,
    }


def error_rates(items: list[dict[str, Any]]) -> dict[str, float]:
    """Corpus CER (and SER) over all items, per kind, per half, and per kind and half."""
    groups: dict[str, list[dict[str, Any]]] = {"all": items}
    for item in items:
        for key in (item["kind"], item["half"], f"{item['kind']}_{item['half']}"):
            groups.setdefault(key, []).append(item)
    rates: dict[str, float] = {}
    for key, group in groups.items():
        rates[f"cer_{key}"] = _rate(sum(i["edits"] for i in group), sum(i["chars"] for i in group))
        rates[f"ser_{key}"] = _rate(
            sum(i["syllable_edits"] for i in group), sum(i["syllables"] for i in group)
        )
    return rates


def markdown(report: dict[str, Any]) -> str:
    espeak = report["engines"][-1]
    lines = [
        "# The bot's voice: Kokoro-82M against espeak-ng",
        "",
        report["about"],
        "",
        "| engine | CER all | tuning half | held-out half | prompts | answers | SER all | "
        "first audio of a text p50 / p95 ms (CPU) | × espeak-ng p50 / p95 | per piece p50 / p95 ms | "
        "texts with a stall, stall p95 ms | RTF wall (CPU) | audio s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["engines"]:
        ratio = [
            r[f"text_first_audio_ms_{q}"] / max(espeak[f"text_first_audio_ms_{q}"], 1)
            for q in ("p50", "p95")
        ]
        lines.append(
            f"| {r['engine']} | {r['cer_all']:.1%} | {r['cer_tuning']:.1%} | {r['cer_held_out']:.1%} | "
            f"{r['cer_prompts']:.1%} | {r['cer_answers']:.1%} | {r['ser_all']:.1%} | "
            f"{r['text_first_audio_ms_p50']} / {r['text_first_audio_ms_p95']} "
            f"({r['text_first_audio_cpu_ms_p50']} / {r['text_first_audio_cpu_ms_p95']}) | "
            f"{ratio[0]:.1f} / {ratio[1]:.1f} | "
            f"{r['piece_first_audio_ms_p50']} / {r['piece_first_audio_ms_p95']} | "
            f"{r['texts_with_stall']}, {r['stall_ms_p95']} | {r['rtf']} ({r['rtf_cpu']}) | "
            f"{r['audio_s']} |"
        )
    lines += [
        "",
        f"{report['texts']} texts ({report['pieces']} pieces of Kokoro); load average before / after the run "
        f"{report['load_average_before']} / {report['load_average']} on {os.cpu_count()} cores. Targets: CER "
        "≤ 10 %, first audio per sentence ≤ 300 ms. Every text with what Whisper heard is in tts.json.",
        "",
    ]
    return "\n".join(lines)


async def run(settings: Settings) -> dict[str, Any]:
    load_before = round(os.getloadavg()[0], 1)
    texts = bench_texts(settings)
    engines: list[SpeechSynthesizer] = [
        KokoroTts.from_settings(settings.tts.kokoro.model_copy(update={"threads": 1})),
        EspeakNg(settings.tts.voice, speed_wpm=settings.tts.speed_wpm),
    ]
    whisper = make_recognizer_factory(settings)
    try:
        measured = [await measure(engine, texts, whisper) for engine in engines]
    finally:
        whisper.close()
    return {
        "about": " ".join(__doc__.split("\n\n")[1].split()),
        "texts": len(texts),
        "pieces": measured[0]["pieces"],
        "engines": measured,
        "load_average_before": load_before,
        "load_average": round(os.getloadavg()[0], 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench tts", description=__doc__)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    report = asyncio.run(run(load_settings()))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tts.json").write_text(
        json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    (args.out / "tts.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
