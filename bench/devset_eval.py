"""The frozen development set of issue #12 (bench/devset/): knowledge and dispatch figures, before and after.

    python -m bench.devset_eval [--label before|after|NAME] [--history FILE] [--out DIR]
    python -m bench devset_eval          (label "current")

Knowledge: the set's knowledge base is imported into a fresh SQLite database and published (the code path of
`hotline kb import --publish`), indexed as the bot indexes it, and the colloquial caller questions are evaluated
at the configured confidence threshold (``knowledge.evaluation``): top-1 and top-3 on in-scope questions,
confident-and-correct (in-scope questions answered confidently with the right entry), confident-but-wrong
(share of all questions, out-of-scope ones included, answered confidently and wrongly). Clarifying questions
(「您是想问A，还是B？」), asked as the bot decides (:func:`offered`): in-scope questions resolved by one (the right
entry is one of the two named: the caller presses 1 or 2), those where neither is right, answered or resolved
(confident-and-correct + resolved), and the share of out-of-scope questions given one.

Dispatch: a model trained on the shared history sample (``../shared/dispatch/history_sample.jsonl``, as `hotline
dispatch train` trains it) ranks every set message with the suggester as configured (model + catalogue
keywords); top-1 / top-3 per catalogue category, their macro averages over all categories and over the
categories the history has, and the catalogue keywords alone as a baseline from the same run. Labels with
equal scores count with the chance that a random order puts the right one in the top k, so the figures do
not change from run to run.

Results: bench/results/devset.json keeps one record per ``--label`` (a new run replaces only its own label) and
bench/results/devset.md shows the labels side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from statistics import mean
from typing import Any
from zoneinfo import ZoneInfo

from config import Settings, load_settings
from hotline.db import create_schema, make_engine, make_sessionmaker
from knowledge import services
from knowledge.evaluation import EvalItem, evaluate_splits, figures_json, load_eval_set
from knowledge.io import import_file
from knowledge.retrieval import Answer, KnowledgeIndex
from language.embeddings import optional_embedder
from tickets.dispatch_catalogue import Catalogue, load_catalogue
from tickets.dispatch_data import Example, read_examples
from tickets.dispatch_suggest import DispatchSuggester
from tickets.dispatch_training import train_model

ROOT = Path(__file__).resolve().parent.parent
DEVSET = ROOT / "bench" / "devset"
RESULTS = ROOT / "bench" / "results"
KB_FILE = "knowledge_base.jsonl"
QUESTIONS_FILE = "knowledge_questions.jsonl"
DISPATCH_FILE = "dispatch_messages.jsonl"
HISTORY = Path("dispatch") / "history_sample.jsonl"
CODE_PATHS = (
    "knowledge",
    "tickets",
    "language",
    "config",
)  # whose uncommitted changes the figures depend on
Scorer = Callable[[str], dict[str, float]]  # text → label → score


async def knowledge_index(settings: Settings, kb_file: Path) -> KnowledgeIndex:
    """The bot's index over ``kb_file`` imported and published into a fresh SQLite database."""
    today = datetime.now(ZoneInfo(settings.timezone)).date()
    with tempfile.TemporaryDirectory(prefix="devset-") as tmp:
        engine = make_engine(f"sqlite+aiosqlite:///{Path(tmp) / 'devset.db'}")
        try:
            await create_schema(engine)
            async with make_sessionmaker(engine)() as session:
                await import_file(
                    session,
                    kb_file,
                    "devset",
                    publish=True,
                    max_speech=settings.knowledge.max_speech_chars,
                )
                index = KnowledgeIndex.from_settings(settings)
                await services.refresh_index(session, index, today)
        finally:
            await engine.dispose()
    return index


def offered(answer: Answer) -> tuple[str, str] | None:
    """The questions of the two entries the bot names when it asks which one is meant, the answer's first; None
    when it does not ask (``Answer.clarifies``, the dialogue's decision)."""
    if not answer.clarifies:
        return None
    return answer.question, answer.alternatives[0].entry.question


def clarify_figures(ask: Callable[[str], Answer], items: Sequence[EvalItem]) -> dict[str, float]:
    """Shares (unrounded) of the questions that ``ask`` (the bot's ``KnowledgeIndex.ask``) answers with a
    clarifying question: in scope, naming the right entry (``clarify_resolved``) or not (``clarify_neither``); out
    of scope, any (``out_of_scope_clarified``)."""
    named = [(item.expected, offered(ask(item.question))) for item in items]
    in_scope = [(e, o) for e, o in named if e is not None]
    out_of_scope = [o for e, o in named if e is None]
    n_in, n_out = max(len(in_scope), 1), max(len(out_of_scope), 1)
    return {
        "clarify_resolved": sum(o is not None and e in o for e, o in in_scope) / n_in,
        "clarify_neither": sum(o is not None and e not in o for e, o in in_scope) / n_in,
        "out_of_scope_clarified": sum(o is not None for o in out_of_scope) / n_out,
    }


def knowledge_figures(settings: Settings, devset: Path) -> dict[str, Any]:
    index = asyncio.run(knowledge_index(settings, devset / KB_FILE))
    items = load_eval_set(devset / QUESTIONS_FILE)
    evaluated = evaluate_splits(index, items, index.confidence_threshold)
    clarify = clarify_figures(index.ask, items)
    return {
        "entries": len(index.entries()),
        "threshold": index.confidence_threshold,
        **figures_json(evaluated)["all"],
        **{k: round(v, 4) for k, v in clarify.items()},
        "answered_or_resolved": round(evaluated["all"].answered + clarify["clarify_resolved"], 4),
    }


def scorer(suggester: DispatchSuggester) -> Scorer:
    """Text → every label the suggester proposes, with its score."""
    every = len(suggester.catalogue.entries)
    return lambda text: {s.label: s.score for s in suggester.suggest(text, every)}


def expected_hit(scores: dict[str, float], label: str, k: int) -> float:
    """Chance that ``label`` is among the first ``k`` when equal scores come in any order (the suggester's own
    order among equal scores follows Python's string hashing, so it changes from one process to the next)."""
    if label not in scores:
        return 0.0
    above = sum(v > scores[label] for v in scores.values())
    tied = sum(v == scores[label] for v in scores.values())
    return min(1.0, max(0.0, (k - above) / tied))


def per_category(score: Scorer, examples: Sequence[Example]) -> dict[str, dict[str, float]]:
    """Label → number of messages, top-1 and top-3 accuracy (ties counted by :func:`expected_hit`)."""
    hits: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for example in examples:
        scores = score(example.text)
        hits[example.label].append(
            (expected_hit(scores, example.label, 1), expected_hit(scores, example.label, 3))
        )
    return {
        label: {
            "messages": len(h),
            "top1": round(mean(a for a, _ in h), 4),
            "top3": round(mean(b for _, b in h), 4),
        }
        for label, h in sorted(hits.items())
    }


def macro(
    categories: dict[str, dict[str, float]], labels: Sequence[str] | None = None
) -> dict[str, float]:
    chosen = [categories[label] for label in (labels if labels is not None else categories)]
    return {k: round(mean(c[k] for c in chosen), 4) for k in ("top1", "top3")}


def dispatch_figures(settings: Settings, history_file: Path, devset: Path) -> dict[str, Any]:
    catalogue: Catalogue = load_catalogue(settings)
    history = read_examples(history_file)
    messages = read_examples(devset / DISPATCH_FILE)
    model = train_model(history, catalogue)
    weight = settings.dispatch.keyword_weight
    seen = sorted({e.label for e in history})
    out: dict[str, Any] = {
        "history": {"file": history_file.name, "samples": len(history), "labels": seen},
        "messages": len(messages),
        "keyword_weight": weight,
    }
    embedder = optional_embedder(settings.language.embedding_model)
    scorers = {
        "suggester": scorer(DispatchSuggester(catalogue, model, weight, embedder=embedder)),
        "keywords_only": scorer(DispatchSuggester(catalogue, None, weight)),
    }
    for name, score in scorers.items():
        categories = per_category(score, messages)
        out[name] = {
            "macro": macro(categories),
            "macro_history_categories": macro(categories, seen),
            "categories": categories,
        }
    return out


def code_version() -> dict[str, Any]:
    """The commit measured and the files under CODE_PATHS that differ from it (none in a clean tree)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        return {
            "commit": git("rev-parse", "HEAD"),
            "uncommitted": git("status", "--porcelain", "--", *CODE_PATHS).splitlines(),
        }
    except (OSError, subprocess.CalledProcessError):
        return {"commit": os.environ.get("DEVSET_COMMIT", "unknown"), "uncommitted": []}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def markdown(results: dict[str, Any]) -> str:
    labels = list(results)
    head = "| figure | " + " | ".join(labels) + " |\n|---|" + "---|" * len(labels)
    lines = [
        "# Frozen development set (issue #12 §5): before and after",
        "",
        "Set: `bench/devset/` (frozen; see its README). Made by `python -m bench.devset_eval --label NAME`.",
        "",
    ]
    for label, r in results.items():
        code = r["code"]
        dirty = (
            f", {len(code['uncommitted'])} uncommitted files under {'/'.join(CODE_PATHS)}"
            if code["uncommitted"]
            else ""
        )
        lines.append(f"- **{label}**: run {r['run_at']}, commit `{code['commit'][:12]}`{dirty}")
    k_rows = [
        ("top-1", "top1"),
        ("top-3", "top3"),
        ("confident-and-correct", "answered"),
        ("confident-but-wrong (all questions)", "confident_wrong"),
        ("out-of-scope not answered", "out_of_scope_rejected"),
        ("top-1 on ASR-like typos", "top1_asr"),
        ("resolved by one clarifying question (right entry named)", "clarify_resolved"),
        ("clarifying question, neither entry right", "clarify_neither"),
        ("answered or resolved by a clarifying question, right entry", "answered_or_resolved"),
        ("out-of-scope given a clarifying question", "out_of_scope_clarified"),
    ]
    first = results[labels[0]]["knowledge"]
    lines += [
        "",
        "## Knowledge",
        "",
        f"{first['entries']} entries, {first['in_scope']} in-scope and {first['out_of_scope']} out-of-scope "
        "questions; the configured confidence threshold of each run. Clarifying questions were first counted "
        "in session 9 (– before).",
        "",
        head,
    ]
    lines += [
        f"| {name} | " + " | ".join(_pct(results[x]["knowledge"].get(key)) for x in labels) + " |"
        for name, key in k_rows
    ]
    lines.append(
        "| threshold | "
        + " | ".join(str(results[x]["knowledge"]["threshold"]) for x in labels)
        + " |"
    )
    d = results[labels[0]]["dispatch"]
    lines += [
        "",
        "## Dispatch",
        "",
        f"Trained on {d['history']['samples']} history messages ({'、'.join(d['history']['labels'])}); "
        f"{d['messages']} set messages over {len(d['suggester']['categories'])} catalogue categories; "
        "labels with equal scores count with the chance that a random order puts the right one in the top k.",
        "",
        head,
    ]
    for method in ("suggester", "keywords_only"):
        for part, name in (
            ("macro", "all categories"),
            ("macro_history_categories", "history categories"),
        ):
            for k in ("top1", "top3"):
                lines.append(
                    f"| {method} macro {k}, {name} | "
                    + " | ".join(_pct(results[x]["dispatch"][method][part][k]) for x in labels)
                    + " |"
                )
    lines += [
        "",
        "Per category, suggester top-1 / top-3:",
        "",
        "| category | " + " | ".join(labels) + " |\n|---|" + "---|" * len(labels),
    ]
    for cat in d["suggester"]["categories"]:
        cells = [results[x]["dispatch"]["suggester"]["categories"][cat] for x in labels]
        lines.append(
            f"| {cat} | "
            + " | ".join(f"{_pct(c['top1'])} / {_pct(c['top3'])}" for c in cells)
            + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.devset_eval", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--label", default="current", help="name of this run in the results (before, after, …)"
    )
    parser.add_argument(
        "--history", type=Path, help="dispatch training history (default: the shared sample)"
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="folder for devset.json and devset.md"
    )
    args = parser.parse_args(argv)
    settings = load_settings()
    shared = Path(settings.shared_dir)
    history = (
        args.history or (shared if shared.is_absolute() else ROOT / shared).resolve() / HISTORY
    )
    record = {
        "run_at": datetime.now(ZoneInfo(settings.timezone)).isoformat(timespec="seconds"),
        "code": code_version(),
        "knowledge": knowledge_figures(settings, DEVSET),
        "dispatch": dispatch_figures(settings, history, DEVSET),
    }
    path = args.out / "devset.json"
    results = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    results[args.label] = record
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (args.out / "devset.md").write_text(markdown(results), encoding="utf-8")
    print(markdown({args.label: record}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
