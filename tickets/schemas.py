"""Input of the ticket services: the actor, the intake draft and each action's fields.

Every validation failure surfaces as :class:`~tickets.errors.InvalidInput` with a stable code and a Chinese
message naming the field, never as a raw pydantic error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tickets import models as m
from tickets.categories import load_categories
from tickets.errors import InvalidInput
from tickets.phone import UNKNOWN_PHONE, normalise_phone
from tickets.text import (
    CONTROL_CHARACTER_MESSAGE,
    Line,
    Text,
    has_control_character,
    is_control_character_error,
)

Channel = Literal[
    "phone", "bot", "web", "wechat", "grid", "leader-line", "message"
]  # … 领导专线 留言
# channels whose tickets may have no caller number (UNKNOWN_PHONE): a voice message from a withheld number
UNKNOWN_CALLER_CHANNELS = frozenset({"message"})
Kind = Literal["咨询", "求助", "投诉", "举报", "建议", "表扬"]
Urgency = Literal["normal", "urgent", "very_urgent"]  # 一般 紧急 特急
DispatchMode = Literal["direct", "joint", "first_receiver"]  # 直派 双派 首接负责
CallbackResult = Literal["satisfied", "basically_satisfied", "unsatisfied", "unreachable"]

FIELD_LABELS: dict[str, str] = {
    "channel": "受理渠道",
    "caller_phone": "来电号码",
    "content": "诉求内容",
    "caller_name": "来电人姓名",
    "address": "地址",
    "district": "区县",
    "street": "街道",
    "category": "诉求分类",
    "kind": "诉求类型",
    "urgency": "紧急程度",
    "transcript": "通话转写",
    "recording": "录音",
    "call_id": "通话编号",
    "leader_name": "接听领导",
    "knowledge_id": "知识库条目",
    "answer": "即办答复",
    "reply": "办理反馈",
    "lead_department": "主办单位",
    "co_departments": "协办单位",
    "mode": "派单方式",
    "until": "延期至",
    "satisfaction": "满意度",
    "note": "备注",
    "confidential": "保密",
}


def _text(max_length: int, kind: Any = Line) -> Any:
    """A required text of at most ``max_length`` characters: one line, or several with ``kind=Text``."""
    return Annotated[kind, Field(min_length=1, max_length=max_length)]


def invalid_input_from(exc: ValidationError) -> InvalidInput:
    """The first pydantic error as an InvalidInput with a Chinese message."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or None
    label = FIELD_LABELS.get(str(err["loc"][0]), field or "输入") if err["loc"] else "输入"
    kind, ctx, value = err["type"], err.get("ctx", {}), err.get("input")
    if kind == "string_too_long":
        n = len(value) if isinstance(value, str) else "?"
        message = f"{label}过长：最多 {ctx['max_length']} 字，实际 {n} 字"
        return InvalidInput(message, code="ticket.too_long", field=field)
    if kind in ("missing", "string_too_short"):
        return InvalidInput(f"请填写{label}", code="ticket.missing_field", field=field)
    if kind == "literal_error":
        choices = str(ctx.get("expected", "")).replace(" or ", ", ")
        return InvalidInput(
            f"{label}取值无效：{value!r}（可选：{choices}）",
            code="ticket.invalid_choice",
            field=field,
        )
    if is_control_character_error(err):
        return InvalidInput(
            f"{label}{CONTROL_CHARACTER_MESSAGE}", code="ticket.control_character", field=field
        )
    if kind == "extra_forbidden":
        return InvalidInput(f"不接受的字段：{field}", code="ticket.unknown_field", field=field)
    return InvalidInput(
        f"{label}格式不正确：{err['msg']}", code="ticket.invalid_input", field=field
    )


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    OPTIONAL_TEXT: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="wrap")
    @classmethod
    def _as_invalid_input(cls, data: Any, handler: Any) -> Any:
        if isinstance(data, dict):  # an empty optional text means "not given"
            data = {
                k: (None if k in cls.OPTIONAL_TEXT and isinstance(v, str) and not v.strip() else v)
                for k, v in data.items()
            }
        try:
            return handler(data)
        except ValidationError as exc:
            raise invalid_input_from(exc) from None


@dataclass(frozen=True)
class Actor:
    """Who performs an action: name, role (see ``tickets.states.Role``) and, for handlers, their department."""

    name: str
    role: str
    department: str | None = None


class TicketDraft(_Input):
    """What intake knows about a new ticket (受理信息)."""

    OPTIONAL_TEXT: ClassVar[tuple[str, ...]] = (
        "caller_name",
        "address",
        "district",
        "street",
        "category",
        "transcript",
        "recording",
        "call_id",
        "leader_name",
        "knowledge_id",
        "grid",
    )

    channel: Channel
    caller_phone: str
    content: _text(m.CONTENT_MAX, Text)  # type: ignore[valid-type]
    caller_name: _text(m.NAME_MAX) | None = None  # type: ignore[valid-type]
    address: _text(m.ADDRESS_MAX) | None = None  # type: ignore[valid-type]
    district: _text(m.PLACE_MAX) | None = None  # type: ignore[valid-type]
    street: _text(m.PLACE_MAX) | None = None  # type: ignore[valid-type]
    category: _text(m.CATEGORY_MAX) | None = None  # type: ignore[valid-type]
    kind: Kind = "咨询"
    urgency: Urgency = "normal"
    transcript: _text(m.TRANSCRIPT_MAX, Text) | None = None  # type: ignore[valid-type]
    recording: _text(m.REFERENCE_MAX) | None = None  # type: ignore[valid-type]
    call_id: _text(m.KEY_MAX) | None = None  # type: ignore[valid-type]
    leader_name: _text(m.NAME_MAX) | None = None  # type: ignore[valid-type]
    knowledge_id: _text(m.KEY_MAX) | None = None  # type: ignore[valid-type]
    grid: _text(m.GRID_MAX) | None = None  # type: ignore[valid-type]  # 网格 of the grid worker who filed it
    confidential: bool = False  # 保密: the caller asked that their name and number be kept back

    @field_validator("caller_phone")
    @classmethod
    def _phone(cls, value: str, info: ValidationInfo) -> str:
        if value == UNKNOWN_PHONE and info.data.get("channel") in UNKNOWN_CALLER_CHANNELS:
            return value
        return normalise_phone(value)

    @field_validator("category")
    @classmethod
    def _category(cls, value: str | None) -> str | None:
        return None if value is None else load_categories().validate(value)


class NoFields(_Input):
    """An action that takes no fields."""


class InstantFields(_Input):
    answer: _text(m.ANSWER_MAX, Text)  # type: ignore[valid-type]


class DispatchFields(_Input):
    lead_department: _text(m.DEPT_CODE_MAX)  # type: ignore[valid-type]
    co_departments: list[_text(m.DEPT_CODE_MAX)] = []  # type: ignore[valid-type]
    mode: DispatchMode = "direct"

    @model_validator(mode="after")
    def _mode_matches_departments(self) -> DispatchFields:
        if self.lead_department in self.co_departments or len(set(self.co_departments)) != len(
            self.co_departments
        ):
            raise InvalidInput(
                "主办单位与协办单位不能重复",
                code="ticket.duplicate_department",
                field="co_departments",
            )
        if (self.mode == "joint") != bool(self.co_departments):
            raise InvalidInput(
                "双派须指定至少一个协办单位；直派和首接负责不设协办单位",
                code="ticket.dispatch_mode",
                field="mode",
            )
        return self


class ReplyFields(_Input):
    reply: _text(m.ANSWER_MAX, Text)  # type: ignore[valid-type]


class ExtensionRequestFields(_Input):
    until: AwareDatetime


class ExtensionApprovalFields(_Input):
    until: AwareDatetime | None = None  # default: the date requested


class CallbackCloseFields(_Input):
    satisfaction: Literal["satisfied", "basically_satisfied", "unreachable"]


ACTION_FIELDS: dict[str, type[_Input]] = {
    "close_instant": InstantFields,
    "dispatch": DispatchFields,
    "reply": ReplyFields,
    "request_extension": ExtensionRequestFields,
    "approve_extension": ExtensionApprovalFields,
    "callback_close": CallbackCloseFields,
}


def parse_fields(action: str, fields: dict[str, Any]) -> _Input:
    """The validated fields of ``action`` (InvalidInput on unknown or bad ones)."""
    return ACTION_FIELDS.get(action, NoFields).model_validate(fields)


def check_note(note: str) -> str:
    if len(note) > m.NOTE_MAX:
        raise InvalidInput(
            f"备注过长：最多 {m.NOTE_MAX} 字，实际 {len(note)} 字",
            code="ticket.too_long",
            field="note",
        )
    if has_control_character(note, multiline=True):
        raise InvalidInput(
            f"备注{CONTROL_CHARACTER_MESSAGE}", code="ticket.control_character", field="note"
        )
    return note.strip()


def check_actor(actor: Actor) -> None:
    if not actor.name.strip() or len(actor.name) > m.NAME_MAX:
        raise InvalidInput(
            f"操作人姓名须为 1–{m.NAME_MAX} 字", code="ticket.invalid_actor", field="actor"
        )


def as_json(value: Any) -> Any:
    """Field values as JSON for the audit payload."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [as_json(v) for v in value]
    return value
