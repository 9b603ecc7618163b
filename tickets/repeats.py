"""Repeat detection (重复件): earlier tickets of the same caller, or with similar content in the same district.

Only indexed columns select candidates (caller phone / district, each with created_at inside the window),
at most ``settings.repeat.max_candidates`` of each, newest first; their stored jieba tokens are compared
with a cosine similarity, so the cost does not grow with the size of the table.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import jieba
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from config.settings import RepeatSettings
from tickets.models import Ticket

jieba.setLogLevel(logging.WARNING)

SAME_CALLER = "same_caller"
SIMILAR_CONTENT = "similar_content"
# Function words that say nothing about the matter itself.
_STOPWORDS = frozenset(
    "的 了 是 我 我们 你 你们 他 她 他们 在 和 与 及 有 也 就 都 很 太 一下 请问 您好 你好 一直 没 没有 吗 呢 啊 吧"
    " 把 被 给 这 那 这个 那个 这里 那里 还 又 来 去 要 想 能 会 对 从 让 已经 现在 希望 麻烦 谢谢".split()
)
_WORDLIKE = re.compile(r"\w")


def tokenize(text: str) -> list[str]:
    """The content words of ``text`` (jieba segmentation without punctuation and function words)."""
    return [w for w in jieba.lcut(text) if _WORDLIKE.search(w) and w not in _STOPWORDS]


def similarity(a: Sequence[str], b: Sequence[str]) -> float:
    """Cosine similarity of two token bags, 0 … 1."""
    ca, cb = Counter(a), Counter(b)
    dot = sum(n * cb[w] for w, n in ca.items())
    if not dot:
        return 0.0
    return dot / math.sqrt(sum(n * n for n in ca.values()) * sum(n * n for n in cb.values()))


@dataclass(frozen=True)
class RepeatMatch:
    earlier_id: int
    reason: str  # SAME_CALLER or SIMILAR_CONTENT
    similarity: float


async def find_repeats(
    session: AsyncSession,
    *,
    caller_phone: str,
    district: str | None,
    tokens: Sequence[str],
    now: datetime,
    settings: RepeatSettings,
) -> list[RepeatMatch]:
    """Earlier tickets that the new one repeats, newest first, each listed once (same caller wins)."""
    since = now - timedelta(days=settings.window_days)
    columns = (Ticket.id, Ticket.content_tokens)
    same_caller = await session.execute(
        select(*columns)
        .where(Ticket.caller_phone == caller_phone, Ticket.created_at >= since)
        .order_by(Ticket.created_at.desc())
        .limit(settings.max_candidates)
    )
    matches = {
        row.id: RepeatMatch(row.id, SAME_CALLER, similarity(tokens, row.content_tokens.split()))
        for row in same_caller
    }
    if district and tokens:
        nearby = await session.execute(
            select(*columns)
            .where(Ticket.district == district, Ticket.created_at >= since)
            .order_by(Ticket.created_at.desc())
            .limit(settings.max_candidates)
        )
        for row in nearby:
            score = similarity(tokens, row.content_tokens.split())
            if row.id not in matches and score >= settings.similarity:
                matches[row.id] = RepeatMatch(row.id, SIMILAR_CONTENT, score)
    return list(matches.values())
