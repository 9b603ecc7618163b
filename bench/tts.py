"""The bot's voice: intelligibility and speed of Kokoro-82M against espeak-ng, in the same run.

Texts: the bot's fixed prompts (config/bot_prompts.toml), a ticket read-back, and the spoken answers of the
first 50 entries of the sample knowledge base (config/knowledge_sample.jsonl, cut as an import cuts them).
Each text is synthesised piece by piece as the bot speaks it (``asr.tts.split_sentences``, every piece's
silence trimmed as ``asr.dialogue.say`` does), at 8 kHz as the bot sends it, and transcribed by the project's
Whisper (beam 5, no hot-words). Intelligibility is the corpus CER against the text; digits in Whisper's output
are read as the text writes them (digit by digit where the text has those digits, else as a quantity; 幺 is
scored as 一); a homophone Whisper writes with other characters (公积金 → 攻击金) is a character error but not a
syllable error: the toneless pinyin syllable error rate (SER) is given beside the CER. Speed: time to first
audio of each piece (the synthesis of that piece, uncached) with the engine on one thread, p50/p95, wall time
and the CPU time it used (on a busy machine the wall time includes waiting for a core), and the real-time
factor. Results go to bench/results/tts.json and .md. Targets (issue #12): CER
≤ 10 %, first audio per sentence ≤ 300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import time
from pathlib import Path
from typing import Any

import cn2an
import numpy as np

from asr.audio import duration_s
from asr.dialogue import trim_silence
from asr.evaluate import edits, syllable_edits, transcribe_pcm
from asr.prompts import load_prompts
from asr.recognizer import RecognizerFactory, make_recognizer_factory
from asr.tts import EspeakNg, SpeechSynthesizer, digits_for_speech, split_sentences
from asr.tts_kokoro import KokoroTts
from config.settings import Settings, config_path, load_settings
from knowledge.io import parse_file

RESULTS = Path(__file__).with_name("results")
ANSWERS = 50
TICKET_NO = "12345-20261207-00042"
_DIGITS = re.compile(r"\d+")


def bench_texts(settings: Settings) -> dict[str, list[str]]:
    """The texts spoken in the bench, by kind."""
    prompts = load_prompts(settings)
    sample = parse_file(
        config_path(settings.knowledge.sample), max_speech=settings.knowledge.max_speech_chars
    )
    return {
        "prompts": [*prompts.fixed(), prompts.ticket(digits_for_speech(TICKET_NO))],
        "answers": [row.content.answer_speech for row in sample[:ANSWERS]],
    }


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


def synthesise(engine: SpeechSynthesizer, text: str) -> tuple[bytes, list[float], list[float]]:
    """The text as the bot plays it, and the wall and CPU milliseconds each piece took to synthesise."""
    pcm, wall, cpu = [], [], []
    for piece in split_sentences(text):
        t0, c0 = time.perf_counter(), _cpu_s()
        audio = engine.synthesize(piece)
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((_cpu_s() - c0) * 1000)
        pcm.append(trim_silence(audio))
    return b"".join(pcm), wall, cpu


async def measure(
    engine: SpeechSynthesizer, texts: dict[str, list[str]], whisper: RecognizerFactory
) -> dict[str, Any]:
    engine.synthesize("您好。")  # warm-up: the first call loads lazily what the engine did not load
    report: dict[str, Any] = {"engine": engine.cache_id}
    piece_ms: list[float] = []
    piece_cpu_ms: list[float] = []
    first_ms: list[float] = []
    synth_ms = audio_s = 0.0
    worst: list[dict[str, Any]] = []
    for kind, group in texts.items():
        n_edits = n_chars = n_syllable_edits = n_syllables = 0
        for text in group:
            pcm, times, cpu = synthesise(engine, text)
            piece_ms += times
            piece_cpu_ms += cpu
            first_ms.append(times[0])
            synth_ms += sum(times)
            audio_s += duration_s(pcm)
            heard = await transcribe_pcm(whisper, pcm, 8000)
            reference, hypothesis = (
                text.replace("幺", "一"),
                as_written(heard, text).replace("幺", "一"),
            )
            e, n = edits(reference, hypothesis)
            n_edits, n_chars = n_edits + e, n_chars + n
            se, ns = syllable_edits(reference, hypothesis)
            n_syllable_edits, n_syllables = n_syllable_edits + se, n_syllables + ns
            worst.append({"text": text, "heard": heard, "cer": round(e / max(n, 1), 3)})
        report[f"cer_{kind}"] = round(n_edits / max(n_chars, 1), 4)
        report[f"chars_{kind}"] = n_chars
        report[f"ser_{kind}"] = round(n_syllable_edits / max(n_syllables, 1), 4)
    report["cer"] = round(
        sum(report[f"cer_{k}"] * report[f"chars_{k}"] for k in texts)
        / max(sum(report[f"chars_{k}"] for k in texts), 1),
        4,
    )
    report |= {
        "pieces": len(piece_ms),
        "piece_first_audio_ms_p50": round(float(np.percentile(piece_ms, 50))),
        "piece_first_audio_ms_p95": round(float(np.percentile(piece_ms, 95))),
        "piece_cpu_ms_p50": round(float(np.percentile(piece_cpu_ms, 50))),
        "piece_cpu_ms_p95": round(float(np.percentile(piece_cpu_ms, 95))),
        "text_first_audio_ms_p50": round(float(np.percentile(first_ms, 50))),
        "text_first_audio_ms_p95": round(float(np.percentile(first_ms, 95))),
        "rtf": round(synth_ms / 1000 / audio_s, 3),
        "rtf_cpu": round(sum(piece_cpu_ms) / 1000 / audio_s, 3),
        "audio_s": round(audio_s, 1),
        "worst": sorted(worst, key=lambda w: -w["cer"])[:5],
    }
    return report


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# The bot's voice: Kokoro-82M against espeak-ng",
        "",
        report["about"],
        "",
        "| engine | CER all | prompts | answers | SER prompts / answers | first audio per piece p50 / p95 ms "
        "(CPU ms) | first piece of a text p50 / p95 ms | RTF wall (CPU) | audio s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["engines"]:
        lines.append(
            f"| {r['engine']} | {r['cer']:.1%} | {r['cer_prompts']:.1%} | {r['cer_answers']:.1%} | "
            f"{r['ser_prompts']:.1%} / {r['ser_answers']:.1%} | "
            f"{r['piece_first_audio_ms_p50']} / {r['piece_first_audio_ms_p95']} "
            f"({r['piece_cpu_ms_p50']} / {r['piece_cpu_ms_p95']}) | "
            f"{r['text_first_audio_ms_p50']} / {r['text_first_audio_ms_p95']} | "
            f"{r['rtf']} ({r['rtf_cpu']}) | {r['audio_s']} |"
        )
    lines += [
        "",
        f"{report['texts']} texts ({report['pieces']} pieces); load average at the end "
        f"{report['load_average']}. Targets: CER ≤ 10 %, first audio per sentence ≤ 300 ms. The worst-heard "
        "texts of each engine are in tts.json.",
        "",
    ]
    return "\n".join(lines)


async def run(settings: Settings) -> dict[str, Any]:
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
        "texts": sum(len(group) for group in texts.values()),
        "pieces": measured[0]["pieces"],
        "engines": measured,
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
