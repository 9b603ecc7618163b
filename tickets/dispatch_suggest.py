"""Smart dispatch suggestions (智能派单): which department should take a citizen's message, and why.

Two signals are fused per catalogue category ``c``:

- ``q(c)``, the catalogue prior (:mod:`tickets.dispatch_prior`: keywords, name and description, by words and,
  when the sentence-embedding model is available, by meaning);
- ``p(c)``, the learned model's probability of the history labels that mean ``c`` (a label meaning several
  categories is shared among them in proportion to ``q``).

``score(c) = (1 − w) · m(c) + w · q(c)`` with ``m(c) = p(c)`` for a category of the history and
``m(c) = q(c)`` for one it never had (the model knows nothing of it), ``w`` = ``settings.dispatch.keyword_weight``:
a category no history had can therefore win. (Scaling ``p`` by the prior's share of the history's categories
was tried: no better on the history's cross-validation, and worse on the history's own categories.)
When the catalogue has no evidence (no word found, no embedding model) the model alone decides; without a
trained model the prior alone ranks the categories. Equal scores keep the catalogue's order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.settings import Settings
from language.embeddings import Embedder, optional_embedder
from tickets.dispatch_catalogue import Catalogue, CatalogueEntry, load_catalogue
from tickets.dispatch_errors import ModelFileError
from tickets.dispatch_model import DispatchModel, LabelKind, load_model
from tickets.dispatch_prior import CataloguePrior

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Suggestion:
    """A proposed dispatch target, best first in a list."""

    label: str  # category (诉求分类) or department, as the model was trained
    department: str  # 承办单位
    score: float  # 0–1
    why: str  # Chinese: the words that drove it
    entry: CatalogueEntry  # the catalogue entry: responsible leader and person, areas

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "department": self.department,
            "score": round(self.score, 4),
            "why": self.why,
        }


class DispatchSuggester:
    """Load once (``from_settings``), then call :meth:`suggest` per message."""

    def __init__(
        self,
        catalogue: Catalogue,
        model: DispatchModel | None,
        keyword_weight: float,
        *,
        embedder: Embedder | None = None,
        model_problem: str | None = None,
    ) -> None:
        self.catalogue = catalogue
        self.model = model
        self.keyword_weight = keyword_weight
        self.model_problem = (
            model_problem  # why a stored model could not be used (Chinese), if it could not
        )
        self.label_kind: LabelKind = model.label_kind if model else "category"
        self.prior = CataloguePrior(catalogue, embedder)
        self._order = {e.name: n for n, e in enumerate(catalogue.entries)}

    @classmethod
    def from_settings(cls, settings: Settings) -> DispatchSuggester:
        """The catalogue plus the stored model at ``settings.dispatch.model_path``, if one was trained, and
        the sentence-embedding model of ``settings.language`` when it can be loaded.

        An unreadable model (e.g. after a scikit-learn upgrade) is logged as an error and the suggester falls
        back to the catalogue, saying so in every ``why``; a broken catalogue raises ``CatalogueError``.
        """
        catalogue = load_catalogue(settings)
        embedder = optional_embedder(settings.language.embedding_model)
        try:
            model = load_model(Path(settings.dispatch.model_path))
        except ModelFileError as exc:
            _log.error("%s; suggesting from the catalogue only", exc)
            return cls(
                catalogue,
                None,
                settings.dispatch.keyword_weight,
                embedder=embedder,
                model_problem=exc.message,
            )
        if model is None:
            _log.info(
                "no dispatch model at %s: suggesting from the catalogue only",
                settings.dispatch.model_path,
            )
        return cls(catalogue, model, settings.dispatch.keyword_weight, embedder=embedder)

    def suggest(self, text: str, k: int = 3, *, district: str | None = None) -> list[Suggestion]:
        """Up to ``k`` suggestions for ``text``, best first; only departments serving ``district`` if given."""
        keywords = self.catalogue.keyword_hits(text)
        out: list[Suggestion] = []
        for label, score in self._scores(text):
            entry = self._entry(label)
            if entry is None or (
                district is not None and not self.catalogue.serves(entry, district)
            ):
                continue
            out.append(
                Suggestion(label, entry.department, score, self._why(text, label, keywords), entry)
            )
            if len(out) == k:
                break
        return out

    def rank(self, text: str) -> list[str]:
        """Every label with a score above zero, best first (as :meth:`suggest`, without explanations)."""
        return [label for label, _ in self._scores(text)]

    def _scores(self, text: str) -> list[tuple[str, float]]:
        """Labels with a score above zero, best first; equal scores in catalogue order."""
        by_category = self._category_scores(text)
        if self.label_kind == "department":
            totals: dict[str, float] = {}
            for category, score in by_category.items():
                department = self.catalogue.entries[self._order[category]].department
                totals[department] = totals.get(department, 0.0) + score
            scores, order = (
                totals,
                {e.department: self._order[e.name] for e in reversed(self.catalogue.entries)},
            )
        else:
            scores, order = by_category, self._order
        return sorted(
            ((label, score) for label, score in scores.items() if score > 0),
            key=lambda item: (-item[1], order[item[0]]),
        )

    def _category_scores(self, text: str) -> dict[str, float]:
        prior = self.prior.distribution(text)
        if self.model is None:
            if prior is None:
                return {}
            found = self.prior.words(text) > 0
            semantic = self.prior.embedder is not None
            return {c: q for n, (c, q) in enumerate(prior.items()) if semantic or found[n]}
        learned = self._learned(self.model, text, prior)
        if prior is None:
            return learned
        w = self.keyword_weight
        return {c: (1 - w) * learned.get(c, q) + w * q for c, q in prior.items()}

    def _learned(
        self, model: DispatchModel, text: str, prior: dict[str, float] | None
    ) -> dict[str, float]:
        """Category → the model's probability of it (a label's probability shared among its categories in
        proportion to the prior; evenly without one)."""
        out: dict[str, float] = {}
        for label, p in model.classifier.probabilities(text).items():
            categories = [c for c in model.categories.get(label, ()) if c in self._order]
            weights = [prior[c] if prior else 1.0 for c in categories]
            total = sum(weights)
            for category, weight in zip(categories, weights, strict=True):
                out[category] = out.get(category, 0.0) + p * weight / total
        return out

    def _entry(self, label: str) -> CatalogueEntry | None:
        entry = (
            self.catalogue.by_category(label)
            if self.label_kind == "category"
            else (self.catalogue.by_department(label))
        )
        if entry is None:
            _log.warning(
                "dispatch label %r is not in the catalogue any more: retrain the dispatch model",
                label,
            )
        return entry

    def _why(self, text: str, label: str, keywords: dict[str, list[str]]) -> str:
        categories = (
            [label]
            if self.label_kind == "category"
            else [e.name for e in self.catalogue.entries if e.department == label]
        )
        found = list(dict.fromkeys(k for c in categories for k in keywords.get(c, [])))
        keyword_part = f"目录关键词：{'、'.join(found)}" if found else ""
        catalogue_part = "、".join(
            p for p in (keyword_part, "分类说明语义相近" if self.prior.embedder else "") if p
        )
        if self.model is None:
            reason = (
                f"派单模型不可用：{self.model_problem}" if self.model_problem else "未训练派单模型"
            )
            return f"{reason}，仅按派单目录匹配（{catalogue_part}）"
        labels = [h for h, cs in self.model.categories.items() if set(cs) & set(categories)]
        if not labels:
            return f"历史工单中没有此类，按派单目录判断（{catalogue_part}）"
        terms = list(
            dict.fromkeys(t for h in labels for t in self.model.classifier.top_terms(text, h))
        )[:3]
        parts = (f"历史工单模型依据：{'、'.join(terms)}" if terms else "", keyword_part)
        return "；".join(p for p in parts if p) or "历史工单模型综合判断（无突出词语）"
