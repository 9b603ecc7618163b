"""The content of an entry as people edit and import it, with its rules (lengths, dates, TTS-safe speech)."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from knowledge.errors import InvalidInput
from knowledge.speech import speakable

MAX_QUESTION = 200
MAX_SPEECH = 300  # default; settings.knowledge.max_speech_chars
MAX_TEXT = 4000

FIELD_NAMES = {
    "question": "问题",
    "alt_questions": "相似问法",
    "answer_speech": "语音答案",
    "answer_text": "文字答案",
    "department": "承办单位",
    "keywords": "关键词",
    "source": "依据",
    "valid_from": "生效日期",
    "valid_to": "失效日期",
    "extra": "其他字段",
}


def _clean_list(values: list[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        v = v.strip()
        if v and v not in out:
            out.append(v)
    return out


class EntryContent(BaseModel):
    """What an editor writes; status and version are managed by the services."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    question: str = Field(min_length=1, max_length=MAX_QUESTION)
    answer_speech: str = Field(min_length=1, max_length=2000)
    answer_text: str = Field(min_length=1, max_length=MAX_TEXT)
    alt_questions: list[str] = Field(default_factory=list, max_length=30)
    department: str = Field("", max_length=100)
    keywords: list[str] = Field(default_factory=list, max_length=30)
    source: str = Field("", max_length=300)
    valid_from: date | None = None
    valid_to: date | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("alt_questions")
    @classmethod
    def _alts(cls, v: list[str]) -> list[str]:
        v = _clean_list(v)
        if any(len(q) > MAX_QUESTION for q in v):
            raise ValueError(f"每条相似问法不能超过 {MAX_QUESTION} 字")
        return v

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, v: list[str]) -> list[str]:
        v = _clean_list(v)
        if any(len(k) > 30 for k in v):
            raise ValueError("每个关键词不能超过 30 字")
        return v

    @field_validator("answer_speech")
    @classmethod
    def _speakable(cls, v: str) -> str:
        if not speakable(v):
            raise ValueError("语音答案不能含网址或括号，请另填 answer_speech")
        return v

    @model_validator(mode="after")
    def _dates(self) -> EntryContent:
        if self.valid_from and self.valid_to and self.valid_from > self.valid_to:
            raise ValueError("生效日期晚于失效日期")
        return self

    def snapshot(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def validate_content(data: dict[str, Any], *, max_speech: int = MAX_SPEECH) -> EntryContent:
    """Build an :class:`EntryContent`, or raise :class:`InvalidInput` with a Chinese message naming the field."""
    try:
        content = EntryContent.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput("kb.invalid_entry", describe(exc)) from None
    if len(content.answer_speech) > max_speech:
        raise InvalidInput("kb.invalid_entry", f"语音答案超过 {max_speech} 字，请精简")
    return content


def describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        name = FIELD_NAMES.get(field, field)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "string_too_long":
            msg = f"过长（最多 {err['ctx']['max_length']} 字）"
        elif err["type"] == "too_long":
            msg = f"条目过多（最多 {err['ctx']['max_length']} 个）"
        elif err["type"] in ("missing", "string_too_short"):
            msg = "不能为空"
        elif err["type"].startswith("date"):
            msg = f"日期格式错误（应为 YYYY-MM-DD）：{err.get('input')!r}"
        elif err["type"] == "extra_forbidden":
            msg = "未知字段"
        parts.append(f"{name}{'：' if name else ''}{msg}")
    return "；".join(parts)
