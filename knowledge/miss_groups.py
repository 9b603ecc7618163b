"""Questions the bot could not match, grouped by similarity, so an editor settles each kind of question once.

Similarity is one function, :class:`Similarity`: today lexical (content words and fuzzy-pinyin syllable pairs of
:class:`~knowledge.analysis.Analyzer`, TF-IDF weighted, cosine), so 「社保卡丢了咋补办」 and 「设保卡掉了怎么补」
meet; a sentence-embedding model can take its place behind the same method. Grouping is greedy average
linkage: each question (newest first) joins the group it is most similar to on average when that reaches the
threshold, else starts a new one.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np
from scipy import sparse

from config import Settings
from knowledge.analysis import Analyzer
from knowledge.lexicon import lexicon_from_settings
from knowledge.models import KnowledgeMiss

MAX_EXAMPLES = 5


class Similarity(Protocol):
    def similarities(self, texts: Sequence[str]) -> np.ndarray:
        """The ``len(texts)`` × ``len(texts)`` matrix of similarities in [0, 1] (1 on the diagonal)."""
        ...


class LexicalSimilarity:
    """Cosine of TF-IDF vectors of content words and fuzzy-pinyin syllable pairs (homophones merged)."""

    def __init__(self, analyzer: Analyzer) -> None:
        self.analyzer = analyzer

    def _tokens(self, text: str) -> list[str]:
        found = self.analyzer.analyse(text)
        return [f"w:{w}" for w in found.words] + [f"s:{p}" for p in found.sound_pairs]

    def similarities(self, texts: Sequence[str]) -> np.ndarray:
        docs = [Counter(self._tokens(t)) for t in texts]
        vocab: dict[str, int] = {}
        rows, cols, counts = [], [], []
        for d, bag in enumerate(docs):
            for token, n in bag.items():
                rows.append(d)
                cols.append(vocab.setdefault(token, len(vocab)))
                counts.append(n)
        if not vocab:
            return np.eye(len(texts))
        df = np.bincount(cols, minlength=len(vocab))
        idf = np.log((1 + len(texts)) / (1 + df)) + 1.0
        weights = (1 + np.log(np.asarray(counts, float))) * idf[cols]
        matrix = sparse.csr_matrix((weights, (rows, cols)), shape=(len(texts), len(vocab)))
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
        matrix = sparse.diags(1 / np.where(norms > 0, norms, 1)) @ matrix
        sims = np.asarray((matrix @ matrix.T).todense())
        np.fill_diagonal(sims, 1.0)
        return np.clip(sims, 0.0, 1.0)


@dataclass(frozen=True)
class MissGroup:
    """Similar misses: ``question`` is the most typical one (offered as the alternative question)."""

    miss_ids: list[int]
    question: str
    examples: list[str]  # distinct wordings, most typical first
    best_entry_id: int | None  # the entry the bot found closest most often (preselected)
    candidate_entry_ids: list[int]  # every closest entry of the group, most often first
    latest: datetime

    @property
    def count(self) -> int:
        return len(self.miss_ids)


def group_misses(
    misses: Sequence[KnowledgeMiss], similarity: Similarity, threshold: float
) -> list[MissGroup]:
    """``misses`` (newest first) in groups of similar questions, the largest first, then the latest."""
    if not misses:
        return []
    sims = similarity.similarities([m.question_text for m in misses])
    groups: list[list[int]] = []
    for i in range(len(misses)):
        mean = [float(sims[i, members].mean()) for members in groups]
        best = int(np.argmax(mean)) if mean else -1
        if best >= 0 and mean[best] >= threshold:
            groups[best].append(i)
        else:
            groups.append([i])
    found = [
        _group([misses[i] for i in members], sims[np.ix_(members, members)]) for members in groups
    ]
    return sorted(found, key=lambda g: (-g.count, -g.latest.timestamp()))


def _group(members: list[KnowledgeMiss], sims: np.ndarray) -> MissGroup:
    centrality = sims.mean(axis=1)
    order = sorted(range(len(members)), key=lambda i: (-round(float(centrality[i]), 6), i))
    examples: list[str] = []
    for i in order:
        if members[i].question_text not in examples:
            examples.append(members[i].question_text)
    entries = Counter(m.best_entry_id for m in members if m.best_entry_id is not None)
    candidates = [e for e, _ in entries.most_common()]
    return MissGroup(
        miss_ids=[m.id for m in members],
        question=examples[0],
        examples=examples[:MAX_EXAMPLES],
        best_entry_id=candidates[0] if candidates else None,
        candidate_entry_ids=candidates,
        latest=max(m.at for m in members),
    )


class MissGrouper:
    """Groups misses with the similarity of the settings' lexicon, built on first use (the word segmenter's
    dictionary takes a moment to load); thread-safe, so it can run in a worker thread."""

    def __init__(self, make_similarity: Callable[[], Similarity], threshold: float) -> None:
        self._make_similarity = make_similarity
        self._similarity: Similarity | None = None
        self._lock = threading.Lock()
        self.threshold = threshold

    @classmethod
    def from_settings(cls, settings: Settings) -> MissGrouper:
        return cls(
            lambda: LexicalSimilarity(Analyzer(lexicon_from_settings(settings))),
            settings.knowledge.miss_group_similarity,
        )

    def group(self, misses: Sequence[KnowledgeMiss]) -> list[MissGroup]:
        with self._lock:
            if self._similarity is None:
                self._similarity = self._make_similarity()
        return group_misses(misses, self._similarity, self.threshold)
