"""Hot topics (热点诉求) and high-frequency problems (每月一题候选) from recent tickets.

A topic is a group of tickets asking for the same thing, however worded: the tickets' content vectors (the
sentence embeddings intake stores, :mod:`tickets.repeats`) are grouped around centres (:func:`group`: the
densest requests, neighbours at cosine ≥ ``repeat.semantic_similarity``, each ticket with its nearest centre),
and each topic is labelled by its most central request (the one closest to the topic's mean),
its commonest category and district and its size. A label is a citizen's request, never a single word, so no
filler word (咱们, 期间) can be a topic. Tickets stored without a vector are embedded when read; without the
embedding model the token counts stored at intake (hashed into a fixed-size vector) are grouped at
``repeat.similarity`` instead. Only the newest ``sample`` tickets of the period are read, through the
``created_at`` index, so the cost does not grow with the table; the grouping runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from language.embeddings import Embedder, optional_embedder
from tickets.models import Ticket
from tickets.repeats import matter, vectors

MIN_TOPIC_TICKETS = 2  # a hot topic is asked for by at least this many tickets
LABEL_MAX = 60  # characters of the central request shown as a topic's label
HASHED_DIM = 4096  # size of the token-count vectors grouped without the embedding model
BLOCK = 1024  # rows of the similarity matrix computed at a time (bounds the transient memory)


@dataclass(frozen=True)
class HotTopic:
    label: str  # the most central request of the topic (its first LABEL_MAX characters)
    tickets: int
    weight: float  # tickets over the largest topic's tickets, the top topic is 1.0
    category: str | None  # the commonest among its tickets (ties: the more central ticket's)
    district: str | None


@dataclass(frozen=True)
class HotTopics:
    topics: list[HotTopic]
    tickets_read: int
    start: datetime
    end: datetime


@dataclass(frozen=True)
class FrequentProblem:
    """A category with many tickets in the period: a candidate for 每月一题 (one problem tackled per month)."""

    category: str
    tickets: int
    repeats: int  # 重复件 among them
    topics: list[HotTopic]  # what its tickets ask for most

    @property
    def repeat_rate(self) -> float:
        return self.repeats / self.tickets if self.tickets else 0.0


@dataclass(frozen=True)
class ReadTicket:
    """One ticket as the grouping reads it."""

    content: str
    tokens: str
    vector: bytes | None
    category: str | None
    district: str | None
    places: tuple[str | None, ...]


def group(vecs: np.ndarray, threshold: float, min_tickets: int) -> list[np.ndarray]:
    """Group L2-normalised rows around centres: the row with the most neighbours (cosine ≥ ``threshold``) is the
    first centre, then the densest row no centre reaches yet whose neighbours no centre reaches number at least
    ``min_tickets``, and so on; each row then joins its nearest centre within ``threshold`` (not merely the
    first one that reaches it, which would mix matters). Each group's row indices, most central first, largest
    group first; groups smaller than ``min_tickets`` are left out."""
    near = _near(vecs, threshold)
    counts = near.sum(axis=1)
    reached = np.zeros(len(vecs), bool)
    centres = []
    for row in np.argsort(-counts, kind="stable"):
        if counts[row] < min_tickets:
            break
        if not reached[row] and np.count_nonzero(near[row] & ~reached) >= min_tickets:
            centres.append(row)
            reached |= near[row]
    if not centres:
        return []
    to_centres = vecs @ vecs[centres].T
    nearest = np.where(to_centres.max(axis=1) >= threshold, to_centres.argmax(axis=1), -1)
    groups = [np.flatnonzero(nearest == k) for k in range(len(centres))]
    found = [_by_centrality(vecs, g) for g in groups if len(g) >= min_tickets]
    return sorted(found, key=len, reverse=True)


def _near(vecs: np.ndarray, threshold: float) -> np.ndarray:
    """Which rows are within ``threshold`` of which, computed :data:`BLOCK` rows at a time."""
    blocks = [vecs[at : at + BLOCK] @ vecs.T >= threshold for at in range(0, len(vecs), BLOCK)]
    return np.concatenate(blocks) if blocks else np.zeros((0, 0), bool)


def _by_centrality(vecs: np.ndarray, members: np.ndarray) -> np.ndarray:
    closeness = vecs[members] @ vecs[members].mean(axis=0)
    return members[np.argsort(-closeness, kind="stable")]


def _hashed(token_docs: Sequence[str]) -> np.ndarray:
    """Token counts hashed into :data:`HASHED_DIM` columns, each row L2-normalised (zero rows stay zero)."""
    out = np.zeros((len(token_docs), HASHED_DIM), np.float32)
    for row, doc in enumerate(token_docs):
        for word in doc.split():
            out[row, zlib.crc32(word.encode()) % HASHED_DIM] += 1
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1)


def _vectors(read: Sequence[ReadTicket], embedder: Embedder) -> np.ndarray:
    """The stored vectors, and the embeddings of the tickets stored without one (or by another model)."""
    size = embedder.dim * 4
    missing = [n for n, r in enumerate(read) if r.vector is None or len(r.vector) != size]
    fresh = embedder.encode(
        [matter(read[n].content, read[n].places) or read[n].content for n in missing]
    )
    stored = [
        r.vector if r.vector is not None and len(r.vector) == size else bytes(size) for r in read
    ]
    out = vectors(stored).copy() if read else np.zeros((0, embedder.dim), np.float32)
    out[missing] = fresh
    return out


def _topic(read: Sequence[ReadTicket], members: np.ndarray, largest: int) -> HotTopic:
    central = read[members[0]].content
    label = central if len(central) <= LABEL_MAX else central[: LABEL_MAX - 1] + "…"
    return HotTopic(
        label,
        len(members),
        round(len(members) / largest, 4),
        _commonest(read[n].category for n in members),
        _commonest(read[n].district for n in members),
    )


def _commonest(values: Iterable[str | None]) -> str | None:
    counted = Counter(v for v in values if v)
    return counted.most_common(1)[0][0] if counted else None


def topics_of(
    read: Sequence[ReadTicket], settings: Settings, count: int, min_tickets: int = MIN_TOPIC_TICKETS
) -> list[HotTopic]:
    """The ``count`` largest topics of the tickets read (CPU only: run it in a thread)."""
    embedder = optional_embedder(settings.language.embedding_model)
    if embedder is None:
        vecs, threshold = _hashed([r.tokens for r in read]), settings.repeat.similarity
    else:
        vecs, threshold = _vectors(read, embedder), settings.repeat.semantic_similarity
    groups = group(vecs, threshold, min_tickets)[:count]
    return [_topic(read, members, len(groups[0])) for members in groups]


# content, content_tokens, content_vector, category, district, address, street
_Reading = Select[str, str, bytes | None, str | None, str | None, str | None, str | None]


def _reading() -> _Reading:
    t = Ticket
    return select(
        t.content, t.content_tokens, t.content_vector, t.category, t.district, t.address, t.street
    )


async def _read(session: AsyncSession, stmt: _Reading) -> list[ReadTicket]:
    rows = await session.execute(stmt)
    return [
        ReadTicket(content, tokens, vector, category, district, (address, street, district))
        for content, tokens, vector, category, district, address, street in rows
    ]


async def hot_topics(
    session: AsyncSession,
    start: datetime,
    end: datetime,
    *,
    settings: Settings,
    count: int = 20,
    sample: int = 3000,
    department: str | None = None,
) -> HotTopics:
    """The largest topics of the tickets received in ``[start, end)`` (the newest ``sample`` of them),
    optionally only those a department leads (主办)."""
    stmt = (
        _reading()
        .where(Ticket.created_at >= start, Ticket.created_at < end)
        .order_by(Ticket.created_at.desc())
        .limit(sample)
    )
    if department is not None:
        stmt = stmt.where(Ticket.lead_department == department)
    read = await _read(session, stmt)
    topics = await asyncio.to_thread(topics_of, read, settings, count)
    return HotTopics(topics, len(read), start, end)


async def frequent_problems(
    session: AsyncSession,
    start: datetime,
    end: datetime,
    *,
    settings: Settings,
    count: int = 10,
    topics: int = 3,
    sample: int = 500,
) -> list[FrequentProblem]:
    """Categories with the most tickets received in ``[start, end)``, with their repeat counts and what (the
    newest ``sample``) tickets of each ask for most: its ``topics`` largest topics, single requests included."""
    repeats = func.count(Ticket.id).filter(Ticket.is_repeat.is_(True))
    rows = (
        await session.execute(
            select(Ticket.category, func.count(Ticket.id), repeats)
            .where(
                Ticket.created_at >= start, Ticket.created_at < end, Ticket.category.is_not(None)
            )
            .group_by(Ticket.category)
            .order_by(func.count(Ticket.id).desc(), Ticket.category)
            .limit(count)
        )
    ).all()
    out = []
    for category, tickets, repeated in rows:
        read = await _read(
            session,
            _reading()
            .where(Ticket.created_at >= start, Ticket.created_at < end, Ticket.category == category)
            .order_by(Ticket.created_at.desc())
            .limit(sample),
        )
        found = await asyncio.to_thread(topics_of, read, settings, topics, 1)
        out.append(FrequentProblem(str(category), int(tickets), int(repeated or 0), found))
    return out
