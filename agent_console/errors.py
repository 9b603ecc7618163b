"""Errors of the console: a stable code, a Chinese message and an HTTP status.

The API answers ``{"error": {"code": "...", "message": "中文", "details": [...]}}``; pages show the message.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import ValidationError

from tickets.text import CONTROL_CHARACTER, CONTROL_CHARACTER_MESSAGE, is_control_character_error

_FIELD_MESSAGES = {
    "missing": "必填",
    "string_too_short": "太短",
    "string_too_long": "太长",
    "string_pattern_mismatch": "格式不正确",
    "enum": "不是可选的值",
    "literal_error": "不是可选的值",
    "extra_forbidden": "不允许的字段",
}


class ConsoleError(Exception):
    """Base of every error the console reports to a user."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    default_message: ClassVar[str] = "请求有误"

    def __init__(self, message: str | None = None, *, details: list[dict[str, Any]] | None = None) -> None:
        self.message = message or self.default_message
        self.details = details or []
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            err["details"] = self.details
        return {"error": err}


class BadRequest(ConsoleError):
    pass


class TooDeeplyNested(BadRequest):
    code = "too_deeply_nested"
    default_message = "请求体的 JSON 嵌套层数过多"


class Unauthenticated(ConsoleError):
    status = 401
    code = "unauthenticated"
    default_message = "请先登录"


class Forbidden(ConsoleError):
    status = 403
    code = "forbidden"
    default_message = "无权访问"


class CsrfFailed(ConsoleError):
    status = 403
    code = "csrf_failed"
    default_message = "页面已过期或来源不明，请刷新后重试"


class NotFound(ConsoleError):
    status = 404
    code = "not_found"
    default_message = "找不到该资源"


class MethodNotAllowed(ConsoleError):
    status = 405
    code = "method_not_allowed"
    default_message = "不支持该请求方法"


class Conflict(ConsoleError):
    status = 409
    code = "conflict"
    default_message = "与现有数据冲突"


class PayloadTooLarge(ConsoleError):
    status = 413
    code = "payload_too_large"
    default_message = "请求体过大"


class InvalidInput(ConsoleError):
    status = 422
    code = "invalid_input"
    default_message = "输入有误"


class TooManyRequests(ConsoleError):
    status = 429
    code = "too_many_requests"
    default_message = "尝试次数过多，请一分钟后再试"


class InternalError(ConsoleError):
    status = 500
    code = "internal_error"
    default_message = "服务器内部错误"


class Unavailable(ConsoleError):
    status = 503
    code = "unavailable"
    default_message = "服务暂不可用"


def invalid_input(exc: ValidationError) -> InvalidInput:
    """A pydantic validation failure as a 422 listing each bad field in Chinese."""
    details = []
    for err in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in err["loc"]) or "body"
        if is_control_character_error(err):
            details.append({"field": field, "code": CONTROL_CHARACTER, "message": CONTROL_CHARACTER_MESSAGE})
            continue
        message = _FIELD_MESSAGES.get(err["type"]) or err["msg"].removeprefix("Value error, ")
        details.append({"field": field, "code": err["type"], "message": message})
    summary = "；".join(d["message"] if d["field"] == "body" else f"{d['field']} {d['message']}" for d in details)
    return InvalidInput(f"输入有误：{summary}", details=details)


STATUS_ERRORS: dict[int, type[ConsoleError]] = {
    cls.status: cls for cls in (BadRequest, Unauthenticated, Forbidden, NotFound, MethodNotAllowed, Conflict,
                                PayloadTooLarge, InvalidInput, TooManyRequests, Unavailable)
}
