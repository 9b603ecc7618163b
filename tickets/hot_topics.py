"""Hot topics (热点诉求) and high-frequency problems (每月一题候选) from recent tickets.

Keywords are ranked by TF-IDF: how many of the tickets read mention a word (document frequency, so one
long complaint repeating a word does not dominate) times the word's inverse document frequency in jieba's
general-language table (``jieba.analyse``), so everyday words rank low. Tickets are segmented once at intake
(``Ticket.content_tokens``), so ranking costs no segmentation; only the newest ``sample`` tickets of the
period are read, through the ``created_at`` index, so the cost does not grow with the table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import jieba.analyse
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tickets.models import Ticket

# Words every hotline ticket uses that say nothing about the matter (on top of tickets.repeats' function words).
STOP_WORDS = frozenset(
    "市民 来电 来电人 反映 反应 咨询 询问 投诉 举报 求助 建议 表扬 诉求 问题 情况 相关 有关 部门 单位 解决 处理 办理"
    " 要求 希望 请求 请 帮助 帮忙 协调 尽快 及时 一下 现在 目前 已经 一直 多次 经常 最近 今天 昨天 时候 之前 以后"
    " 没有 不能 可以 需要 是否 怎么 如何 什么 哪里 为什么 这个 那个 这样 那样 我们 你们 他们 自己 大家 本人 家里"
    " 表示 认为 告知 联系 电话 号码 热线 12345 工作人员 政府 相关部门 已 未 无 能否 但是 因为 所以 如果 而且"
    " 还是 或者 以及 进行 出现 存在 发生 造成 导致 影响 严重 非常 比较 特别 很多 一些 每天 几个 多个 左右"
    " 不管 没人管 不了 不到 不好 一样 还有 只能 应该 必须 其他 其中 这些 那些".split()
)
MIN_WORD_CHARS = 2


@dataclass(frozen=True)
class HotTopic:
    keyword: str
    weight: float  # TF-IDF weight, the top keyword is 1.0
    tickets: int  # how many of the tickets read mention it


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

    keywords: list[HotTopic]

    @property
    def repeat_rate(self) -> float:
        return self.repeats / self.tickets if self.tickets else 0.0


@lru_cache(maxsize=1)
def _idf() -> tuple[dict[str, float], float]:
    """jieba's IDF table and its median (for words it does not know), loaded once."""
    extractor = jieba.analyse.TFIDF()
    return extractor.idf_freq, extractor.median_idf


def _is_keyword(word: str) -> bool:
    return len(word) >= MIN_WORD_CHARS and not word.isdigit() and word not in STOP_WORDS


def rank_keywords(token_docs: Iterable[str], count: int) -> list[HotTopic]:
    """The ``count`` best keywords of the documents (each a space-separated token string), best first."""
    df: Counter[str] = Counter()
    docs = 0
    for doc in token_docs:
        docs += 1
        df.update({w for w in doc.split() if _is_keyword(w)})
    if not df:
        return []
    idf, median = _idf()
    scored = sorted(
        ((n / docs * idf.get(w, median), n, w) for w, n in df.items()), key=lambda t: (-t[0], t[2])
    )
    top = scored[:count]
    best = top[0][0]
    return [HotTopic(w, round(score / best, 4), n) for score, n, w in top]


async def hot_topics(
    session: AsyncSession,
    start: datetime,
    end: datetime,
    *,
    count: int = 20,
    sample: int = 3000,
    department: str | None = None,
) -> HotTopics:
    """Keywords of the tickets received in ``[start, end)`` (the newest ``sample`` of them), optionally only
    those a department leads (主办)."""
    stmt = (
        select(Ticket.content_tokens)
        .where(Ticket.created_at >= start, Ticket.created_at < end)
        .order_by(Ticket.created_at.desc())
        .limit(sample)
    )
    if department is not None:
        stmt = stmt.where(Ticket.lead_department == department)
    docs = list((await session.scalars(stmt)).all())
    return HotTopics(rank_keywords(docs, count), len(docs), start, end)


async def frequent_problems(
    session: AsyncSession,
    start: datetime,
    end: datetime,
    *,
    count: int = 10,
    keywords: int = 3,
    sample: int = 500,
) -> list[FrequentProblem]:
    """Categories with the most tickets received in ``[start, end)``, with their repeat counts and the top
    keywords of (the newest ``sample``) tickets of each."""
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
        docs = (
            await session.scalars(
                select(Ticket.content_tokens)
                .where(
                    Ticket.created_at >= start, Ticket.created_at < end, Ticket.category == category
                )
                .order_by(Ticket.created_at.desc())
                .limit(sample)
            )
        ).all()
        out.append(
            FrequentProblem(
                str(category), int(tickets), int(repeated or 0), rank_keywords(docs, keywords)
            )
        )
    return out
