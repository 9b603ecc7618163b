"""Tables of this package: departments, tickets (工单), their co-handlers, repeat links and audit events;
warnings (预警), supervision records (督办) and the notification outbox."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from config.database import AwareDateTime, immutable, new_metadata

# Length limits of text fields, checked by the services before anything is written.
PHONE_MAX = 20
NAME_MAX = 50
ADDRESS_MAX = 200
PLACE_MAX = 50  # district (区县) and street (街道/乡镇)
CATEGORY_MAX = 100
CONTENT_MAX = 4000
ANSWER_MAX = 4000
TRANSCRIPT_MAX = 20000
REFERENCE_MAX = 500  # recording path / URL
KEY_MAX = 64  # call_id, knowledge_id
NOTE_MAX = 1000
DEPT_CODE_MAX = 32
DEPT_NAME_MAX = 100
FILE_NAME_MAX = 200  # attachment file names
GRID_MAX = 128  # 网格 name


class Base(DeclarativeBase):
    metadata = new_metadata()


class Department(Base):
    """A handling department (承办单位)."""

    __tablename__ = "departments"

    code: Mapped[str] = mapped_column(String(DEPT_CODE_MAX), primary_key=True)
    name: Mapped[str] = mapped_column(String(DEPT_NAME_MAX))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class TicketCounter(Base):
    """Last sequence number handed out per local day, for ticket numbers 12345-YYYYMMDD-NNNNN."""

    __tablename__ = "ticket_counters"

    day: Mapped[str] = mapped_column(String(8), primary_key=True)
    last: Mapped[int] = mapped_column(Integer)


class Ticket(Base):
    """A citizen's request (工单) and where it stands in the 接诉即办 loop."""

    __tablename__ = "tickets"
    __table_args__ = (
        Index("ix_tickets_caller_phone_created_at", "caller_phone", "created_at"),
        Index("ix_tickets_district_created_at", "district", "created_at"),
        Index("ix_tickets_state_due_at", "state", "due_at"),
        Index("ix_tickets_state_sign_for_due", "state", "sign_for_due"),  # 签收 warnings
        Index(
            "ix_tickets_lead_department_created_at", "lead_department", "created_at"
        ),  # lists by department
        Index("ix_tickets_grid_created_at", "grid", "created_at"),  # a grid worker's list (网格员)
        # ticket_no prefix search (LIKE 'p%') in any collation; SQLite searches by range on the unique index.
        Index(
            "ix_tickets_ticket_no_pattern",
            "ticket_no",
            postgresql_ops={"ticket_no": "text_pattern_ops"},
        ).ddl_if(dialect="postgresql"),
        # metrics: the tickets not yet summed into ticket_metrics_daily (open ones, mostly) — a small set.
        Index(
            "ix_tickets_live_created_at",
            "created_at",
            postgresql_where=text("NOT rolled_up"),
            sqlite_where=text("rolled_up = 0"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_no: Mapped[str] = mapped_column(String(20), unique=True)
    channel: Mapped[str] = mapped_column(String(16))  # 渠道
    caller_phone: Mapped[str] = mapped_column(String(PHONE_MAX))
    caller_name: Mapped[str | None] = mapped_column(String(NAME_MAX))
    address: Mapped[str | None] = mapped_column(String(ADDRESS_MAX))
    district: Mapped[str | None] = mapped_column(String(PLACE_MAX))  # 区县
    street: Mapped[str | None] = mapped_column(String(PLACE_MAX))  # 街道/乡镇
    grid: Mapped[str | None] = mapped_column(
        String(GRID_MAX)
    )  # 网格: filed by that grid's worker (网格员)
    category: Mapped[str | None] = mapped_column(String(CATEGORY_MAX))  # 诉求分类 "一级/二级"
    kind: Mapped[str] = mapped_column(String(8))  # 诉求类型: 咨询 求助 投诉 举报 建议 表扬
    content: Mapped[str] = mapped_column(Text)
    content_tokens: Mapped[str] = mapped_column(
        Text, default=""
    )  # jieba tokens, for repeat detection
    token_norm: Mapped[float | None] = mapped_column(
        Float
    )  # Euclidean norm of the token counts (tickets.repeats)
    # embedding of the content without its place, float32 bytes (tickets.repeats); not loaded with the row
    content_vector: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    urgency: Mapped[str] = mapped_column(String(16), default="normal")
    deadline_tier: Mapped[str] = mapped_column(String(32))
    due_at: Mapped[datetime | None] = mapped_column(AwareDateTime)  # 办理时限
    sign_for_due: Mapped[datetime | None] = mapped_column(AwareDateTime)  # 签收时限
    state: Mapped[str] = mapped_column(String(16))  # indexed first in ix_tickets_state_due_at
    dispatch_mode: Mapped[str | None] = mapped_column(
        String(16)
    )  # direct 直派 / joint 双派 / first_receiver 首接负责
    # 主办单位; indexed first in ix_tickets_lead_department_created_at
    lead_department: Mapped[str | None] = mapped_column(ForeignKey("departments.code"))
    transcript: Mapped[str | None] = mapped_column(Text)
    recording: Mapped[str | None] = mapped_column(String(REFERENCE_MAX))
    knowledge_id: Mapped[str | None] = mapped_column(String(KEY_MAX))
    call_id: Mapped[str | None] = mapped_column(String(KEY_MAX), index=True)
    leader_name: Mapped[str | None] = mapped_column(String(NAME_MAX))  # 领导接听日的接听领导
    answer: Mapped[str | None] = mapped_column(Text)  # 即办答复
    reply: Mapped[str | None] = mapped_column(Text)  # 承办单位反馈
    satisfaction: Mapped[str | None] = mapped_column(String(24))  # 满意度, or "unreachable"
    callback_attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_callback_at: Mapped[datetime | None] = mapped_column(AwareDateTime)
    redispatch_count: Mapped[int] = mapped_column(Integer, default=0)  # 二次派单次数
    return_count: Mapped[int] = mapped_column(Integer, default=0)  # 退回次数
    extension_count: Mapped[int] = mapped_column(Integer, default=0)  # 延期次数
    extension_requested_until: Mapped[datetime | None] = mapped_column(
        AwareDateTime
    )  # 待审批的延期申请
    is_repeat: Mapped[bool] = mapped_column(Boolean, default=False)  # 重复件
    # 保密: the caller asked; name and number only for the roles that call back (agent_console.masking)
    confidential: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # 并单: the main ticket this duplicate was merged into (state ``merged``, later 回访 and 办结 on its own)
    merged_into_id: Mapped[int | None] = mapped_column(
        ForeignKey("tickets.id", ondelete="SET NULL"), index=True
    )
    dispatched_at: Mapped[datetime | None] = mapped_column(AwareDateTime)
    signed_at: Mapped[datetime | None] = mapped_column(AwareDateTime)
    replied_at: Mapped[datetime | None] = mapped_column(AwareDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(AwareDateTime)
    created_at: Mapped[datetime] = mapped_column(AwareDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(AwareDateTime)
    version: Mapped[int] = mapped_column(Integer)
    # Summed into ticket_metrics_daily (settled: its metric counts no longer change; see tickets.metrics_rollup).
    rolled_up: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    co_departments: Mapped[list[TicketCoDepartment]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="TicketCoDepartment.department_code"
    )
    repeat_links: Mapped[list[TicketRepeat]] = relationship(
        foreign_keys="TicketRepeat.ticket_id", cascade="all, delete-orphan", lazy="selectin"
    )

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's declarative attribute

    @property
    def is_extended(self) -> bool:
        """延期件: an extension was granted at least once."""
        return self.extension_count > 0

    @property
    def co_department_codes(self) -> list[str]:
        return [c.department_code for c in self.co_departments]

    @property
    def repeat_of(self) -> list[int]:
        """Ids of the earlier tickets this one repeats."""
        return [link.earlier_id for link in self.repeat_links]


class TicketCoDepartment(Base):
    """A co-handling department (协办单位) of a 双派 ticket."""

    __tablename__ = "ticket_co_departments"

    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    department_code: Mapped[str] = mapped_column(
        ForeignKey("departments.code"), primary_key=True, index=True
    )


class TicketRepeat(Base):
    """A 重复件 link: the ticket repeats an earlier one, by the same caller or with similar content."""

    __tablename__ = "ticket_repeats"

    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    earlier_id: Mapped[int] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    reason: Mapped[str] = mapped_column(String(16))  # same_caller / similar_content
    similarity: Mapped[float] = mapped_column(Float)


class TicketMetricsDaily(Base):
    """考核指标日汇总: the metric counts of the settled tickets (``Ticket.rolled_up``) per local day of intake, once
    per grouping of the metrics (each ticket is in one group of each). Maintained by :mod:`tickets.metrics_rollup`."""

    __tablename__ = "ticket_metrics_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)  # local date of created_at
    grouping: Mapped[str] = mapped_column(
        String(16), primary_key=True
    )  # department / category / area
    key: Mapped[str] = mapped_column(
        String(CATEGORY_MAX), primary_key=True
    )  # the group; '' = not set
    received: Mapped[int] = mapped_column(Integer, default=0)
    withdrawn: Mapped[int] = mapped_column(Integer, default=0)
    closed: Mapped[int] = mapped_column(Integer, default=0)
    dispatched: Mapped[int] = mapped_column(Integer, default=0)
    sign_for_decided: Mapped[int] = mapped_column(Integer, default=0)
    signed_in_time: Mapped[int] = mapped_column(Integer, default=0)
    closed_on_time: Mapped[int] = mapped_column(Integer, default=0)
    instant: Mapped[int] = mapped_column(Integer, default=0)
    satisfied: Mapped[int] = mapped_column(Integer, default=0)
    unsatisfied: Mapped[int] = mapped_column(Integer, default=0)
    repeats: Mapped[int] = mapped_column(Integer, default=0)
    handled_closed: Mapped[int] = mapped_column(Integer, default=0)
    handling_seconds: Mapped[float] = mapped_column(Float, default=0.0)


class TicketEvent(Base):
    """An immutable audit event: one per state change (who, role, when, from, to, action, note)."""

    __tablename__ = "ticket_events"
    __table_args__ = (
        Index("ix_ticket_events_action_ticket_id", "action", "ticket_id"),
    )  # metrics: 回访不满意

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(AwareDateTime)
    actor: Mapped[str] = mapped_column(String(NAME_MAX))
    role: Mapped[str] = mapped_column(String(16))
    department: Mapped[str | None] = mapped_column(String(DEPT_CODE_MAX))
    action: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(String(NOTE_MAX), default="")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


immutable(TicketEvent, "audit event")


WARNING_REASON_MAX = 24
RECIPIENT_MAX = 100
SUBJECT_MAX = 200
ERROR_MAX = 500


class TicketWarning(Base):
    """A warning (预警) on a ticket: yellow 黄牌 or red 红牌, for one reason; open until ``cleared_at``.

    At most one open warning per ticket and reason (partial unique index)."""

    __tablename__ = "ticket_warnings"
    __table_args__ = (
        Index(
            "ux_ticket_warnings_open",
            "ticket_id",
            "reason",
            unique=True,
            sqlite_where=text("cleared_at IS NULL"),
            postgresql_where=text("cleared_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    reason: Mapped[str] = mapped_column(String(WARNING_REASON_MAX))  # see tickets.warnings.Reason
    level: Mapped[str] = mapped_column(String(8))  # yellow 黄牌 / red 红牌
    deadline: Mapped[datetime | None] = mapped_column(
        AwareDateTime
    )  # the deadline the warning is about
    raised_at: Mapped[datetime] = mapped_column(AwareDateTime)
    changed_at: Mapped[datetime] = mapped_column(AwareDateTime)  # last level change
    cleared_at: Mapped[datetime | None] = mapped_column(AwareDateTime)


class TicketSupervision(Base):
    """A supervision (督办) of a ticket: who pressed whom, and the letter (督办函) sent to the leader."""

    __tablename__ = "ticket_supervisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    warning_id: Mapped[int | None] = mapped_column(
        ForeignKey("ticket_warnings.id", ondelete="SET NULL")
    )
    at: Mapped[datetime] = mapped_column(AwareDateTime)
    actor: Mapped[str] = mapped_column(String(NAME_MAX))
    role: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(WARNING_REASON_MAX))
    department: Mapped[str | None] = mapped_column(String(DEPT_CODE_MAX))
    leader: Mapped[str] = mapped_column(String(RECIPIENT_MAX))  # addressed to 分管领导
    letter: Mapped[str] = mapped_column(Text)  # 督办函
    note: Mapped[str] = mapped_column(String(NOTE_MAX), default="")


class OutboxMessage(Base):
    """A notification waiting to be sent (SMS notice or letter by email); drained by tickets.outbox."""

    __tablename__ = "notification_outbox"
    __table_args__ = (Index("ix_notification_outbox_status_id", "status", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(AwareDateTime)
    channel: Mapped[str] = mapped_column(String(8))  # sms / email
    recipient: Mapped[str] = mapped_column(String(RECIPIENT_MAX))
    subject: Mapped[str] = mapped_column(String(SUBJECT_MAX))
    body: Mapped[str] = mapped_column(Text)
    ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("tickets.id", ondelete="SET NULL"), index=True
    )
    warning_id: Mapped[int | None] = mapped_column(
        ForeignKey("ticket_warnings.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(String(8), default="pending")  # pending / sent / failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(ERROR_MAX))
    sent_at: Mapped[datetime | None] = mapped_column(AwareDateTime)
    # Handed to the gateway with every attempt, so it can drop a repeat of a message it already delivered.
    message_key: Mapped[str] = mapped_column(String(KEY_MAX), unique=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(
        AwareDateTime
    )  # not retried before (backoff)
    # The deliverer sending it now (claimed in a committed transaction); free again after lease_until.
    lease_owner: Mapped[str | None] = mapped_column(String(KEY_MAX))
    lease_until: Mapped[datetime | None] = mapped_column(AwareDateTime)


class TicketAttachment(Base):
    """A file a department attached to its reply (反馈附件); the bytes live under ``<data_dir>/attachments``."""

    __tablename__ = "ticket_attachments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(AwareDateTime)
    actor: Mapped[str] = mapped_column(String(NAME_MAX))
    department: Mapped[str | None] = mapped_column(String(DEPT_CODE_MAX))
    file_name: Mapped[str] = mapped_column(
        String(FILE_NAME_MAX)
    )  # as uploaded (shown, never used as a path)
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))  # also the stored file's name


class VoiceMessage(Base):
    """A caller's voice message (留言) and the ticket it was filed as; one per call (Asterisk Uniqueid)."""

    __tablename__ = "voice_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[str] = mapped_column(
        String(KEY_MAX), unique=True
    )  # Uniqueid of the caller's channel
    file: Mapped[str] = mapped_column(
        String(FILE_NAME_MAX)
    )  # in the messages folder (settings.message.folder)
    caller_phone: Mapped[str] = mapped_column(String(PHONE_MAX))
    record_status: Mapped[str] = mapped_column(
        String(16)
    )  # RECORD_STATUS: DTMF SILENCE TIMEOUT HANGUP … / sweep
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    # pending 转写中 / transcribed 已转写 / no_speech 无语音
    transcription: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(AwareDateTime)
    transcribed_at: Mapped[datetime | None] = mapped_column(AwareDateTime)
