"""Spoken end to end (issue #12 §5): the frozen development set's questions, spoken, through the whole bot.

    python -m bench.containment [--concurrency 4] [--limit N]

Every question of ``bench/devset/knowledge_questions.jsonl`` (in scope and out of scope) is synthesised with the
bot's neural voice (Kokoro-82M; the caller's voice is another speaker than the bot's, rotating over four Mandarin
voices), band-limited to the telephone band (300–3,400 Hz at 8 kHz) and said, over loopback AudioSocket, to a
bot that runs as under ``hotline run`` on the set's knowledge base (imported and published into a fresh SQLite
database; Whisper gets that knowledge base's hot-words). Calls run ``--concurrency`` at a time, paced like
Asterisk. Each caller speaks over the greeting (barge-in), listens until the bot has spoken 2.5 s of its reply,
and hangs up; the bot's outcome says which entry it answered confidently (即答), if any.

A clarifying question (「您是想问A，还是B？」) is answered as a real caller would: the caller understands what the
bot said (:class:`BotVoice` knows every piece of the bot's speech by its sound, so the caller looks up the audio
it received) and, when the entry it means is one of the two named, presses 1 or 2 (a DTMF frame) and listens to
the answer; otherwise it presses and says nothing and stays on until the dialogue moves on (to taking a ticket).

Figures: containment = answered outright + answered after a clarifying question (in-scope questions, the right
entry), confident-but-wrong (all questions), clarifying questions asked and whether they named the right entry,
the recogniser's CER on what callers said, and the same questions as text through the same index in the same run
(the ceiling speech can reach; clarifying questions counted as ``bench.devset_eval`` counts them). Until session 8
callers never answered a clarifying question: its "containment" is the "answered outright" of this run. The bot's
own voice is espeak-ng here: what it says is not measured, and synthesising every answer with Kokoro would
dominate the run. Writes bench/results/containment.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from scipy.signal import butter, sosfilt
from sqlalchemy import select

from asr import audio
from asr.audiosocket_client import AudioSocketClient
from asr.bot import build_bot
from asr.dialogue import BotOutcome, brief, frame_dbfs
from asr.evaluate import edits
from asr.prompts import load_prompts
from asr.tts import CachedTts
from asr.tts_kokoro import KokoroTts
from bench.bot import caller_said, line_to, pct, speech_end_frames
from bench.devset_eval import DEVSET, KB_FILE, QUESTIONS_FILE, clarify_figures, code_version
from config import Settings, load_settings
from hotline.db import create_schema, make_engine, make_sessionmaker
from knowledge import services as kb
from knowledge.evaluation import EvalItem
from knowledge.io import import_file
from knowledge.models import KnowledgeEntry
from knowledge.retrieval import Answer, KnowledgeIndex

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CALLER_VOICES = ("zf_xiaobei", "zm_yunjian", "zf_xiaoni", "zm_yunxi")
LISTEN_S = 2.5  # of the bot's reply heard before hanging up
REPLY_WAIT_S = 20.0
VOICED_DBFS = -50.0
HEAR_OFFER_S = 15.0  # longest wait for the clarifying question's two names to be heard
# The clarifying question's first pieces are synthesised before it starts (the bot prepares its speech ahead).
PIECES_BEFORE_S = 10.0
# Marks of the bot's turns that are not its next step after a clarifying question (asr.dialogue trace marks).
NOT_A_STEP = frozenset({"clarify", "filler", "barge_in", "final"})
CLARIFY = frozenset({"clarify"})


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
    # the two questions a clarifying question named, as heard
    offered: tuple[str, str] | None = None
    pressed: str | None = None  # the key the caller pressed to answer it


class BotVoice(CachedTts):
    """The bot's voice, knowing each piece it synthesised by its sound: a caller who received some of the bot's
    audio looks up what was said (:meth:`words`), as a listener who understands every word."""

    def __init__(self, tts: CachedTts, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(tts.engine, tts.cache_dir)
        self.clock = clock
        # the loud core of each piece's audio → its text, and when it was last asked for
        self.pieces: dict[bytes, tuple[str, float]] = {}

    def synthesize_piece(self, text: str) -> bytes:
        pcm = super().synthesize_piece(text)
        self.pieces[audio.trim_silence(pcm, keep_s=0.0)] = (text, self.clock())
        return pcm

    def words(self, heard: bytes, since: float) -> str:
        """The pieces asked for since ``since`` whose sound ``heard`` contains, in the order heard."""
        found = [
            (heard.find(core), text)
            for core, (text, at) in list(self.pieces.items())
            if at >= since and core
        ]
        return "".join(text for at, text in sorted(found) if at >= 0)


class Marks:
    """The bot's trace marks per call (``answer``, ``clarify``, ``ask_matter`` …): what a caller notices of its
    turns (that a question started), not their words."""

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple[str, float]]] = defaultdict(list)

    def __call__(self, call_id: str, mark: str, when: float) -> None:
        self.calls[call_id].append((mark, when))

    def first(
        self, call_id: str, after: float, marks: frozenset[str] | None = None
    ) -> float | None:
        """When the first mark after ``after`` (of ``marks``; any other than NOT_A_STEP when None) was made."""
        return next(
            (
                at
                for mark, at in self.calls.get(call_id, [])
                if at > after and (mark in marks if marks is not None else mark not in NOT_A_STEP)
            ),
            None,
        )


def offer(said: str, clarify: str) -> tuple[str, str] | None:
    """The two names a clarifying question (the prompt ``clarify``, with {first} and {second}) gives in ``said``."""
    head, rest = clarify.split("{first}", 1)
    between, tail = rest.split("{second}", 1)
    pattern = f"{re.escape(head)}(.+?){re.escape(between)}(.+?){re.escape(tail[:1])}"
    found = re.search(pattern, said)
    return (found[1], found[2]) if found else None


def choice(offered: tuple[str, str] | None, expected: str | None) -> str | None:
    """The key a caller who means the entry ``expected`` presses: 1 or 2 when exactly one of the two names is its
    (as the bot names it), else none (the entry is not among them, or the caller is out of scope)."""
    if offered is None or expected is None:
        return None
    named = [str(i + 1) for i, name in enumerate(offered) if name == brief(expected)]
    return named[0] if len(named) == 1 else None


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


async def one_call(port: int, q: Question, ear: Ear, seed: int) -> Call:
    """One caller: the question, then the reply; a clarifying question answered with 1 or 2 when it names the
    entry meant (then the answer heard), else left unanswered until the bot moves on."""
    offered = pressed = None
    async with line_to(port) as line:
        client = line.client
        call_id = str(client.call_id)
        await client.wait_for_audio(audio.FRAME_BYTES, within_s=10)
        await asyncio.sleep(random.Random(seed).uniform(0.2, 1.0))
        line.speech_left = q.speech_frames
        line.pending.extend(audio.frames(q.pcm))
        await line.done.wait()
        end = line.end_at
        asked = await ear.reply(client, call_id, end)
        if asked is not None:
            offered = await ear.offer(client, asked)
            pressed = choice(offered, q.expected)
            if pressed is not None:
                await client.send_dtmf(pressed)
                await ear.reply(client, call_id, time.monotonic(), clarify=False)
            else:
                await ear.next_step(client, call_id, asked)
    voiced = (f.at for f in client.received if f.at > end and frame_dbfs(f.pcm) > VOICED_DBFS)
    first = next((at - end for at in voiced), None)
    outcome = await _outcome(ear.outcomes, call_id)
    return Call(q, outcome, "".join(caller_said(outcome)), first, offered, pressed)


@dataclass
class Ear:
    """What a caller perceives of the bot: its audio, its turns (``marks``), what it says (``voice``)."""

    voice: BotVoice
    marks: Marks
    clarify: str  # the clarifying question's prompt
    wait_s: float  # longest wait for the bot to move on after an unanswered clarifying question
    outcomes: dict[str, BotOutcome]

    async def reply(
        self, client: AudioSocketClient, call_id: str, since: float, *, clarify: bool = True
    ) -> float | None:
        """Listen after ``since`` until the bot has spoken ``LISTEN_S`` or (with ``clarify``) has begun a
        clarifying question (at any time: the bot may ask before the caller's last word is out); when that
        question began (None: none)."""
        deadline = time.monotonic() + REPLY_WAIT_S
        while time.monotonic() < deadline and not client.ended.is_set():
            if clarify and (asked := self.marks.first(call_id, -math.inf, CLARIFY)):
                return asked
            voiced = sum(f.at > since and frame_dbfs(f.pcm) > VOICED_DBFS for f in client.received)
            if voiced * audio.FRAME_SECONDS >= LISTEN_S:
                break
            await asyncio.sleep(0.05)
        return None

    async def offer(self, client: AudioSocketClient, asked: float) -> tuple[str, str] | None:
        """The two names of the clarifying question begun at ``asked``, once heard (None: not heard in time)."""
        deadline = asked + HEAR_OFFER_S
        while time.monotonic() < deadline and not client.ended.is_set():
            heard = b"".join(f.pcm for f in client.received if f.at >= asked)
            if named := offer(self.voice.words(heard, asked - PIECES_BEFORE_S), self.clarify):
                return named
            await asyncio.sleep(0.2)
        return None

    async def next_step(self, client: AudioSocketClient, call_id: str, asked: float) -> None:
        """Silent until the bot goes on after the clarifying question begun at ``asked`` (or the call ends)."""
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline and not client.ended.is_set():
            if self.marks.first(call_id, asked) is not None:
                return
            await asyncio.sleep(0.1)


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

    marks = Marks()
    bot = await build_bot(settings, sessionmaker, on_outcome=on_outcome, trace=marks, port=0)
    bot.tts = voice = BotVoice(bot.tts)
    wait_s = settings.asr.bot.max_silences * (settings.asr.bot.silence_timeout_s + REPLY_WAIT_S)
    ear = Ear(voice, marks, bot.prompts.clarify, wait_s, outcomes)
    await bot.start()
    calls: list[Call] = []
    try:
        for start in range(0, len(questions), concurrency):
            batch = questions[start : start + concurrency]
            calls += await asyncio.gather(
                *(one_call(bot.port, q, ear, start + i) for i, q in enumerate(batch))
            )
            await bot.server.wait_idle()
    finally:
        await bot.close()
        await db.dispose()
    return calls, ids, index


def figures(calls: list[Call], ids: dict[str, int], clarify_head: str) -> dict[str, Any]:
    """The spoken figures: a call is answered right when the bot's outcome names the entry meant (``ids``: entry
    question → id), outright or after the caller pressed 1 or 2; ``clarify_head``: how a clarifying question
    begins in the bot's transcript."""
    in_scope = [c for c in calls if c.question.expected is not None]
    answered = [c for c in calls if c.outcome is not None and c.outcome.answer_id is not None]

    def right(c: Call) -> bool:
        return c.outcome is not None and c.outcome.answer_id == ids.get(c.question.expected or "")

    outright = sum(right(c) and c.pressed is None for c in in_scope)
    after_clarifying = sum(right(c) and c.pressed is not None for c in in_scope)
    asked = [c for c in calls if clarify_head in (c.outcome.transcript if c.outcome else "")]
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
        "answered_outright": _share(outright, len(in_scope)),
        "answered_after_clarifying": _share(after_clarifying, len(in_scope)),
        "containment": _share(outright + after_clarifying, len(in_scope)),
        "confident_but_wrong": _share(sum(not right(c) for c in answered), len(calls)),
        "clarifying_questions": len(asked),
        "clarifying_named_right": sum(c.pressed is not None for c in asked),
        "clarifying_named_neither": sum(c.offered is not None and c.pressed is None for c in asked),
        "clarifying_not_understood": sum(c.offered is None for c in asked),
        "asr_cer": _share(n_edits, n_chars),
        "first_reply_p50_s": pct(first, 50),
        "first_reply_p95_s": pct(first, 95),
    }


def text_figures(ask: Callable[[str], Answer], questions: list[Question]) -> dict[str, float]:
    """The same questions as text through ``ask`` (the bot's index): the ceiling speech can reach."""
    in_scope = [q for q in questions if q.expected is not None]
    said = {q.text: ask(q.text) for q in questions}

    def confident_in(q: Question) -> str | None:
        return said[q.text].question if said[q.text].confident else None

    right = sum(confident_in(q) == q.expected for q in in_scope)
    wrong = sum(confident_in(q) not in (None, q.expected) for q in questions)
    clarify = clarify_figures(ask, [EvalItem(q.text, q.expected) for q in questions])
    return {
        "text_confident_and_correct": _share(right, len(in_scope)),
        "text_clarify_resolved": round(clarify["clarify_resolved"], 4),
        "text_answered_or_resolved": round(
            right / max(len(in_scope), 1) + clarify["clarify_resolved"], 4
        ),
        "text_confident_but_wrong": _share(wrong, len(questions)),
    }


def _share(n: int, d: int) -> float:
    return round(n / max(d, 1), 4)


def markdown(result: dict[str, Any]) -> str:
    f = result["figures"]
    rows = [
        (
            "calls (in scope / out of scope)",
            f"{f['calls']} ({f['in_scope']} / {f['out_of_scope']})",
        ),
        (
            "answered outright, right entry (session 8's containment)",
            f"{f['answered_outright']:.1%}",
        ),
        (
            "answered after a clarifying question (1 or 2 pressed), right entry",
            f"{f['answered_after_clarifying']:.1%}",
        ),
        (
            "**containment** (in scope, right entry: outright + after a clarifying question)",
            f"{f['containment']:.1%}",
        ),
        ("confident-but-wrong (all calls)", f"{f['confident_but_wrong']:.1%}"),
        (
            "clarifying questions asked: right entry named / neither / not understood by the caller",
            f"{f['clarifying_questions']}: {f['clarifying_named_right']} / {f['clarifying_named_neither']} / "
            f"{f['clarifying_not_understood']}",
        ),
        ("calls without an outcome", str(f["without_outcome"])),
        ("recogniser CER on the callers' questions", f"{f['asr_cer']:.1%}"),
        ("same questions as text: confident-and-correct", f"{f['text_confident_and_correct']:.1%}"),
        (
            "same questions as text: resolved by a clarifying question",
            f"{f['text_clarify_resolved']:.1%}",
        ),
        (
            "same questions as text: answered or resolved, right entry",
            f"{f['text_answered_or_resolved']:.1%}",
        ),
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
        "figures": figures(calls, ids, clarify_head) | text_figures(index.ask, questions),
        "calls": [
            {
                "question": c.question.text,
                "expected": c.question.expected,
                "heard": c.heard,
                "answer_id": c.outcome.answer_id if c.outcome else None,
                "reason": c.outcome.reason if c.outcome else None,
                "offered": list(c.offered) if c.offered else None,
                "pressed": c.pressed,
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
