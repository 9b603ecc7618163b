"""Errors of the console: a stable code, a Chinese message and an HTTP status.

The API answers ``{"error": {"code": "...", "message": "中文", "details": [...]}}``; pages show the message.
Every code reads ``area.reason``: ``console.*`` for the console's own refusals, the domain's area for a domain
refusal (``ticket.*``, ``kb.*``, ``leader.*``, ``callback.*``, ``ami.*`` …), whose HTTP status comes from the one
table :data:`DOMAIN_STATUSES`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import ValidationError

from config.errors import HotlineError
from ivr import blocklist, callcontrol, leaders
from ivr.ami import AmiError
from knowledge import errors as kb_errors
from tickets import errors as ticket_errors
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
    code: ClassVar[str] = "console.bad_request"
    default_message: ClassVar[str] = "请求有误"

    def __init__(
        self, message: str | None = None, *, details: list[dict[str, Any]] | None = None
    ) -> None:
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
    code = "console.too_deeply_nested"
    default_message = "请求体的 JSON 嵌套层数过多"


class Unauthenticated(ConsoleError):
    status = 401
    code = "console.unauthenticated"
    default_message = "请先登录"


class Forbidden(ConsoleError):
    status = 403
    code = "console.forbidden"
    default_message = "无权访问"


class CsrfFailed(ConsoleError):
    status = 403
    code = "console.csrf_failed"
    default_message = "页面已过期或来源不明，请刷新后重试"


class NotFound(ConsoleError):
    status = 404
    code = "console.not_found"
    default_message = "找不到该资源"


class MethodNotAllowed(ConsoleError):
    status = 405
    code = "console.method_not_allowed"
    default_message = "不支持该请求方法"


class Conflict(ConsoleError):
    status = 409
    code = "console.conflict"
    default_message = "与现有数据冲突"


class PayloadTooLarge(ConsoleError):
    status = 413
    code = "console.payload_too_large"
    default_message = "请求体过大"


class InvalidInput(ConsoleError):
    status = 422
    code = "console.invalid_input"
    default_message = "输入有误"


class TooManyRequests(ConsoleError):
    status = 429
    code = "console.too_many_requests"
    default_message = "尝试次数过多，请一分钟后再试"


class InternalError(ConsoleError):
    status = 500
    code = "console.internal_error"
    default_message = "服务器内部错误"


class Unavailable(ConsoleError):
    status = 503
    code = "console.unavailable"
    default_message = "服务暂不可用"


class GatewayTimeout(ConsoleError):
    status = 504
    code = "console.gateway_timeout"
    default_message = "后台服务未在规定时间内应答"


def invalid_input(exc: ValidationError) -> InvalidInput:
    """A pydantic validation failure as a 422 listing each bad field in Chinese."""
    details = []
    for err in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in err["loc"]) or "body"
        if is_control_character_error(err):
            details.append(
                {"field": field, "code": CONTROL_CHARACTER, "message": CONTROL_CHARACTER_MESSAGE}
            )
            continue
        message = _FIELD_MESSAGES.get(err["type"]) or err["msg"].removeprefix("Value error, ")
        details.append({"field": field, "code": err["type"], "message": message})
    summary = "；".join(
        d["message"] if d["field"] == "body" else f"{d['field']} {d['message']}" for d in details
    )
    return InvalidInput(f"输入有误：{summary}", details=details)


class DomainError(ConsoleError):
    """A domain refusal (:class:`config.errors.HotlineError`) with its own code and Chinese message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status  # type: ignore[misc]
        self.code = code  # type: ignore[misc]


DOMAIN_STATUSES: tuple[tuple[type[HotlineError], int], ...] = (
    (ticket_errors.InvalidInput, 422),
    (ticket_errors.NotFound, 404),
    (ticket_errors.Forbidden, 403),
    (ticket_errors.IllegalTransition, 409),
    (ticket_errors.VersionConflict, 409),
    (ticket_errors.TicketError, 400),
    (kb_errors.InvalidInput, 422),
    (kb_errors.NotFound, 404),
    (kb_errors.VersionConflict, 409),
    (kb_errors.IllegalStatus, 409),
    (kb_errors.DuplicateQuestion, 409),
    (kb_errors.KnowledgeError, 400),
    (leaders.InvalidShift, 422),
    (leaders.OverlappingShift, 409),
    (leaders.ShiftNotFound, 404),
    (leaders.LeaderScheduleError, 400),
    (blocklist.InvalidBlock, 422),
    (blocklist.AlreadyBlocked, 409),
    (blocklist.BlockNotFound, 404),
    (blocklist.AlreadyLifted, 409),
    (blocklist.BlocklistError, 400),
    (callcontrol.InvalidTarget, 422),
    (callcontrol.NoActiveCall, 409),
    (callcontrol.CallGone, 409),
    (callcontrol.CallControlError, 400),
    (AmiError, 503),  # the telephone system is unreachable: try again
    (
        HotlineError,
        409,
    ),  # any other refusal (e.g. a call-back outside the allowed hours: callback.*)
)
"""The HTTP status of every domain refusal, the first matching class wins; the code and message are the error's."""


def domain_status(error_type: type[HotlineError]) -> int:
    """The status :data:`DOMAIN_STATUSES` gives a domain error class."""
    return next(status for cls, status in DOMAIN_STATUSES if issubclass(error_type, cls))


def console_error(exc: ConsoleError | HotlineError) -> ConsoleError:
    """``exc`` as the console reports it (a domain refusal at its status from :data:`DOMAIN_STATUSES`)."""
    if isinstance(exc, ConsoleError):
        return exc
    return DomainError(domain_status(type(exc)), exc.code, exc.message)


def _with_subclasses(cls: type[Any]) -> list[type[Any]]:
    """``cls`` and the subclasses defined in its module (a loaded plug-in's subclass does not change the list)."""
    found = [cls]
    for sub in cls.__subclasses__():
        if sub.__module__.split(".")[0] == cls.__module__.split(".")[0]:
            found += _with_subclasses(sub)
    return found


def error_codes() -> dict[int, list[str]]:
    """HTTP status → the codes answered with it: the console's refusals and the domain classes of
    :data:`DOMAIN_STATUSES` that name one (a refusal may carry a more precise code of the same area)."""
    codes: dict[int, set[str]] = {}
    for cls in _with_subclasses(ConsoleError):
        if cls is not DomainError:
            codes.setdefault(cls.status, set()).add(cls.code)
    for domain_cls, _ in DOMAIN_STATUSES:
        for cls in _with_subclasses(domain_cls) if domain_cls is not HotlineError else []:
            if isinstance(cls.__dict__.get("code"), str):
                codes.setdefault(domain_status(cls), set()).add(cls.code)
    return {status: sorted(found) for status, found in sorted(codes.items())}


STATUS_ERRORS: dict[int, type[ConsoleError]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthenticated,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        PayloadTooLarge,
        InvalidInput,
        TooManyRequests,
        Unavailable,
        GatewayTimeout,
    )
}
