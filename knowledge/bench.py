"""Figures of `hotline kb eval --out`: accuracy per split, the character-BM25 baseline and query time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from knowledge.evaluation import (
    CharBM25Baseline,
    EvalItem,
    choose_threshold,
    evaluate_splits,
    figures_json,
    time_queries,
)
from knowledge.retrieval import IndexedEntry, KnowledgeIndex

SCALE_ENTRIES = 1000


def scaled(entries: Sequence[IndexedEntry], n: int) -> list[IndexedEntry]:
    """``n`` entries made by repeating ``entries`` with numbered questions and answers (for timing at scale:
    every text distinct, so each is embedded)."""
    out = []
    for i in range(n):
        e = entries[i % len(entries)]
        tag = f"第{i // len(entries) + 1}类"
        alts = tuple(q + tag for q in e.alt_questions)
        out.append(
            replace(
                e,
                id=i + 1,
                question=e.question + tag,
                alt_questions=alts,
                answer_speech=e.answer_speech + tag,
            )
        )
    return out


def run(
    index: KnowledgeIndex,
    entries: Sequence[IndexedEntry],
    items: Sequence[EvalItem],
    *,
    tune_limit: float = 0.02,
) -> dict[str, Any]:
    """Evaluate at the configured threshold; also report the threshold the tuning split would choose."""
    tune = [i for i in items if i.split == "tune"]
    texts = [i.question for i in items]
    baseline = CharBM25Baseline(entries)
    big = KnowledgeIndex(
        index.analyzer.lexicon,
        embedder=index.embedder,
        confidence_threshold=index.confidence_threshold,
    )
    big.refresh(scaled(entries, SCALE_ENTRIES), reuse=index)
    ours = figures_json(evaluate_splits(index, items, index.confidence_threshold))
    base = figures_json(evaluate_splits(baseline, items, None))
    return {
        "entries": len(entries),
        "threshold": index.confidence_threshold,
        "threshold_chosen_on_tune": choose_threshold(index, tune, tune_limit) if tune else None,
        "retrieval": ours,
        "baseline_char_bm25": {
            k: {n: v[n] for n in ("in_scope", "top1", "top3", "top1_asr")} for k, v in base.items()
        },
        "top1_ratio_vs_baseline": {
            k: round(ours[k]["top1"] / base[k]["top1"], 4) if base[k]["top1"] else None
            for k in ours
        },
        "ms_per_query": round(time_queries(index, texts), 3),
        f"ms_per_query_{SCALE_ENTRIES}_entries": round(time_queries(big, texts), 3),
        "baseline_ms_per_query": round(time_queries(baseline, texts), 3),
    }
