"""Spoken end to end (issue #12 §5): the frozen development set's questions, spoken, through the whole bot.

    python -m bench.containment [--concurrency 4] [--limit N]

Every question of ``bench/devset/knowledge_questions.jsonl`` (in scope and out of scope) is synthesised with the
bot's neural voice (Kokoro-82M; the caller's voice is another speaker than the bot's, rotating over four Mandarin
voices), band-limited to the telephone band (300–3,400 Hz at 8 kHz) and said, over loopback AudioSocket, to a
bot that runs as under ``hotline run`` on the set's knowledge base (imported and published into a fresh SQLite
database; Whisper gets that knowledge base's hot-words). Calls run ``--concurrency`` at a time, paced like
Asterisk. Each caller speaks over the greeting (barge-in), listens until the bot has spoken 2.5 s of its reply,
and hangs up; the bot's outcome says which entry it answered confidently (即答), if any.

Figures: containment (in-scope questions answered confidently with the right entry), confident-but-wrong (all
questions), clarifying questions asked, the recogniser's CER on what callers said, and the same questions as
text through the same index in the same run (the ceiling speech can reach). The bot's own voice is espeak-ng
here: what it says is not measured, and synthesising every answer with Kokoro would dominate the run. Writes
bench/results/containment.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from scipy.signal import butter, sosfilt
from sqlalchemy import select

from asr import audio
from asr.bot import build_bot
from asr.dialogue import BotOutcome, frame_dbfs
from asr.evaluate import edits
from asr.prompts import load_prompts
from asr.tts import CachedTts
from asr.tts_kokoro import KokoroTts
from bench.bot import caller_said, line_to, pct, speech_end_frames
from bench.devset_eval import DEVSET, KB_FILE, QUESTIONS_FILE, code_version
from config import Settings, load_settings
from hotline.db import create_schema, make_engine, make_sessionmaker
from knowledge import services as kb
from knowledge.io import import_file
from knowledge.models import KnowledgeEntry
from knowledge.retrieval import KnowledgeIndex

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CALLER_VOICES = ("zf_xiaobei", "zm_yunjian", "zf_xiaoni", "zm_yunxi")
LISTEN_S = 2.5  # of the bot's reply heard before hanging up
REPLY_WAIT_S = 20.0
VOICED_DBFS = -50.0


@dataclass(frozen=True)
class Question:
    text: str
    expected: str | None  # the entry's question; None: out of scope
    pcm: bytes
    speech_frames: int


@dataclass(frozen=True)
class Call:
    question: Question
    outcome: BotOutcome | None
    heard: str
    first_reply_s: float | None


def telephone_band(pcm: bytes) -> bytes:
    """8 kHz slin band-limited to 300–3,400 Hz (a 4th-order Butterworth band-pass), as a phone line passes it."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    sos = butter(4, [300, 3400], btype="bandpass", fs=audio.SAMPLE_RATE, output="sos")
    return np.clip(sosfilt(sos, samples), -32768, 32767).astype("<i2").tobytes()


def spoken_questions(settings: Settings, rows: list[dict[str, Any]], cache: Path) -> list[Question]:
    """Each question in a caller's voice (cached on disk between runs), through the telephone band."""
    kokoro = settings.tts.kokoro
    voices = [
        CachedTts(KokoroTts(Path(kokoro.model_dir), v, threads=os.cpu_count() or 1), cache)
        for v in CALLER_VOICES
    ]
    out = []
    for i, row in enumerate(rows):
        pcm = telephone_band(voices[i % len(voices)].synthesize(row["question"]))
        pcm = audio.silence(0.3) + pcm + audio.silence(0.2)
        out.append(Question(row["question"], row["expected"], pcm, speech_end_frames(pcm)))
    return out


async def one_call(port: int, q: Question, outcomes: dict[str, BotOutcome], seed: int) -> Call:
    first = None
    async with line_to(port) as line:
        client = line.client
        await client.wait_for_audio(audio.FRAME_BYTES, within_s=10)
        await asyncio.sleep(random.Random(seed).uniform(0.2, 1.0))
        line.speech_left = q.speech_frames
        line.pending.extend(audio.frames(q.pcm))
        await line.done.wait()
        end, deadline = line.end_at, time.monotonic() + REPLY_WAIT_S
        while time.monotonic() < deadline and not client.ended.is_set():
            voiced = [
                f.at for f in client.received if f.at > end and frame_dbfs(f.pcm) > VOICED_DBFS
            ]
            if voiced:
                first = voiced[0] - end
                if len(voiced) * audio.FRAME_SECONDS >= LISTEN_S:
                    break
            await asyncio.sleep(0.05)
    outcome = await _outcome(outcomes, str(client.call_id))
    return Call(q, outcome, "".join(caller_said(outcome)), first)


async def _outcome(outcomes: dict[str, BotOutcome], call_id: str) -> BotOutcome | None:
    for _ in range(400):
        if call_id in outcomes:
            return outcomes[call_id]
        await asyncio.sleep(0.05)
    return None


async def run_calls(
    settings: Settings, questions: list[Question], concurrency: int, tmp: Path
) -> tuple[list[Call], dict[str, int], KnowledgeIndex]:
    """The bot on the set's knowledge base; every question one call, ``concurrency`` at a time."""
    db = make_engine(f"sqlite+aiosqlite:///{tmp / 'containment.db'}")
    await create_schema(db)
    sessionmaker = make_sessionmaker(db)
    async with sessionmaker() as session:
        await import_file(
            session,
            DEVSET / KB_FILE,
            "bench",
            publish=True,
            max_speech=settings.knowledge.max_speech_chars,
        )
        ids = {
            q: i
            for i, q in (
                await session.execute(select(KnowledgeEntry.id, KnowledgeEntry.question))
            ).all()
        }
        index = KnowledgeIndex.from_settings(settings)
        await kb.refresh_index(session, index, datetime.now(ZoneInfo(settings.timezone)).date())
    outcomes: dict[str, BotOutcome] = {}

    async def on_outcome(call_id: str, outcome: BotOutcome) -> None:
        outcomes[call_id] = outcome

    bot = await build_bot(settings, sessionmaker, on_outcome=on_outcome, port=0)
    await bot.start()
    calls: list[Call] = []
    try:
        for start in range(0, len(questions), concurrency):
            batch = questions[start : start + concurrency]
            calls += await asyncio.gather(
                *(one_call(bot.port, q, outcomes, start + i) for i, q in enumerate(batch))
            )
            await bot.server.wait_idle()
    finally:
        await bot.close()
        await db.dispose()
    return calls, ids, index


def figures(
    calls: list[Call], ids: dict[str, int], index: KnowledgeIndex, clarify_head: str
) -> dict[str, Any]:
    in_scope = [c for c in calls if c.question.expected is not None]
    answered = [c for c in calls if c.outcome is not None and c.outcome.answer_id is not None]

    def right(c: Call) -> bool:
        return c.outcome is not None and c.outcome.answer_id == ids.get(c.question.expected or "")

    text = [index.ask(c.question.text) for c in calls]
    text_right = [
        a.confident and a.question == c.question.expected
        for a, c in zip(text, calls, strict=True)
        if c.question.expected is not None
    ]
    text_wrong = [
        a.confident and a.question != c.question.expected for a, c in zip(text, calls, strict=True)
    ]
    n_edits = n_chars = 0
    for c in in_scope:
        e, n = edits(c.question.text, c.heard)
        n_edits, n_chars = n_edits + e, n_chars + n
    first = [c.first_reply_s for c in calls if c.first_reply_s is not None]
    return {
        "calls": len(calls),
        "in_scope": len(in_scope),
        "out_of_scope": len(calls) - len(in_scope),
        "without_outcome": sum(c.outcome is None for c in calls),
        "containment": round(sum(map(right, in_scope)) / len(in_scope), 4),
        "confident_but_wrong": round(sum(not right(c) for c in answered) / len(calls), 4),
        "clarifying_questions": sum(
            clarify_head in (c.outcome.transcript if c.outcome else "") for c in calls
        ),
        "asr_cer": round(n_edits / max(n_chars, 1), 4),
        "text_confident_and_correct": round(sum(text_right) / len(in_scope), 4),
        "text_confident_but_wrong": round(sum(text_wrong) / len(calls), 4),
        "first_reply_p50_s": pct(first, 50),
        "first_reply_p95_s": pct(first, 95),
    }


def markdown(result: dict[str, Any]) -> str:
    f = result["figures"]
    rows = [
        (
            "calls (in scope / out of scope)",
            f"{f['calls']} ({f['in_scope']} / {f['out_of_scope']})",
        ),
        ("**containment** (in scope, right entry answered outright)", f"{f['containment']:.1%}"),
        ("confident-but-wrong (all calls)", f"{f['confident_but_wrong']:.1%}"),
        ("clarifying questions asked", str(f["clarifying_questions"])),
        ("calls without an outcome", str(f["without_outcome"])),
        ("recogniser CER on the callers' questions", f"{f['asr_cer']:.1%}"),
        ("same questions as text: confident-and-correct", f"{f['text_confident_and_correct']:.1%}"),
        ("same questions as text: confident-but-wrong", f"{f['text_confident_but_wrong']:.1%}"),
        (
            "first reply after the caller stopped, p50 / p95",
            f"{f['first_reply_p50_s']} / {f['first_reply_p95_s']} s",
        ),
    ]
    table = "\n".join(f"| {a} | {b} |" for a, b in rows)
    return (
        "# Spoken end to end: the frozen development set through the whole bot\n\n"
        f"Run {result['run_at']}, commit `{result['code']['commit'][:12]}`"
        f"{' (with uncommitted changes)' if result['code']['uncommitted'] else ''}; "
        f"{result['concurrency']} calls at a time; load average {result['load_after']}. "
        "Made by `python -m bench.containment` (see its docstring).\n\n"
        f"| figure | value |\n|---|---|\n{table}\n"
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = load_settings()
    rows = [json.loads(x) for x in (DEVSET / QUESTIONS_FILE).read_text("utf-8").splitlines() if x]
    rows = rows[: args.limit] if args.limit else rows
    questions = await asyncio.to_thread(
        spoken_questions, settings, rows, ROOT / "var" / "bench-containment" / "voices"
    )
    with tempfile.TemporaryDirectory(prefix="bench-containment-") as tmp:
        bot_settings = settings.model_copy(
            update={
                "tts": settings.tts.model_copy(
                    update={"engine": "espeak-ng", "cache_dir": str(Path(tmp) / "tts")}
                )
            }
        )
        calls, ids, index = await run_calls(bot_settings, questions, args.concurrency, Path(tmp))
    clarify_head = load_prompts(settings).clarify.split("{", 1)[0]
    return {
        "run_at": datetime.now(ZoneInfo(settings.timezone)).isoformat(timespec="seconds"),
        "code": code_version(),
        "concurrency": args.concurrency,
        "caller_voices": list(CALLER_VOICES),
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "figures": figures(calls, ids, index, clarify_head),
        "calls": [
            {
                "question": c.question.text,
                "expected": c.question.expected,
                "heard": c.heard,
                "answer_id": c.outcome.answer_id if c.outcome else None,
                "reason": c.outcome.reason if c.outcome else None,
            }
            for c in calls
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.containment", description=__doc__)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--limit", type=int, default=0, help="only the first N questions (a quick look)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "containment.json").write_text(
        json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
    )
    (args.out / "containment.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
