"""Evaluation of retrieval on a set of caller phrasings (`hotline kb eval`).

Each line of the set is ``{"question": what a caller says, "expected": the entry's question or null}``
and optionally ``"split"`` (``tune`` / ``holdout``) and ``"asr_error": true``. ``expected: null`` means
the knowledge base has no answer, so the bot must not be confident.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from rank_bm25 import BM25Okapi

from knowledge.errors import ImportRejected, RowProblem
from knowledge.retrieval import Candidate, IndexedEntry


class Retriever(Protocol):
    def search(self, text: str, k: int | None = None) -> tuple[list[Candidate], float]: ...


@dataclass(frozen=True)
class EvalItem:
    question: str
    expected: str | None
    split: str = ""
    asr_error: bool = False


@dataclass(frozen=True)
class EvalFigures:
    """Shares in [0, 1]; ``confident_wrong`` counts every item (in and out of scope)."""

    items: int
    in_scope: int
    out_of_scope: int
    top1: float
    top3: float
    top1_asr: float | None
    confident_wrong: float
    answered: float  # in-scope items answered confidently and correctly
    out_of_scope_rejected: float  # out-of-scope items not answered confidently


def load_eval_set(path: Path) -> list[EvalItem]:
    items, problems = [], []
    for no, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if (
                not isinstance(row, dict)
                or not isinstance(row.get("question"), str)
                or "expected" not in row
            ):
                raise ValueError("每行需要 question 和 expected 字段")
            items.append(
                EvalItem(
                    row["question"],
                    row["expected"],
                    str(row.get("split", "")),
                    bool(row.get("asr_error", False)),
                )
            )
        except ValueError as exc:
            problems.append(RowProblem(no, str(exc)))
    if problems:
        raise ImportRejected(str(path), problems)
    return items


def _share(n: int, d: int) -> float:
    return n / d if d else 0.0


def evaluate(
    retriever: Retriever, items: Sequence[EvalItem], threshold: float | None
) -> EvalFigures:
    """Top-1/top-3 accuracy on in-scope items and the share of confident-but-wrong answers."""
    top1 = top3 = wrong = answered = rejected = asr = asr_hit = 0
    in_scope = [i for i in items if i.expected is not None]
    for item in items:
        found, score = retriever.search(item.question, 3)
        names = [c.entry.question for c in found]
        confident = threshold is not None and bool(found) and score >= threshold
        if item.expected is None:
            wrong += confident
            rejected += not confident
            continue
        hit = bool(names) and names[0] == item.expected
        top1 += hit
        top3 += item.expected in names
        wrong += confident and not hit
        answered += confident and hit
        if item.asr_error:
            asr += 1
            asr_hit += hit
    n_out = len(items) - len(in_scope)
    return EvalFigures(
        len(items),
        len(in_scope),
        n_out,
        _share(top1, len(in_scope)),
        _share(top3, len(in_scope)),
        _share(asr_hit, asr) if asr else None,
        _share(wrong, len(items)) if threshold is not None else float("nan"),
        _share(answered, len(in_scope)),
        _share(rejected, n_out),
    )


def evaluate_splits(
    retriever: Retriever, items: Sequence[EvalItem], threshold: float | None
) -> dict[str, EvalFigures]:
    """Figures for all items and for each split the set names."""
    out = {"all": evaluate(retriever, items, threshold)}
    for split in sorted({i.split for i in items if i.split}):
        out[split] = evaluate(retriever, [i for i in items if i.split == split], threshold)
    return out


def choose_threshold(
    retriever: Retriever, items: Sequence[EvalItem], max_confident_wrong: float
) -> float:
    """The lowest threshold whose confident-but-wrong share stays within the limit (answers the most)."""
    scored = []
    for item in items:
        found, score = retriever.search(item.question, 1)
        ok = item.expected is not None and bool(found) and found[0].entry.question == item.expected
        scored.append((score, ok))
    scored.sort(reverse=True)
    best = 1.0
    wrong = 0
    for i, (score, ok) in enumerate(scored):
        wrong += not ok
        if wrong / len(scored) > max_confident_wrong:
            break
        nxt = scored[i + 1][0] if i + 1 < len(scored) else 0.0
        if nxt < score:  # a threshold can only fall between distinct scores
            best = (score + nxt) / 2 if ok else best
    return round(best, 4)


def figures_json(figures: dict[str, EvalFigures]) -> dict[str, dict[str, Any]]:
    return {
        k: {n: (round(v, 4) if isinstance(v, float) else v) for n, v in asdict(f).items()}
        for k, f in figures.items()
    }


class CharBM25Baseline:
    """Plain BM25 over single characters, one document per entry (question + alternatives): the yardstick."""

    def __init__(self, entries: Iterable[IndexedEntry]) -> None:
        self.entries = list(entries)
        self._bm25 = BM25Okapi(
            [list("".join([e.question, *e.alt_questions])) for e in self.entries]
        )

    def search(self, text: str, k: int | None = None) -> tuple[list[Candidate], float]:
        scores = self._bm25.get_scores(list(text))
        order = sorted(range(len(self.entries)), key=lambda i: -scores[i])[: k or 3]
        return [Candidate(self.entries[i], float(scores[i]), 0.0, 0.0) for i in order], 0.0


def time_queries(retriever: Retriever, texts: Sequence[str], repeat: int = 3) -> float:
    """Mean milliseconds per query."""
    start = time.perf_counter()
    for _ in range(repeat):
        for text in texts:
            retriever.search(text)
    return (time.perf_counter() - start) * 1000 / (repeat * len(texts))
