"""Service functions of the knowledge base. Each public function is one transaction (it commits).

The ``_``-prefixed helpers change the session without committing, so an import can apply a whole file
in one transaction.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, date, datetime
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from config.pii import mask_phones
from knowledge.errors import (
    DuplicateQuestion,
    IllegalStatus,
    InvalidInput,
    MissNotFound,
    NotFound,
    VersionConflict,
)
from knowledge.models import MISS_REASONS, KnowledgeEntry, KnowledgeMiss, KnowledgeRevision
from knowledge.retrieval import IndexedEntry, KnowledgeIndex
from knowledge.schemas import EntryContent, validate_content

P = ParamSpec("P")
R = TypeVar("R")
STATUS_LABELS = {"draft": "草稿", "published": "已发布", "archived": "已归档"}
ACTION_LABELS = {"publish": "发布", "archive": "归档"}
ALTERNATIVE = (
    "alternative"  # history action of a miss added as an alternative question (添加为相似问法)
)


def _transaction(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Commit is done by the function; on any error the session is rolled back, so nothing half-done remains."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        session = args[0]
        assert isinstance(session, AsyncSession)
        try:
            return await fn(*args, **kwargs)
        except BaseException:
            await session.rollback()
            raise

    return wrapper


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def content_of(entry: KnowledgeEntry) -> EntryContent:
    return EntryContent.model_construct(
        question=entry.question,
        answer_speech=entry.answer_speech,
        answer_text=entry.answer_text,
        alt_questions=list(entry.alt_questions or []),
        department=entry.department,
        keywords=list(entry.keywords or []),
        source=entry.source,
        valid_from=entry.valid_from,
        valid_to=entry.valid_to,
        extra=dict(entry.extra or {}),
    )


def _snapshot(entry: KnowledgeEntry) -> dict[str, Any]:
    return {
        **content_of(entry).snapshot(),
        "status": entry.status,
        "version": entry.version,
        "speech_derived": entry.speech_derived,
    }


def _log(
    session: AsyncSession,
    entry: KnowledgeEntry,
    action: str,
    actor: str,
    at: datetime,
    previous: dict[str, Any] | None,
) -> None:
    session.add(
        KnowledgeRevision(
            entry_id=entry.id,
            version=entry.version,
            action=action,
            actor=actor,
            at=at,
            previous=previous,
        )
    )


async def find_by_question(session: AsyncSession, question: str) -> KnowledgeEntry | None:
    return (
        await session.execute(
            select(KnowledgeEntry).where(KnowledgeEntry.question == question.strip())
        )
    ).scalar_one_or_none()


async def _create(
    session: AsyncSession,
    content: EntryContent,
    actor: str,
    at: datetime,
    *,
    speech_derived: bool = False,
) -> KnowledgeEntry:
    if await find_by_question(session, content.question):
        raise DuplicateQuestion(content.question)
    entry = KnowledgeEntry(
        **content.model_dump(),
        speech_derived=speech_derived,
        status="draft",
        version=1,
        created_at=at,
        updated_at=at,
        updated_by=actor,
    )
    session.add(entry)
    await session.flush()
    _log(session, entry, "create", actor, at, None)
    return entry


async def _update(
    session: AsyncSession,
    entry: KnowledgeEntry,
    content: EntryContent,
    actor: str,
    at: datetime,
    *,
    speech_derived: bool = False,
) -> KnowledgeEntry:
    """Replace the content; an editor's save (``speech_derived`` False) settles the review mark."""
    if content.question != entry.question:
        other = await find_by_question(session, content.question)
        if other is not None and other.id != entry.id:
            raise DuplicateQuestion(content.question)
    previous = _snapshot(entry)
    for name, value in content.model_dump().items():
        setattr(entry, name, value)
    entry.speech_derived = speech_derived
    entry.version += 1
    entry.updated_at, entry.updated_by = at, actor
    _log(session, entry, "update", actor, at, previous)
    return entry


async def _set_status(
    session: AsyncSession, entry: KnowledgeEntry, status: str, action: str, actor: str, at: datetime
) -> KnowledgeEntry:
    if entry.status == status:
        raise IllegalStatus(entry.id, STATUS_LABELS[entry.status], ACTION_LABELS[action])
    previous = _snapshot(entry)
    entry.status = status
    entry.version += 1
    entry.updated_at, entry.updated_by = at, actor
    _log(session, entry, action, actor, at, previous)
    return entry


async def _locked(
    session: AsyncSession, entry_id: int, expected_version: int | None
) -> KnowledgeEntry:
    entry = await session.get(KnowledgeEntry, entry_id, with_for_update=True)
    if entry is None:
        raise NotFound(entry_id)
    if expected_version is not None and entry.version != expected_version:
        raise VersionConflict(entry_id, expected_version, entry.version)
    return entry


@_transaction
async def create_entry(
    session: AsyncSession, content: EntryContent, actor: str, *, now: datetime | None = None
) -> KnowledgeEntry:
    """A new draft entry (version 1)."""
    entry = await _create(session, content, actor, _now(now))
    await session.commit()
    return entry


@_transaction
async def update_entry(
    session: AsyncSession,
    entry_id: int,
    content: EntryContent,
    actor: str,
    *,
    expected_version: int,
    now: datetime | None = None,
) -> KnowledgeEntry:
    """Replace the content (the entry's spoken answer is then reviewed: its mark cleared); raises
    :class:`VersionConflict` when someone changed it since ``expected_version``."""
    entry = await _update(
        session, await _locked(session, entry_id, expected_version), content, actor, _now(now)
    )
    await session.commit()
    return entry


@_transaction
async def publish_entry(
    session: AsyncSession,
    entry_id: int,
    actor: str,
    *,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> KnowledgeEntry:
    entry = await _locked(session, entry_id, expected_version)
    await _set_status(session, entry, "published", "publish", actor, _now(now))
    await session.commit()
    return entry


@_transaction
async def archive_entry(
    session: AsyncSession,
    entry_id: int,
    actor: str,
    *,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> KnowledgeEntry:
    entry = await _locked(session, entry_id, expected_version)
    await _set_status(session, entry, "archived", "archive", actor, _now(now))
    await session.commit()
    return entry


async def get_entry(session: AsyncSession, entry_id: int) -> KnowledgeEntry:
    entry = await session.get(KnowledgeEntry, entry_id)
    if entry is None:
        raise NotFound(entry_id)
    return entry


async def entry_history(session: AsyncSession, entry_id: int) -> list[KnowledgeRevision]:
    """Every change of the entry, oldest first."""
    rows = await session.execute(
        select(KnowledgeRevision)
        .where(KnowledgeRevision.entry_id == entry_id)
        .order_by(KnowledgeRevision.id)
    )
    return list(rows.scalars())


async def list_entries(
    session: AsyncSession,
    *,
    department: str | None = None,
    status: str | None = None,
    text: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[KnowledgeEntry]:
    """Entries by department, status and a text found in the question or the answer, newest change first."""
    query = select(KnowledgeEntry)
    if department:
        query = query.where(KnowledgeEntry.department == department)
    if status:
        query = query.where(KnowledgeEntry.status == status)
    if text:
        like = f"%{text.strip()}%"
        query = query.where(
            or_(KnowledgeEntry.question.like(like), KnowledgeEntry.answer_text.like(like))
        )
    query = (
        query.order_by(KnowledgeEntry.updated_at.desc(), KnowledgeEntry.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list((await session.execute(query)).scalars())


async def entries_by_id(session: AsyncSession, ids: Iterable[int]) -> list[KnowledgeEntry]:
    wanted = sorted(set(ids))
    if not wanted:
        return []
    return list(
        (
            await session.execute(select(KnowledgeEntry).where(KnowledgeEntry.id.in_(wanted)))
        ).scalars()
    )


async def all_entries(session: AsyncSession, *, status: str | None = None) -> list[KnowledgeEntry]:
    query = select(KnowledgeEntry).order_by(KnowledgeEntry.id)
    if status:
        query = query.where(KnowledgeEntry.status == status)
    return list((await session.execute(query)).scalars())


async def published_on(session: AsyncSession, day: date) -> list[KnowledgeEntry]:
    """Entries the bot may answer from on ``day``: published and within their validity dates."""
    query = (
        select(KnowledgeEntry)
        .where(KnowledgeEntry.status == "published")
        .where(or_(KnowledgeEntry.valid_from.is_(None), KnowledgeEntry.valid_from <= day))
        .where(or_(KnowledgeEntry.valid_to.is_(None), KnowledgeEntry.valid_to >= day))
        .order_by(KnowledgeEntry.id)
    )
    return list((await session.execute(query)).scalars())


def indexed(entry: KnowledgeEntry) -> IndexedEntry:
    return IndexedEntry(
        entry.id,
        entry.question,
        entry.answer_speech,
        entry.answer_text,
        entry.department,
        tuple(entry.alt_questions or ()),
        tuple(entry.keywords or ()),
    )


async def refresh_index(session: AsyncSession, index: KnowledgeIndex, day: date) -> None:
    """Rebuild ``index`` from the entries published and valid on ``day`` (call after entries change)."""
    index.refresh(indexed(e) for e in await published_on(session, day))


async def change_stamp(session: AsyncSession) -> tuple[int, datetime | None]:
    """(number of entries, latest change): cheap to poll; when it moves, refresh the index."""
    count, latest = (
        await session.execute(
            select(func.count(KnowledgeEntry.id), func.max(KnowledgeEntry.updated_at))
        )
    ).one()
    return int(count), latest


@_transaction
async def record_miss(
    session: AsyncSession,
    question_text: str,
    best_entry_id: int | None,
    score: float | None,
    reason: str,
    *,
    now: datetime | None = None,
) -> KnowledgeMiss:
    """Remember a question the bot failed on: ``reason`` is unanswered, low_confidence, not_solved or
    ambiguous (the bot had to ask which of two close entries was meant).

    The caller's words are kept with every phone number in them masked (editors need the question, not who
    asked it)."""
    if reason not in MISS_REASONS:
        raise InvalidInput(
            "kb.bad_miss_reason", f"未知的失败原因：{reason}（应为 {'、'.join(MISS_REASONS)}）"
        )
    if not question_text.strip():
        raise InvalidInput("kb.empty_question", "问题内容不能为空")
    miss = KnowledgeMiss(
        question_text=mask_phones(question_text.strip()),
        best_entry_id=best_entry_id,
        score=score,
        reason=reason,
        at=_now(now),
    )
    session.add(miss)
    await session.commit()
    return miss


def _misses_of(department: str | None, *, handled: bool | None = None) -> Select[KnowledgeMiss]:
    """All misses, or with ``department`` only those whose closest entry belongs to that department."""
    query = select(KnowledgeMiss)
    if handled is not None:
        query = query.where(
            KnowledgeMiss.handled_at.is_not(None) if handled else KnowledgeMiss.handled_at.is_(None)
        )
    if department is None:
        return query
    return query.join(KnowledgeEntry, KnowledgeEntry.id == KnowledgeMiss.best_entry_id).where(
        KnowledgeEntry.department == department
    )


async def list_misses(
    session: AsyncSession,
    *,
    reason: str | None = None,
    since: datetime | None = None,
    department: str | None = None,
    handled: bool | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[KnowledgeMiss]:
    """Questions the bot failed on, newest first; ``department`` keeps those nearest its entries, ``handled``
    those an editor settled (True) or not yet (False)."""
    query = _misses_of(department, handled=handled)
    if reason:
        query = query.where(KnowledgeMiss.reason == reason)
    if since:
        query = query.where(KnowledgeMiss.at >= since)
    query = (
        query.order_by(KnowledgeMiss.at.desc(), KnowledgeMiss.id.desc()).limit(limit).offset(offset)
    )
    return list((await session.execute(query)).scalars())


async def get_miss(
    session: AsyncSession, miss_id: int, *, department: str | None = None
) -> KnowledgeMiss | None:
    """One miss; None when there is none, or (with ``department``) it is not one :func:`list_misses` gives."""
    return (
        await session.execute(_misses_of(department).where(KnowledgeMiss.id == miss_id))
    ).scalar_one_or_none()


@_transaction
async def add_alternative(
    session: AsyncSession,
    entry_id: int,
    question: str,
    miss_ids: list[int],
    actor: str,
    *,
    department: str | None = None,
    now: datetime | None = None,
) -> KnowledgeEntry:
    """Add the callers' ``question`` to the entry as an alternative question (添加为相似问法) and mark the misses
    it came from handled, in one transaction with the entry's history row. ``department`` limits the misses to
    those :func:`list_misses` gives for it; a miss not among them, or already handled, refuses the whole."""
    at = _now(now)
    entry = await _locked(session, entry_id, None)
    text = question.strip()
    if text == entry.question or text in (entry.alt_questions or []):
        raise InvalidInput("kb.duplicate_alternative", f"知识条目 {entry_id} 已有此问法：{text}")
    wanted = sorted(set(miss_ids))
    found = set(
        (
            await session.execute(
                _misses_of(department, handled=False)
                .with_only_columns(KnowledgeMiss.id)
                .where(KnowledgeMiss.id.in_(wanted))
            )
        ).scalars()
    )
    if not wanted or found != set(wanted):
        raise MissNotFound([m for m in wanted if m not in found] or wanted)
    data = content_of(entry).snapshot() | {"alt_questions": [*(entry.alt_questions or []), text]}
    content = validate_content(data, max_speech=len(entry.answer_speech))
    previous = _snapshot(entry)
    entry.alt_questions = content.alt_questions
    entry.version += 1
    entry.updated_at, entry.updated_by = at, actor
    _log(session, entry, ALTERNATIVE, actor, at, previous)
    marked = await session.execute(
        update(KnowledgeMiss)
        .where(KnowledgeMiss.id.in_(wanted))
        .where(KnowledgeMiss.handled_at.is_(None))
        .values(handled_at=at, handled_by=actor, handled_entry_id=entry.id)
    )
    if marked.rowcount != len(wanted):  # type: ignore[attr-defined]  # another editor was quicker
        raise MissNotFound(wanted)
    await session.commit()
    return entry
