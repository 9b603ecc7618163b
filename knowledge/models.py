"""Tables of this package: entries (知识条目), their immutable history, and questions the bot failed on."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, Float, ForeignKey, Integer, String, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from config.database import AwareDateTime, immutable, new_metadata


class Base(DeclarativeBase):
    metadata = new_metadata()


STATUSES = ("draft", "published", "archived")  # 草稿 / 已发布 / 已归档
# 未找到 / 置信度低 / 来电人称未解决 / 两条答案相近，问过来电人（best entry: the one chosen, else the first）
MISS_REASONS = ("unanswered", "low_confidence", "not_solved", "ambiguous")


class KnowledgeEntry(Base):
    __tablename__ = "kb_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    question: Mapped[str] = mapped_column(String(200), unique=True)
    alt_questions: Mapped[list[str]] = mapped_column(JSON, default=list)
    answer_speech: Mapped[str] = mapped_column(Text)  # spoken by the bot (TTS)
    # the spoken answer was derived by the import, not written: 自动生成，请审核 until an editor saves the entry
    speech_derived: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    answer_text: Mapped[str] = mapped_column(Text)  # shown on screens
    department: Mapped[str] = mapped_column(String(100), default="", index=True)  # 承办单位
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    source: Mapped[str] = mapped_column(String(300), default="")  # regulation and article
    valid_from: Mapped[date | None] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # other imported fields
    status: Mapped[str] = mapped_column(String(16), default="draft", index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(AwareDateTime)
    updated_at: Mapped[datetime] = mapped_column(AwareDateTime)
    updated_by: Mapped[str] = mapped_column(String(64))


class KnowledgeRevision(Base):
    """One change of an entry: who, when, what, and the entry's content before it (None on create)."""

    __tablename__ = "kb_entry_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_id: Mapped[int] = mapped_column(
        ForeignKey("kb_entries.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)  # the entry's version after the change
    action: Mapped[str] = mapped_column(String(16))  # create / update / publish / archive
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(AwareDateTime)
    previous: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class KnowledgeMiss(Base):
    """A question the bot could not settle (机器人未解决的问题), for the console's review page."""

    __tablename__ = "kb_misses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    question_text: Mapped[str] = mapped_column(Text)
    best_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("kb_entries.id", ondelete="SET NULL")
    )
    score: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(String(32), index=True)
    at: Mapped[datetime] = mapped_column(AwareDateTime, index=True)
    # settled by an editor, e.g. added to an entry as an alternative question (添加为相似问法)
    handled_at: Mapped[datetime | None] = mapped_column(AwareDateTime, index=True)
    handled_by: Mapped[str | None] = mapped_column(String(64))
    handled_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("kb_entries.id", ondelete="SET NULL")
    )


immutable(KnowledgeRevision, "knowledge history row")
