"""In-memory retrieval over the published entries, robust to ASR errors and colloquial speech.

Every entry is indexed as several short documents: its question, each alternative question and its
keywords. A query is matched lexically on content words (jieba, synonyms merged) and fuzzy pinyin
syllables (homophones merged), each scored with BM25; for the best document of each entry the index also
measures how much of that document the caller's words cover. When a sentence-embedding model is
available (``language.embeddings``), the meaning is matched too: the cosine between the query and each
phrasing of an entry (its question and alternatives), the best phrasing counting, and the cosine between
the query and the entry's spoken answer (a caller's situation is often told in the answer's words, not the
question's). The ranking mixes them; without the model it is lexical alone. The confidence ``score`` in
[0, 1] combines the match with the margin over the best other entry, so a query that fits two entries
about equally well is not answered confidently; when the caller probably means one of the best two (their
pair's own calibrated probability reaches ``clarify_threshold``), the runner-up goes with the answer
(``alternatives``) for the bot to ask which one the caller means. A follow-up question (追问) is asked in the
context of the answer before (:meth:`KnowledgeIndex.ask` with ``context``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from config import Settings
from knowledge.analysis import Analysis, Analyzer
from knowledge.lexicon import Lexicon, lexicon_from_settings
from language.embeddings import Embedder, optional_embedder

K1 = 1.2
B = 0.75
# weight of each token stream in the ranking
CHANNELS = {"words": 1.0, "sound_pairs": 1.0, "sounds": 1.0, "chars": 1.0}
# Logistic calibration of the confidence score: fitted (scikit-learn LogisticRegression) on the tuning
# half of tests/knowledge/data/paraphrases.jsonl plus leave-one-phrasing-out queries of the sample
# knowledge base; never on the held-out half.
CALIBRATION = {"bias": -2.46, "coverage": 3.09, "explained": 1.77, "margin": 7.39}
# share of the whole-entry match (all its phrasings together) against its best single phrasing
ENTRY_SHARE = 0.7
# With the embedding model: the ranking is (1 - SEMANTIC_SHARE) × lexical relevance (scaled so the best entry
# has 1) + SEMANTIC_SHARE × cosine to the closest phrasing + ANSWER_SHARE × cosine to the spoken answer (shares
# chosen on the tune splits of tests/knowledge/data/paraphrases.jsonl and colloquial.jsonl, the latter also
# against the sample with its questions alone, as a knowledge base written from statutes has no alternatives).
# The confidence has the terms of SEMANTIC_CALIBRATION, fitted (logistic regression) on the same tune splits
# plus, at weight 0.3, every third sample question asked with its entry removed (must not be answered); its bias
# is shifted so that the configured threshold (0.82) is the one the questions-alone tune split chooses for at most
# 1 % confident-but-wrong (new callers' wording is answered worse than tuning data: a margin under the 2 % limit).
# An entry no word matches is a candidate only from SEMANTIC_FLOOR.
SEMANTIC_SHARE = 0.6
ANSWER_SHARE = 0.3
SEMANTIC_CALIBRATION = {
    "bias": -5.12,
    "coverage": 4.67,
    "explained": -2.33,
    "margin": 4.73,
    "similarity": 5.64,
    "similarity_margin": 9.23,
}
SEMANTIC_FLOOR = 0.5
# The probability that the caller means one of the first two entries when the first alone is not confident
# (logistic): fitted on the same tune splits (questions the first alone does not answer confidently; a hit when
# the expected entry is one of the two), with the embedding model (PAIR_CALIBRATION) and without it
# (LEXICAL_PAIR_CALIBRATION). "alone" is the confidence in an entry were the other of the two not there.
PAIR_CALIBRATION = {
    "bias": -3.35,
    "score": 1.97,
    "first_alone": 1.72,
    "second_alone": 1.13,
    "similarity": 0.91,
    "second_similarity": 0.57,
    "coverage": 0.75,
    "second_coverage": 1.12,
}
LEXICAL_PAIR_CALIBRATION = {
    "bias": -2.19,
    "score": 0.83,
    "first_alone": 0.8,
    "second_alone": 1.24,
    "coverage": 1.83,
    "second_coverage": 1.99,
}
EMBED_BATCH = 512  # phrasings embedded at a time while building (bounds the transient memory)
# A follow-up (追问) is short; a longer sentence is a new question. Its own answer and the one in the context of
# the answer before compete; an entry of the same topic (承办单位) as that answer ranks higher by TOPIC_BONUS.
FOLLOW_UP_MAX_CHARS = 12
TOPIC_BONUS = 0.1
_NOT_SPOKEN = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class IndexedEntry:
    """What retrieval needs of an entry (a plain value, independent of the database session)."""

    id: int
    question: str
    answer_speech: str
    answer_text: str
    department: str = ""
    alt_questions: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class Candidate:
    entry: IndexedEntry
    relevance: float  # ranking score (unbounded)
    coverage: float  # share of the best-matching phrasing's information found in the query, 0–1
    explained: float  # share of the query's information found in that phrasing, 0–1
    similarity: float = (
        0.0  # cosine of the query and the entry's closest phrasing (0 without the model)
    )


@dataclass(frozen=True)
class Answer:
    """The bot's answer; ``answer_id`` is None when nothing matched at all."""

    answer_id: int | None
    question: str
    answer: str  # for speech (TTS)
    answer_text: str
    department: str
    score: float
    confident: bool
    # not confident, but the first two entries are close and each plausible: the bot asks which one is meant
    alternatives: tuple[Candidate, ...] = ()

    @property
    def clarifies(self) -> bool:
        """Whether the bot asks the caller which of two entries is meant (「您是想问A，还是B？」)."""
        return not self.confident and bool(self.alternatives)

    @classmethod
    def of(
        cls,
        entry: IndexedEntry,
        score: float,
        confident: bool,
        alternatives: tuple[Candidate, ...] = (),
    ) -> Answer:
        return cls(
            answer_id=entry.id,
            question=entry.question,
            answer=entry.answer_speech,
            answer_text=entry.answer_text,
            department=entry.department,
            score=score,
            confident=confident,
            alternatives=alternatives,
        )

    def to_json(self) -> dict[str, object]:
        """The answer's fields; ``alternatives`` (id and question of each) only when there are any."""
        out: dict[str, object] = {
            "answer_id": self.answer_id,
            "question": self.question,
            "answer": self.answer,
            "department": self.department,
            "score": round(self.score, 4),
            "confident": self.confident,
        }
        if self.alternatives:
            out["alternatives"] = [
                {"answer_id": c.entry.id, "question": c.entry.question} for c in self.alternatives
            ]
        return out


NO_ANSWER = Answer(
    answer_id=None,
    question="",
    answer="",
    answer_text="",
    department="",
    score=0.0,
    confident=False,
)


class _Channel:
    """BM25 over one token stream, stored term by term (postings) so a query touches only its own terms."""

    def __init__(self, docs: Sequence[Sequence[str]]) -> None:
        self.vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        tfs: list[int] = []
        lengths = np.zeros(len(docs))
        for d, tokens in enumerate(docs):
            lengths[d] = len(tokens)
            counts: dict[int, int] = {}
            for tok in tokens:
                t = self.vocab.setdefault(tok, len(self.vocab))
                counts[t] = counts.get(t, 0) + 1
            rows.extend([d] * len(counts))
            cols.extend(counts)
            tfs.extend(counts.values())
        self.n_docs = len(docs)
        term = np.asarray(cols, int)
        doc = np.asarray(rows, int)
        tf = np.asarray(tfs, float)
        df = np.bincount(term, minlength=len(self.vocab)).astype(float)
        self.idf = np.log((max(self.n_docs, 1) - df + 0.5) / (df + 0.5) + 1.0)
        self.unseen_idf = math.log((max(self.n_docs, 1) + 0.5) / 0.5 + 1.0)
        avg = float(lengths.mean()) if self.n_docs and lengths.mean() > 0 else 1.0
        norm = K1 * (1 - B + B * lengths / avg)
        order = np.argsort(term, kind="stable")
        self.post_doc = doc[order]
        self.post_idf = self.idf[term][order]
        self.post_bm25 = self.post_idf * tf[order] * (K1 + 1) / (tf[order] + norm[doc[order]])
        self.starts = np.searchsorted(term[order], np.arange(len(self.vocab) + 1))
        self.doc_mass = np.bincount(doc, weights=self.idf[term], minlength=self.n_docs)

    def match(self, tokens: Iterable[str]) -> tuple[np.ndarray, np.ndarray, float]:
        """(BM25 per document, matched IDF mass per document, the query's own IDF mass)."""
        spans, query_mass = [], 0.0
        for tok in set(tokens):
            t = self.vocab.get(tok)
            if t is None:
                query_mass += self.unseen_idf
            else:
                spans.append(np.arange(self.starts[t], self.starts[t + 1]))
                query_mass += self.idf[t]
        if not spans:
            zero = np.zeros(self.n_docs)
            return zero, zero, query_mass
        sel = np.concatenate(spans)
        docs = self.post_doc[sel]
        bm25 = np.bincount(docs, weights=self.post_bm25[sel], minlength=self.n_docs)
        matched = np.bincount(docs, weights=self.post_idf[sel], minlength=self.n_docs)
        return bm25, matched, query_mass


class _Meanings:
    """The embedding of every phrasing (question and alternatives) of every entry, one row each, and of
    every entry's spoken answer."""

    def __init__(
        self, embedder: Embedder, entries: Sequence[IndexedEntry], known: dict[str, np.ndarray]
    ) -> None:
        self.embedder = embedder
        phrasings = [t for e in entries for t in (e.question, *e.alt_questions)]
        self.texts = phrasings + [e.answer_speech for e in entries]
        sizes = np.asarray([1 + len(e.alt_questions) for e in entries], int)
        self.starts = np.r_[0, np.cumsum(sizes)[:-1]].astype(int)
        self.answers_at = len(phrasings)
        self.vectors = np.empty((len(self.texts), embedder.dim), np.float32)
        new: dict[str, list[int]] = {}
        for row, text in enumerate(self.texts):
            if text in known:
                self.vectors[row] = known[text]
            else:
                new.setdefault(text, []).append(row)
        texts = list(new)
        for at in range(0, len(texts), EMBED_BATCH):
            for text, vector in zip(
                texts[at : at + EMBED_BATCH],
                embedder.encode(texts[at : at + EMBED_BATCH]),
                strict=True,
            ):
                self.vectors[new[text]] = vector

    def known(self) -> dict[str, np.ndarray]:
        return dict(zip(self.texts, self.vectors, strict=True))

    def similarity(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Per entry, the cosine of ``text`` and its closest phrasing, and of ``text`` and its answer."""
        if not self.texts:
            return np.zeros(0), np.zeros(0)
        cosines = (self.vectors @ self.embedder.encode([text])[0]).astype(float)
        phrasings = cosines[: self.answers_at]
        return np.maximum.reduceat(phrasings, self.starts), cosines[self.answers_at :]


class KnowledgeIndex:
    """Answers questions from the published entries; rebuild it with :meth:`refresh` when they change."""

    def __init__(
        self,
        lexicon: Lexicon,
        *,
        embedder: Embedder | None = None,
        confidence_threshold: float = 0.5,
        top_k: int = 3,
        clarify_threshold: float = 1.0,
    ) -> None:
        self.analyzer = Analyzer(lexicon)
        self.embedder = embedder
        self.confidence_threshold = confidence_threshold
        self.clarify_threshold = clarify_threshold
        self.top_k = top_k
        self._meanings: _Meanings | None = None
        self.refresh(())

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        entries: Iterable[IndexedEntry] = (),
        *,
        previous: KnowledgeIndex | None = None,
    ) -> KnowledgeIndex:
        """An index of ``entries``; phrasings ``previous`` already embedded are not embedded again."""
        index = cls(
            lexicon_from_settings(settings),
            embedder=optional_embedder(settings.language.embedding_model),
            confidence_threshold=settings.knowledge.confidence_threshold,
            top_k=settings.knowledge.top_k,
            clarify_threshold=settings.knowledge.clarify_threshold,
        )
        index.refresh(entries, reuse=previous)
        return index

    def __len__(self) -> int:
        return len(self._entries)

    def refresh(
        self, entries: Iterable[IndexedEntry], *, reuse: KnowledgeIndex | None = None
    ) -> None:
        """Rebuild the index from these entries (the published ones valid today); the embeddings of phrasings
        this index or ``reuse`` already holds are kept."""
        entries = list(entries)
        self.analyzer.add_words(kw for e in entries for kw in e.keywords)
        variants: list[Analysis] = []
        owner: list[int] = []
        per_entry: list[list[Analysis]] = []
        for i, entry in enumerate(entries):
            texts = [entry.question, *entry.alt_questions]
            if entry.keywords:
                texts.append("".join(entry.keywords))
            found = [self.analyzer.analyse(text) for text in texts]
            per_entry.append(found)
            variants.extend(found)
            owner.extend([i] * len(found))
        if self.embedder is not None:
            known = {**(reuse._known() if reuse is not None else {}), **self._known()}
            self._meanings = _Meanings(self.embedder, entries, known)
        self._entries = entries
        self._owner = np.asarray(owner, int)
        self._starts = (
            np.flatnonzero(np.r_[True, self._owner[1:] != self._owner[:-1]])
            if owner
            else np.zeros(0, int)
        )
        self._variant = {c: _Channel([getattr(a, c) for a in variants]) for c in CHANNELS}
        self._entry = {
            c: _Channel([[t for a in found for t in getattr(a, c)] for found in per_entry])
            for c in CHANNELS
        }
        self._vocabulary = sorted(
            {w for a in variants for w in a.words if len(w) >= 2}
            | {k for e in entries for k in e.keywords}
        )

    def _known(self) -> dict[str, np.ndarray]:
        if self._meanings is None or self._meanings.embedder is not self.embedder:
            return {}
        return self._meanings.known()

    def entries(self) -> list[IndexedEntry]:
        return list(self._entries)

    def vocabulary(self) -> list[str]:
        """Domain terms of the indexed entries (hot words for the speech recogniser)."""
        return list(self._vocabulary)

    def search(self, text: str, k: int | None = None) -> tuple[list[Candidate], float]:
        """The best ``k`` entries for ``text`` and the confidence score of the first one."""
        k = k or self.top_k
        if not self._entries or not text.strip():
            return [], 0.0
        relevance, coverage, explained = self._lexical(text)
        similarity = None
        if self._meanings is not None:
            similarity, answer_similarity = self._meanings.similarity(text)
            matched = (relevance > 0) | (similarity >= SEMANTIC_FLOOR)
            relevance = (
                (1 - SEMANTIC_SHARE) * relevance / max(float(relevance.max()), 1e-9)
                + SEMANTIC_SHARE * similarity
                + ANSWER_SHARE * answer_similarity
            )
        else:
            matched = relevance > 0
        order = [i for i in np.argsort(-relevance, kind="stable") if matched[i]][: max(k, 2)]
        found = [
            Candidate(
                self._entries[i],
                float(relevance[i]),
                float(coverage[i]),
                float(explained[i]),
                float(similarity[i]) if similarity is not None else 0.0,
            )
            for i in order
        ]
        if similarity is None or not found:
            return found[:k], self._confidence(found, None)
        others = np.delete(similarity, order[0])
        return found[:k], self._confidence(
            found, found[0].similarity - float(others.max(initial=0.0))
        )

    def _lexical(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per entry: BM25 relevance, and coverage and explained share of its best-matching phrasing."""
        query = self.analyzer.analyse(text)
        variant_rel = np.zeros(len(self._owner))
        entry_rel = np.zeros(len(self._entries))
        hits, said = {}, {}
        for channel, weight in CHANNELS.items():
            tokens = getattr(query, channel)
            bm25, hit, mass = self._variant[channel].match(tokens)
            variant_rel += weight * bm25 / max(mass, 1e-9)
            hits[channel] = hit / np.maximum(self._variant[channel].doc_mass, 1e-9)
            said[channel] = hit / max(mass, 1e-9)
            bm25, _, mass = self._entry[channel].match(tokens)
            entry_rel += weight * bm25 / max(mass, 1e-9)
        coverage = 0.5 * (hits["words"] + hits["sound_pairs"])
        explained = 0.5 * (said["words"] + said["sound_pairs"])
        best_doc = _argmax_per_group(variant_rel, self._starts)
        relevance = ENTRY_SHARE * entry_rel + (1 - ENTRY_SHARE) * variant_rel[best_doc]
        return relevance, coverage[best_doc], explained[best_doc]

    @staticmethod
    def _confidence(found: list[Candidate], similarity_margin: float | None) -> float:
        """Estimated probability that the first candidate is the right answer (logistic, see CALIBRATION, and
        SEMANTIC_CALIBRATION when ``similarity_margin``, the first's cosine less the best other's, is known)."""
        if not found:
            return 0.0
        top = found[0]
        runner_up = found[1].relevance if len(found) > 1 else 0.0
        margin = (top.relevance - runner_up) / max(top.relevance, 1e-9)
        features = {"coverage": top.coverage, "explained": top.explained, "margin": margin}
        weights = CALIBRATION
        if similarity_margin is not None:
            weights = SEMANTIC_CALIBRATION
            features |= {"similarity": top.similarity, "similarity_margin": similarity_margin}
        return _logistic(weights, features)

    def _standalone(self, found: list[Candidate], i: int, absent: set[int]) -> float:
        """The confidence in ``found[i]`` were the candidates at the positions ``absent`` not there."""
        others = [c for j, c in enumerate(found) if j != i and j not in absent]
        margin = None
        if self._meanings is not None:
            margin = found[i].similarity - max((c.similarity for c in others), default=0.0)
        return self._confidence([found[i], *others], margin)

    def _clarifying(self, found: list[Candidate], score: float) -> tuple[Candidate, ...]:
        """The runner-up, when the bot should ask which of the first two entries is meant (the first, with
        confidence ``score``, is not answered alone): their pair is at least ``clarify_threshold`` likely to hold
        the one meant (:meth:`_pair_confidence`). Otherwise nothing."""
        if len(found) < 2 or self.clarify_threshold >= 1:
            return ()
        return (found[1],) if self._pair_confidence(found, score) >= self.clarify_threshold else ()

    def _pair_confidence(self, found: list[Candidate], score: float) -> float:
        """Estimated probability that the caller means the first or the second candidate (logistic, see
        PAIR_CALIBRATION)."""
        first, second = found[0], found[1]
        features = {
            "score": score,
            "first_alone": self._standalone(found, 0, {1}),
            "second_alone": self._standalone(found, 1, {0}),
            "coverage": first.coverage,
            "second_coverage": second.coverage,
        }
        weights = LEXICAL_PAIR_CALIBRATION
        if self._meanings is not None:
            weights = PAIR_CALIBRATION
            features |= {"similarity": first.similarity, "second_similarity": second.similarity}
        return _logistic(weights, features)

    def ask(self, text: str, *, context: Answer | None = None) -> Answer:
        """The answer to ``text``; with ``context`` (the answer the caller heard last) a short ``text`` is also
        read as a follow-up to it (:meth:`_follow_up`): that reading is answered when it is confident or surer
        than ``text`` on its own."""
        found, score = self.search(text)
        alone = self._answer(found, score)
        if context is None or context.answer_id is None or not _short(text):
            return alone
        followed = self._follow_up(text, context)
        return followed if followed.confident or followed.score > alone.score else alone

    def _answer(self, found: list[Candidate], score: float) -> Answer:
        if not found:
            return NO_ANSWER
        confident = score >= self.confidence_threshold
        alternatives = () if confident else self._clarifying(found, score)
        return Answer.of(found[0].entry, score, confident, alternatives)

    def _follow_up(self, text: str, context: Answer) -> Answer:
        """``text`` completed by the question answered before: the entries matching both, the answer before
        left out (the caller has heard it) and entries of its topic (承办单位) preferred by ``TOPIC_BONUS``."""
        found, _ = self.search(f"{context.question}，{text}", self.top_k + 1)
        found = [c for c in found if c.entry.id != context.answer_id]
        if not found:
            return NO_ANSWER
        same = [c.entry.department == context.department for c in found]
        best = max(
            range(len(found)), key=lambda i: found[i].relevance * (1 + TOPIC_BONUS * same[i])
        )
        score = self._standalone(found, best, set())
        return Answer.of(found[best].entry, score, score >= self.confidence_threshold)


def _logistic(weights: dict[str, float], features: dict[str, float]) -> float:
    """A fitted logistic model's probability: ``weights`` has a ``bias`` and a weight per feature."""
    z = weights["bias"] + sum(weights[name] * value for name, value in features.items())
    return 1.0 / (1.0 + math.exp(-z))


def _short(text: str) -> bool:
    return len(_NOT_SPOKEN.sub("", text)) <= FOLLOW_UP_MAX_CHARS


def _argmax_per_group(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Index of the (first) largest value in each consecutive group beginning at ``starts``."""
    sizes = np.diff(np.r_[starts, len(values)])
    is_max = values == np.repeat(np.maximum.reduceat(values, starts), sizes)
    positions = np.flatnonzero(is_max)
    groups = np.repeat(np.arange(len(starts)), sizes)[positions]
    first = np.r_[True, groups[1:] != groups[:-1]]
    return positions[first]
