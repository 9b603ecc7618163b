"""How well dispatch suggestions match a labelled history: top-1 / top-3 accuracy against baselines.

Measured on a stratified held-out split (fixed seed) and by stratified k-fold cross-validation, for the
suggester as configured (model + catalogue prior), the model alone, and two baselines measured in the same
run: the catalogue alone (keywords, names, descriptions; meaning too with an embedder) and the majority class
of the training part. "unseen" measures categories a history lacks: each label in turn is left out of training
and its messages are ranked by the suggester trained on the others (top-1 / top-3 per label and their mean).
A label counts as hit by any catalogue category it means.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from statistics import mean
from typing import Any

from sklearn.model_selection import StratifiedKFold, train_test_split

from language.embeddings import Embedder
from tickets.dispatch_catalogue import Catalogue
from tickets.dispatch_data import Example
from tickets.dispatch_model import MIN_EXAMPLES_PER_LABEL, DispatchModel
from tickets.dispatch_suggest import DispatchSuggester
from tickets.dispatch_training import categories_of, check_label_counts, label_kind_of, train_model

Ranker = Callable[[str], list[str]]  # text → labels, best first
METHODS = ("suggester", "model_only", "keywords_only", "majority")


def evaluate(
    examples: Sequence[Example],
    catalogue: Catalogue,
    *,
    keyword_weight: float,
    seed: int = 12345,
    test_share: float = 0.25,
    folds: int = 5,
    embedder: Embedder | None = None,
) -> dict[str, Any]:
    """Accuracy figures as a JSON-ready dict (no message texts in it)."""
    kind = label_kind_of(examples, catalogue)
    split = _Splitter(examples, catalogue, keyword_weight, embedder)
    # every training part (the held-out split's and each fold's) must still hold enough of each label
    check_label_counts(examples, max(folds, MIN_EXAMPLES_PER_LABEL + 1))
    labels = [e.label for e in examples]
    train_idx, test_idx = train_test_split(
        range(len(examples)), test_size=test_share, random_state=seed, stratify=labels
    )
    holdout = split.score(list(train_idx), list(test_idx))
    per_fold = [
        split.score(list(tr), list(te))
        for tr, te in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(
            labels, labels
        )
    ]
    kfold = {
        m: {k: round(mean(f[m][k] for f in per_fold), 4) for k in ("top1", "top3")} for m in METHODS
    }
    return {
        "data": {
            "samples": len(examples),
            "labels": dict(sorted(Counter(labels).items())),
            "label_kind": kind,
        },
        "settings": {"keyword_weight": keyword_weight, "seed": seed},
        "holdout": {"test_share": test_share, "test_samples": len(test_idx), "methods": holdout},
        "kfold": {"folds": folds, "methods": kfold},
        "unseen": split.unseen() if kind == "category" and len(set(labels)) > 2 else None,
        "ratios": {
            "holdout_top1_vs_majority": _ratio(
                holdout["suggester"]["top1"], holdout["majority"]["top1"]
            ),
            "holdout_top1_vs_keywords": _ratio(
                holdout["suggester"]["top1"], holdout["keywords_only"]["top1"]
            ),
            "kfold_top1_vs_majority": _ratio(kfold["suggester"]["top1"], kfold["majority"]["top1"]),
            "kfold_top1_vs_keywords": _ratio(
                kfold["suggester"]["top1"], kfold["keywords_only"]["top1"]
            ),
        },
    }


class _Splitter:
    """Trains on a part of the examples and scores the rest."""

    def __init__(
        self,
        examples: Sequence[Example],
        catalogue: Catalogue,
        keyword_weight: float,
        embedder: Embedder | None,
    ) -> None:
        self.examples, self.catalogue, self.weight, self.embedder = (
            examples,
            catalogue,
            keyword_weight,
            embedder,
        )
        kind = label_kind_of(examples, catalogue)
        self.expected = {
            e.label: set(categories_of(e.label, kind, catalogue))
            if kind == "category"
            else {e.label}
            for e in examples
        }

    def _suggester(self, model: DispatchModel | None, weight: float) -> DispatchSuggester:
        return DispatchSuggester(self.catalogue, model, weight, embedder=self.embedder)

    def score(self, train: list[int], test: list[int]) -> dict[str, dict[str, float]]:
        model = train_model([self.examples[i] for i in train], self.catalogue)
        counts = Counter(self.examples[i].label for i in train)
        majority = [label for label, _ in counts.most_common(3)]
        catalogue_only = self._suggester(None, self.weight)
        rankers: dict[str, Ranker] = {
            "suggester": self._suggester(model, self.weight).rank,
            "model_only": lambda text: _model_ranking(model, text),
            "keywords_only": catalogue_only.rank
            if model.label_kind == "category"
            else (
                lambda text: [
                    s.department for s in catalogue_only.suggest(text, len(self.catalogue.entries))
                ]
            ),
            "majority": lambda _text: majority,
        }
        return {
            name: self._accuracy(rank, [self.examples[i] for i in test])
            for name, rank in rankers.items()
        }

    def unseen(self) -> dict[str, Any]:
        """Per label: accuracy on its messages of the suggester trained on every other label."""
        per_label = {}
        for label in sorted(self.expected):
            train = [e for e in self.examples if e.label != label]
            held = [e for e in self.examples if e.label == label]
            suggester = self._suggester(train_model(train, self.catalogue), self.weight)
            per_label[label] = self._accuracy(suggester.rank, held)
        return {
            "labels": per_label,
            "mean": {k: round(mean(a[k] for a in per_label.values()), 4) for k in ("top1", "top3")},
        }

    def _accuracy(self, rank: Ranker, test: Sequence[Example]) -> dict[str, float]:
        ranked = [(rank(e.text), self.expected[e.label] | {e.label}) for e in test]
        return {
            "top1": round(sum(bool(set(r[:1]) & y) for r, y in ranked) / len(ranked), 4),
            "top3": round(sum(bool(set(r[:3]) & y) for r, y in ranked) / len(ranked), 4),
        }


def _model_ranking(model: DispatchModel, text: str) -> list[str]:
    probabilities = model.classifier.probabilities(text)
    return sorted(probabilities, key=lambda label: -probabilities[label])


def _ratio(value: float, baseline: float) -> float | None:
    return round(value / baseline, 3) if baseline else None
