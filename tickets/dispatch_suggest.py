"""Smart dispatch suggestions (智能派单): which department should take a citizen's message, and why.

A suggestion's score mixes the learned classifier's probability with the catalogue's keyword hits:
``(1 − w) · p(label) + w · share of the keyword hits that point to label``, with ``w`` =
``settings.dispatch.keyword_weight`` (when no keyword hits, the classifier alone decides). Without a trained
model the keyword shares alone rank the catalogue's categories, and ``why`` says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.settings import Settings
from tickets.dispatch_catalogue import Catalogue, CatalogueEntry, load_catalogue
from tickets.dispatch_errors import ModelFileError
from tickets.dispatch_model import DispatchModel, LabelKind, load_model

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
        return {"label": self.label, "department": self.department, "score": round(self.score, 4), "why": self.why}


class DispatchSuggester:
    """Load once (``from_settings``), then call :meth:`suggest` per message."""

    def __init__(self, catalogue: Catalogue, model: DispatchModel | None, keyword_weight: float, *,
                 model_problem: str | None = None) -> None:
        self.catalogue = catalogue
        self.model = model
        self.keyword_weight = keyword_weight
        self.model_problem = model_problem  # why a stored model could not be used (Chinese), if it could not
        self.label_kind: LabelKind = model.label_kind if model else "category"

    @classmethod
    def from_settings(cls, settings: Settings) -> DispatchSuggester:
        """The catalogue plus the stored model at ``settings.dispatch.model_path``, if one was trained.

        An unreadable model (e.g. after a scikit-learn upgrade) is logged as an error and the suggester falls
        back to catalogue keywords, saying so in every ``why``; a broken catalogue raises ``CatalogueError``.
        """
        catalogue = load_catalogue(settings)
        try:
            model = load_model(Path(settings.dispatch.model_path))
        except ModelFileError as exc:
            _log.error("%s; suggesting from catalogue keywords only", exc)
            return cls(catalogue, None, settings.dispatch.keyword_weight, model_problem=exc.message)
        if model is None:
            _log.info("no dispatch model at %s: suggesting from catalogue keywords only", settings.dispatch.model_path)
        return cls(catalogue, model, settings.dispatch.keyword_weight)

    def suggest(self, text: str, k: int = 3, *, district: str | None = None) -> list[Suggestion]:
        """Up to ``k`` suggestions for ``text``, best first; only departments serving ``district`` if given."""
        keywords = self._keyword_hits(text)
        out: list[Suggestion] = []
        for label, score in self._scores(text, keywords):
            entry = self._entry(label)
            if entry is None or (district is not None and not self.catalogue.serves(entry, district)):
                continue
            why = self._why(text, label, keywords.get(label, []))
            out.append(Suggestion(label, entry.department, score, why, entry))
            if len(out) == k:
                break
        return out

    def rank(self, text: str) -> list[str]:
        """Every label with a score above zero, best first (as :meth:`suggest`, without explanations)."""
        return [label for label, _ in self._scores(text, self._keyword_hits(text))]

    def _scores(self, text: str, keywords: dict[str, list[str]]) -> list[tuple[str, float]]:
        total_hits = sum(len(found) for found in keywords.values())
        shares = {label: len(found) / total_hits for label, found in keywords.items()}
        if self.model is None:
            scores = shares
        else:
            weight = self.keyword_weight if total_hits else 0.0
            probs = self.model.classifier.probabilities(text)
            scores = {label: (1 - weight) * probs.get(label, 0.0) + weight * shares.get(label, 0.0)
                      for label in probs.keys() | shares.keys()}
        return sorted(((label, score) for label, score in scores.items() if score > 0), key=lambda item: -item[1])

    def _keyword_hits(self, text: str) -> dict[str, list[str]]:
        """Label → catalogue keywords found in ``text``, labels in this suggester's kind."""
        out: dict[str, list[str]] = {}
        for category, found in self.catalogue.keyword_hits(text).items():
            entry = self.catalogue.by_category(category)
            label = category if self.label_kind == "category" or entry is None else entry.department
            bucket = out.setdefault(label, [])
            bucket.extend(k for k in found if k not in bucket)
        return out

    def _entry(self, label: str) -> CatalogueEntry | None:
        entry = self.catalogue.by_category(label) if self.label_kind == "category" else (
            self.catalogue.by_department(label))
        if entry is None:
            _log.warning("dispatch label %r is not in the catalogue any more: retrain the dispatch model", label)
        return entry

    def _why(self, text: str, label: str, keywords: list[str]) -> str:
        keyword_part = f"目录关键词：{'、'.join(keywords)}" if keywords else ""
        if self.model is None:
            reason = f"派单模型不可用：{self.model_problem}" if self.model_problem else "未训练派单模型"
            return f"{reason}，仅按派单目录关键词匹配（{keyword_part}）"
        terms = self.model.classifier.top_terms(text, label) if label in self.model.classifier.labels else []
        parts = [f"历史工单模型依据：{'、'.join(terms)}" if terms else "", keyword_part]
        return "；".join(p for p in parts if p) or "历史工单模型综合判断（无突出词语）"
