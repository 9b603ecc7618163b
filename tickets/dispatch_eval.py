"""How well dispatch suggestions match a labelled history: top-1 / top-3 accuracy against baselines.

Measured on a stratified held-out split (fixed seed) and by stratified k-fold cross-validation, for the
suggester as configured (model + catalogue keywords), the model alone, and two baselines measured in the same
run: catalogue keywords alone and the majority class of the training part.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from statistics import mean
from typing import Any

from sklearn.model_selection import StratifiedKFold, train_test_split

from tickets.dispatch_catalogue import Catalogue
from tickets.dispatch_data import Example
from tickets.dispatch_model import MIN_EXAMPLES_PER_LABEL
from tickets.dispatch_suggest import DispatchSuggester
from tickets.dispatch_training import check_label_counts, label_kind_of, train_model

Ranker = Callable[[str], list[str]]  # text → labels, best first
METHODS = ("suggester", "model_only", "keywords_only", "majority")


def evaluate(examples: Sequence[Example], catalogue: Catalogue, *, keyword_weight: float, seed: int = 12345,
             test_share: float = 0.25, folds: int = 5) -> dict[str, Any]:
    """Accuracy figures as a JSON-ready dict (no message texts in it)."""
    kind = label_kind_of(examples, catalogue)
    # every training part (the held-out split's and each fold's) must still hold enough of each label
    check_label_counts(examples, max(folds, MIN_EXAMPLES_PER_LABEL + 1))
    labels = [e.label for e in examples]
    train_idx, test_idx = train_test_split(range(len(examples)), test_size=test_share, random_state=seed,
                                           stratify=labels)
    holdout = _score_split(examples, list(train_idx), list(test_idx), catalogue, keyword_weight)
    per_fold = [_score_split(examples, list(tr), list(te), catalogue, keyword_weight)
                for tr, te in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(labels, labels)]
    kfold = {m: {k: round(mean(f[m][k] for f in per_fold), 4) for k in ("top1", "top3")} for m in METHODS}
    return {
        "data": {"samples": len(examples), "labels": dict(sorted(Counter(labels).items())), "label_kind": kind},
        "settings": {"keyword_weight": keyword_weight, "seed": seed},
        "holdout": {"test_share": test_share, "test_samples": len(test_idx), "methods": holdout},
        "kfold": {"folds": folds, "methods": kfold},
        "ratios": {
            "holdout_top1_vs_majority": _ratio(holdout["suggester"]["top1"], holdout["majority"]["top1"]),
            "holdout_top1_vs_keywords": _ratio(holdout["suggester"]["top1"], holdout["keywords_only"]["top1"]),
            "kfold_top1_vs_majority": _ratio(kfold["suggester"]["top1"], kfold["majority"]["top1"]),
            "kfold_top1_vs_keywords": _ratio(kfold["suggester"]["top1"], kfold["keywords_only"]["top1"]),
        },
    }


def _score_split(examples: Sequence[Example], train: list[int], test: list[int], catalogue: Catalogue,
                 keyword_weight: float) -> dict[str, dict[str, float]]:
    model = train_model([examples[i] for i in train], catalogue)
    counts = Counter(examples[i].label for i in train)
    majority = [label for label, _ in counts.most_common(3)]
    keywords = DispatchSuggester(catalogue, None, keyword_weight)  # ranks categories
    rankers: dict[str, Ranker] = {
        "suggester": DispatchSuggester(catalogue, model, keyword_weight).rank,
        "model_only": DispatchSuggester(catalogue, model, 0.0).rank,
        "keywords_only": keywords.rank if model.label_kind == "category" else (
            lambda text: [s.department for s in keywords.suggest(text)]),
        "majority": lambda _text: majority,
    }
    return {name: _accuracy(rank, [examples[i] for i in test]) for name, rank in rankers.items()}


def _accuracy(rank: Ranker, test: Sequence[Example]) -> dict[str, float]:
    ranked = [(rank(e.text), e.label) for e in test]
    return {"top1": round(sum(r[:1] == [y] for r, y in ranked) / len(ranked), 4),
            "top3": round(sum(y in r[:3] for r, y in ranked) / len(ranked), 4)}


def _ratio(value: float, baseline: float) -> float | None:
    return round(value / baseline, 3) if baseline else None
