"""Repeat detection (重复件): earlier tickets of the same caller, or with similar content in the same district.

Only indexed columns select candidates (caller phone / district, each with created_at inside the window),
at most ``settings.repeat.max_candidates`` of each, newest first, in one query. Content is similar by meaning
or by words (either is enough; the link keeps the higher score):

- meaning: the cosine of the two tickets' sentence embeddings (``language.embeddings``), each stored at intake
  as float32 bytes (``Ticket.content_vector``) of the matter alone — the ticket's own address, street and
  district are taken out of the text first (:func:`matter`), since the same place named in two different
  complaints makes them look alike; at least ``settings.semantic_similarity`` counts, between tickets of the
  same street (街道/乡镇) when both name one — meaning is a looser match than words, so it is held to the
  narrower area;
- words: each ticket stores its jieba tokens and their norm (:class:`TokenBag`), so the cosine of the token
  counts costs no segmentation; at least ``settings.similarity`` counts. Without the embedding model (or for
  tickets stored without a vector) this is the only signal.

A candidate costs one dot product of each kind (200 candidates with vectors: ~1.3 ms on PostgreSQL, 0.5 ms
without); the cost does not grow with the size of the table.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from difflib import SequenceMatcher
from functools import lru_cache
from itertools import repeat
from typing import Any, cast

import jieba
import numpy as np
from sqlalchemy import (
    ColumnElement,
    Float,
    FromClause,
    Insert,
    Integer,
    Select,
    String,
    Subquery,
    Table,
    bindparam,
    func,
    insert,
    literal,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from config.settings import RepeatSettings
from language.embeddings import Embedder
from tickets.models import Ticket, TicketRepeat
from tickets.orm import as_loaded

jieba.setLogLevel(logging.WARNING)

SAME_CALLER = "same_caller"
SIMILAR_CONTENT = "similar_content"
# Function words that say nothing about the matter itself.
_STOPWORDS = frozenset(
    "的 了 是 我 我们 你 你们 他 她 他们 在 和 与 及 有 也 就 都 很 太 一下 请问 您好 你好 一直 没 没有 吗 呢 啊 吧"
    " 把 被 给 这 那 这个 那个 这里 那里 还 又 来 去 要 想 能 会 对 从 让 已经 现在 希望 麻烦 谢谢".split()
)
_WORDLIKE = re.compile(r"\w")
# Shorter runs shared with the address are left in the text (a 区 or 路 alone says little).
PLACE_MIN_CHARS = 2


def tokenize(text: str) -> list[str]:
    """The content words of ``text`` (jieba segmentation without punctuation and function words)."""
    return [w for w in jieba.lcut(text) if _WORDLIKE.search(w) and w not in _STOPWORDS]


@dataclass(frozen=True)
class TokenBag:
    """A ticket's content as a bag of tokens: what intake stores (``content_tokens``, ``token_norm``)."""

    counts: dict[str, int]
    norm: float  # Euclidean norm of the counts

    @classmethod
    def of(cls, tokens: Sequence[str]) -> TokenBag:
        counts = dict(Counter(tokens))
        return cls(counts, math.sqrt(sum(n * n for n in counts.values())))

    def cosine(self, stored_tokens: str, stored_norm: float | None) -> float:
        """Cosine similarity with a stored ticket (its space-separated tokens and their norm), 0 … 1."""
        words = stored_tokens.split()
        dot = sum(map(self.counts.get, words, repeat(0)))
        if not dot:
            return 0.0
        if stored_norm is None:  # stored before norms were kept
            stored_norm = TokenBag.of(words).norm
        return dot / (self.norm * stored_norm)


def similarity(a: Sequence[str], b: Sequence[str]) -> float:
    """Cosine similarity of two token bags, 0 … 1."""
    return TokenBag.of(a).cosine(" ".join(b), None)


def matter(content: str, places: Iterable[str | None]) -> str:
    """``content`` without the place: every run of at least :data:`PLACE_MIN_CHARS` characters it shares with
    one of ``places`` (the ticket's address, street, district) is taken out, longest first."""
    for place in filter(None, places):
        while True:
            run = SequenceMatcher(None, content, place, autojunk=False).find_longest_match()
            if run.size < PLACE_MIN_CHARS:
                break
            content = content[: run.a] + content[run.a + run.size :]
    return content


def content_vector(
    embedder: Embedder | None, content: str, places: Iterable[str | None]
) -> bytes | None:
    """What intake stores as ``Ticket.content_vector``: the embedding of the :func:`matter` as float32 bytes
    (None without a model)."""
    if embedder is None:
        return None
    return embedder.encode([matter(content, places) or content])[0].astype(np.float32).tobytes()


def vectors(stored: Sequence[bytes]) -> np.ndarray:
    """Stored content vectors (all of one model) as the rows of a matrix."""
    return np.frombuffer(b"".join(stored), np.float32).reshape(len(stored), -1)


def semantic(vector: np.ndarray | None, stored: bytes | None) -> float:
    """Cosine of a new ticket's vector and a stored one; 0 when either is missing or from another model."""
    if vector is None or stored is None or len(stored) != vector.nbytes:
        return 0.0
    return float(np.frombuffer(stored, np.float32) @ vector)


@dataclass(frozen=True)
class RepeatMatch:
    earlier_id: int
    reason: str  # SAME_CALLER or SIMILAR_CONTENT
    similarity: float


_tickets = Ticket.__table__.c  # plain Core columns: rows come back without the ORM's per-row work
_LINKS = cast(Table, TicketRepeat.__table__)  # links go in through Core too


def _candidates(reason: str, match: ColumnElement[bool]) -> Select[Any]:
    return (
        select(
            _tickets.id,
            _tickets.content_tokens,
            _tickets.token_norm,
            _tickets.content_vector,
            _tickets.street,
            literal(reason).label("reason"),
            _tickets.created_at.label("at"),
        )
        .where(match, _tickets.created_at >= bindparam("since"))
        .order_by(_tickets.created_at.desc())
        .limit(bindparam("limit"))
    )


@lru_cache(maxsize=2)
def candidates(with_district: bool) -> Subquery:
    """Every candidate (columns id, content_tokens, token_norm, content_vector, street, reason, at),
    unordered; parameters ``phone``, ``since``, ``limit`` and, ``with_district``, ``district`` (see
    :func:`candidate_params`). Built once: only the parameters change from one ticket to the next."""
    parts = [_candidates(SAME_CALLER, _tickets.caller_phone == bindparam("phone"))]
    if with_district:
        parts.append(_candidates(SIMILAR_CONTENT, _tickets.district == bindparam("district")))
    return union_all(*(select(p.subquery()) for p in parts)).subquery()


def in_order(union: Subquery) -> tuple[ColumnElement[Any], ...]:
    """The order :func:`matching` expects: same caller first (SAME_CALLER sorts before SIMILAR_CONTENT), then
    newest first."""
    return union.c.reason, union.c.at.desc()


@lru_cache(maxsize=2)
def _query(with_district: bool) -> Select[Any]:
    union = candidates(with_district)
    return select(*candidate_columns(union)).order_by(*in_order(union))


def candidate_columns(union: Subquery) -> tuple[ColumnElement[Any], ...]:
    """The columns of a candidate row as :func:`matching` reads them."""
    c = union.c
    return c.id, c.content_tokens, c.token_norm, c.content_vector, c.street, c.reason


def candidate_params(
    caller_phone: str,
    district: str | None,
    tokens: Sequence[str],
    now: datetime,
    settings: RepeatSettings,
) -> tuple[bool, dict[str, Any]]:
    """Whether the district's tickets are candidates too (a district and some content words), and the
    parameters of :func:`candidates`; an unknown number (``""``) is nobody's: no same-caller candidates."""
    with_district = bool(district and tokens)
    params = {
        "phone": caller_phone or None,
        "since": now - timedelta(days=settings.window_days),
        "limit": settings.max_candidates,
    } | ({"district": district} if with_district else {})
    return with_district, params


def matching(
    rows: Iterable[Sequence[Any]],
    tokens: Sequence[str],
    vector: bytes | None,
    street: str | None,
    settings: RepeatSettings,
) -> list[RepeatMatch]:
    """The repeats among candidate rows (:func:`candidate_columns`) in :func:`in_order` (rows whose id is
    NULL are skipped), each listed once (same caller wins); a link's similarity is the higher of the two."""
    bag = TokenBag.of(tokens)
    mine = None if vector is None else np.frombuffer(vector, np.float32)
    matches: dict[int, RepeatMatch] = {}
    for row_id, stored_tokens, stored_norm, stored_vector, stored_street, reason in rows:
        if row_id is None or row_id in matches:
            continue
        lexical = bag.cosine(stored_tokens, stored_norm)
        near = street is None or stored_street is None or stored_street == street
        meaning = semantic(mine, stored_vector) if near else 0.0
        if (
            reason == SAME_CALLER
            or lexical >= settings.similarity
            or meaning >= settings.semantic_similarity
        ):
            matches[row_id] = RepeatMatch(row_id, reason, max(lexical, meaning))
    return list(matches.values())


async def find_repeats(
    session: AsyncSession,
    *,
    caller_phone: str,
    district: str | None,
    street: str | None,
    tokens: Sequence[str],
    vector: bytes | None,
    now: datetime,
    settings: RepeatSettings,
) -> list[RepeatMatch]:
    """Earlier tickets that the new one repeats, newest first, each listed once (same caller wins)."""
    with_district, params = candidate_params(caller_phone, district, tokens, now, settings)
    rows = await session.execute(_query(with_district), params)
    return matching(rows, tokens, vector, street, settings)


def unnested_links(ticket_id: ColumnElement[int], ticket: FromClause) -> Insert:
    """PostgreSQL: all links of the ticket that ``ticket`` (a statement inserting it) returns as ``ticket_id``,
    from three arrays that the server unnests (:func:`unnested_link_params`) — one execution however many."""
    rows = (
        func.unnest(
            bindparam("earlier", type_=postgresql.ARRAY(Integer)),
            bindparam("reasons", type_=postgresql.ARRAY(String)),
            bindparam("similarities", type_=postgresql.ARRAY(Float)),
        )
        .table_valued("earlier_id", "reason", "similarity")
        .render_derived(name="link")
    )
    query = select(ticket_id, rows.c.earlier_id, rows.c.reason, rows.c.similarity).select_from(
        ticket.join(rows, true())
    )
    return insert(_LINKS).from_select(["ticket_id", "earlier_id", "reason", "similarity"], query)


def unnested_link_params(matches: Sequence[RepeatMatch]) -> dict[str, list[Any]]:
    return {
        "earlier": [r.earlier_id for r in matches],
        "reasons": [r.reason for r in matches],
        "similarities": [r.similarity for r in matches],
    }


async def save_links(
    session: AsyncSession, ticket_id: int, matches: Sequence[RepeatMatch]
) -> list[TicketRepeat]:
    """Store the 重复件 links of a ticket made inside a session's transaction (one executemany; a new ticket on
    PostgreSQL writes its links with the ticket, :mod:`tickets.intake_pg`); returns them as objects for the
    ticket's ``repeat_links``."""
    if matches:
        await session.execute(insert(_LINKS), [_link_values(ticket_id, r) for r in matches])
    return link_objects(ticket_id, matches)


def link_objects(ticket_id: int, matches: Sequence[RepeatMatch]) -> list[TicketRepeat]:
    """The stored links of ``ticket_id`` as objects for its ``repeat_links``."""
    return [_link_object(_link_values(ticket_id, r)) for r in matches]


def _link_values(ticket_id: int, r: RepeatMatch) -> dict[str, Any]:
    return {
        "ticket_id": ticket_id,
        "earlier_id": r.earlier_id,
        "reason": r.reason,
        "similarity": r.similarity,
    }


def _link_object(values: dict[str, Any]) -> TicketRepeat:
    """A TicketRepeat holding ``values`` as if loaded (a busy caller's new ticket carries up to ``max_candidates``
    links)."""
    return as_loaded(TicketRepeat, values)
