"""What the dispatch catalogue alone says about a message: a distribution over its categories (先验).

Each category is described by its name, keywords and one-sentence description. A message scores a category
lexically — the category's keywords found in it (weight 1) and the words of its name and description found in
it (weight ½), each weighted by how few categories share the word — and, when a sentence-embedding model is
available (``language.embeddings``), by meaning: the cosine between the message and the category's text or,
when higher, its closest example message (``examples``: how citizens say it, not how a description sums it up).
The evidence ``LEXICAL · words + SEMANTIC · cosine`` becomes a distribution by a softmax, so a category that no
history ever had still gets a share, and the suggester can fuse it with the learned model's probabilities.
Weights were chosen by cross-validation on the shared ticket history (`hotline dispatch eval`) and on tuning
messages of all catalogue categories: the tune split of tests/tickets/data/dispatch_colloquial.jsonl and
tests/tickets/data/dispatch_tune.jsonl (16 per category; the catalogue's extra examples and keywords of session 10
were chosen on these too, never on bench/devset).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from language.embeddings import Embedder
from tickets.dispatch_catalogue import Catalogue, CatalogueEntry
from tickets.dispatch_model import tokenize

LEXICAL = 1.0  # softmax weight of one distinctive keyword hit
SEMANTIC = 18.0  # softmax weight of the cosine between message and category text or example
DESCRIPTION_WORD = 0.5  # a word of the name or description counts half a keyword
# Words of descriptions that say nothing about a category.
_GENERIC = frozenset("问题 方面 事务 诉求 以及 等 和 与 的 其他 相关 管理 服务".split())


def _terms(entry: CatalogueEntry) -> dict[str, float]:
    """Term → base weight: keywords 1, other words (≥ 2 characters) of name and description ½."""
    terms = {k: 1.0 for k in entry.keywords}
    for word in tokenize(f"{entry.name} {entry.description}"):
        if len(word) >= 2 and word not in _GENERIC:
            terms.setdefault(word, DESCRIPTION_WORD)
    return terms


def category_text(entry: CatalogueEntry) -> str:
    """The text a category is embedded as: name, description, keywords."""
    return f"{entry.name}：{entry.description}关键词：{'、'.join(entry.keywords)}"


class CataloguePrior:
    """Build once per catalogue (it embeds the categories); :meth:`distribution` per message."""

    def __init__(self, catalogue: Catalogue, embedder: Embedder | None = None) -> None:
        self.names = tuple(e.name for e in catalogue.entries)
        raw = [_terms(e) for e in catalogue.entries]
        spread = Counter(term for terms in raw for term in terms)
        idf = {t: math.log(1 + len(raw) / n) for t, n in spread.items()}
        top = math.log(1 + len(raw))
        self._terms = [{t: w * idf[t] / top for t, w in terms.items()} for terms in raw]
        self.embedder = embedder
        texts = [(category_text(e), *e.examples) for e in catalogue.entries]
        self._starts = np.r_[0, np.cumsum([len(t) for t in texts])[:-1]].astype(int)
        self._vectors = embedder.encode([t for ts in texts for t in ts]) if embedder else None

    def words(self, text: str) -> np.ndarray:
        """Per category: the weighted catalogue words found in ``text``."""
        return np.array([sum(w for t, w in terms.items() if t in text) for terms in self._terms])

    def distribution(self, text: str) -> dict[str, float] | None:
        """Category → share (sum 1), or ``None`` when the catalogue has no evidence (no word found and no
        embedding model)."""
        evidence = LEXICAL * self.words(text)
        if self._vectors is None and not evidence.any():
            return None
        if self._vectors is not None and self.embedder is not None:
            cosines = self._vectors @ self.embedder.encode([text])[0]
            evidence = evidence + SEMANTIC * np.maximum.reduceat(cosines, self._starts)
        shares = np.exp(evidence - evidence.max())
        shares /= shares.sum()
        return dict(zip(self.names, (float(s) for s in shares), strict=True))
