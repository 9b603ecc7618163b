"""JSON shapes of the ticket API (staff side); limits mirror ``tickets.models`` so a too-long field is a 422
naming the field before anything is written."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, Field, model_validator

from agent_console.schemas import Model
from tickets import models as m
from tickets.schemas import CallbackResult, Channel, DispatchMode, Kind, Urgency
from tickets.states import State
from tickets.text import Line, Text

ActionName = Literal[
    "review",
    "dispatch",
    "return",
    "sign",
    "start",
    "request_extension",
    "approve_extension",
    "reject_extension",
    "reply",
    "verify",
    "reject_reply",
    "withdraw",
]
WarningLevel = Literal["yellow", "red"]  # 黄牌 红牌


def _in_utc(value: datetime) -> datetime:
    return value if value.tzinfo is None else value.astimezone(UTC)


# A moment as the API shows it, in UTC: the same whether the ticket was read back from the database or has just
# been changed in memory (where the services keep local time).
Instant = Annotated[datetime, AfterValidator(_in_utc)]


class TicketQuery(Model):
    """Search filters (all optional, combined with AND; an empty one means "any")."""

    @model_validator(mode="before")
    @classmethod
    def _empty_is_any(cls, data: Any) -> Any:
        return {k: v for k, v in data.items() if v != ""} if isinstance(data, dict) else data

    state: State | None = None
    department: Line | None = Field(
        default=None, max_length=m.DEPT_CODE_MAX, description="主办单位"
    )
    phone: Line | None = Field(default=None, max_length=m.PHONE_MAX, description="来电号码")
    text: Line | None = Field(default=None, max_length=100, description="诉求内容关键词")
    ticket_no: Line | None = Field(default=None, max_length=20)
    district: Line | None = Field(default=None, max_length=m.PLACE_MAX)
    category: Line | None = Field(default=None, max_length=m.CATEGORY_MAX)
    warning: WarningLevel | None = None
    created_from: date | None = None
    created_to: date | None = None
    limit: int = Field(default=50, ge=1, le=200)
    cursor: Line | None = Field(
        default=None, max_length=200, description="上一页返回的 next_cursor"
    )


class ActionOut(Model):
    action: str
    label: str


class EventOut(Model):
    at: Instant
    actor: str
    role: str
    role_label: str
    action: str
    action_label: str
    from_state: str | None
    to_state: str
    note: str
    payload: dict[str, object]


class AttachmentOut(Model):
    id: int
    file_name: str
    content_type: str
    size: int
    actor: str
    at: Instant
    url: str


class TicketSummary(Model):
    """One line of a ticket list."""

    ticket_no: str
    state: State
    state_label: str
    channel: str
    kind: str
    urgency: str
    category: str | None
    district: str | None
    caller_phone: str = Field(description="按角色脱敏的来电号码（保密件仅回访角色可见）")
    caller_name: str | None = Field(description="来电人（保密件仅回访角色可见）")
    confidential: bool = Field(description="保密件：来电人要求对姓名、号码保密")
    summary: str
    lead_department: str | None
    due_at: Instant | None
    is_repeat: bool
    created_at: Instant
    warning: WarningLevel | None = Field(description="预警：yellow 黄牌 / red 红牌")


class MergeLinkOut(Model):
    ticket_no: str
    state: State
    state_label: str
    version: int


class TicketOut(TicketSummary):
    merged_into: MergeLinkOut | None = Field(description="并单：本工单已并入的主单")
    merged: list[MergeLinkOut] = Field(description="并单：并入本工单的重复工单")
    content: str
    version: int = Field(description="乐观锁版本号：执行操作时作为 expected_version 传回")
    warning_reasons: list[str]
    sign_for_due: Instant | None
    extension_requested_until: Instant | None
    updated_at: Instant
    return_count: int
    address: str | None
    street: str | None
    grid: str | None = Field(description="网格（网格员受理的工单）")
    transcript: str | None
    dispatch_mode: str | None
    co_departments: list[str]
    answer: str | None
    reply: str | None
    satisfaction: str | None
    callback_attempts: int
    dispatched_at: Instant | None
    signed_at: Instant | None
    replied_at: Instant | None
    closed_at: Instant | None
    actions: list[ActionOut] = Field(description="当前用户现在可执行的操作")
    events: list[EventOut] = Field(description="审计记录（全部状态变化）")
    attachments: list[AttachmentOut]


class TicketList(Model):
    tickets: list[TicketSummary]
    next_cursor: str | None = Field(description="下一页（更早的工单）的翻页标记")


class TicketCreate(Model):
    """受理 (intake). With ``answer`` the ticket is closed on the spot (即办)."""

    channel: Channel = "phone"
    caller_phone: Line = Field(min_length=1, max_length=m.PHONE_MAX)
    content: Text = Field(min_length=1, max_length=m.CONTENT_MAX)
    caller_name: Line | None = Field(default=None, max_length=m.NAME_MAX)
    address: Line | None = Field(default=None, max_length=m.ADDRESS_MAX)
    district: Line | None = Field(default=None, max_length=m.PLACE_MAX)
    street: Line | None = Field(default=None, max_length=m.PLACE_MAX)
    category: Line | None = Field(default=None, max_length=m.CATEGORY_MAX)
    kind: Kind = "咨询"
    urgency: Urgency = "normal"
    transcript: Text | None = Field(default=None, max_length=m.TRANSCRIPT_MAX)
    call_id: Line | None = Field(default=None, max_length=m.KEY_MAX)
    knowledge_id: Line | None = Field(default=None, max_length=m.KEY_MAX)
    answer: Text | None = Field(
        default=None, max_length=m.ANSWER_MAX, description="即办答复（当场办结）"
    )
    confidential: bool = Field(default=False, description="保密：来电人要求对姓名、号码保密")


class ActionRequest(Model):
    """One step of the loop on the ticket read at ``expected_version`` (409 if it changed since)."""

    action: ActionName
    expected_version: int = Field(ge=1)
    note: Text = Field(default="", max_length=m.NOTE_MAX)
    lead_department: Line | None = Field(
        default=None, max_length=m.DEPT_CODE_MAX, description="派单：主办单位"
    )
    co_departments: list[Line] | None = Field(
        default=None, max_length=10, description="双派：协办单位"
    )
    mode: DispatchMode | None = Field(
        default=None, description="direct 直派 / joint 双派 / first_receiver 首接负责"
    )
    reply: Text | None = Field(default=None, max_length=m.ANSWER_MAX, description="反馈内容")
    until: AwareDatetime | None = Field(default=None, description="延期至")


class CallbackResultIn(Model):
    result: CallbackResult
    expected_version: int = Field(ge=1)


class SuperviseIn(Model):
    note: Text = Field(default="", max_length=m.NOTE_MAX)


class Accepted(Model):
    status: str
    message: str


class MergeIn(Model):
    """并单: the duplicates to merge into this (main) ticket, read at ``expected_version``."""

    tickets: list[Line] = Field(min_length=1, max_length=20, description="并入的重复工单编号")
    expected_version: int = Field(ge=1, description="主单的版本号")
    note: Text = Field(default="", max_length=m.NOTE_MAX)


class ConfidentialIn(Model):
    """保密: set (agent, dispatcher, admin) or lift (admin) on the ticket read at ``expected_version``."""

    confidential: bool
    expected_version: int = Field(ge=1)
    note: Text = Field(default="", max_length=m.NOTE_MAX)


class MergeCandidates(Model):
    tickets: list[TicketSummary] = Field(description="重复件检测关联、可并入本工单的工单")
