"""One table maps every domain refusal to its HTTP status; every error code reads ``area.reason``."""

from __future__ import annotations

import re

import pytest

from agent_console.app import FEATURES
from agent_console.errors import ConsoleError, NotFound, console_error, error_codes
from agent_console.openapi import build_openapi
from agent_console.routing import RouteRegistry
from agent_console.schemas import ERROR_CODE_PATTERN
from config.errors import CodedError, HotlineError
from ivr import leaders
from ivr.ami import AmiTimeout
from knowledge import errors as kb_errors
from tickets import errors as ticket_errors


class CallbackRefused(CodedError):
    code = "callback.outside_hours"


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (ticket_errors.InvalidInput("太长"), 422, "ticket.invalid_input"),
        (ticket_errors.NotFound("无"), 404, "ticket.not_found"),
        (ticket_errors.VersionConflict("旧"), 409, "ticket.version_conflict"),
        (
            ticket_errors.TicketError("错", code="ticket.audit_inconsistent"),
            400,
            "ticket.audit_inconsistent",
        ),
        (kb_errors.NotFound(7), 404, "kb.not_found"),
        (kb_errors.VersionConflict(7, 1, 2), 409, "kb.version_conflict"),
        (kb_errors.InvalidInput("kb.invalid_entry", "错"), 422, "kb.invalid_entry"),
        (kb_errors.ImportRejected("a.csv", []), 400, "kb.import_rejected"),
        (leaders.InvalidShift("错"), 422, "leader.invalid_shift"),
        (leaders.OverlappingShift("重叠"), 409, "leader.overlap"),
        (leaders.ShiftNotFound("无"), 404, "leader.not_found"),
        (AmiTimeout(), 503, "ami.timeout"),
        (CallbackRefused("不在回访时段"), 409, "callback.outside_hours"),
        (NotFound(), 404, "console.not_found"),
    ],
)
def test_every_refusal_gets_its_status_from_one_table(
    error: ConsoleError | HotlineError, status: int, code: str
) -> None:
    refusal = console_error(error)
    assert (refusal.status, refusal.code, refusal.message) == (status, code, error.message)


def test_every_listed_code_reads_area_dot_reason_and_is_in_the_openapi_document() -> None:
    codes = {code for found in error_codes().values() for code in found}
    assert {"console.not_found", "ticket.not_found", "kb.not_found", "leader.not_found"} <= codes
    assert all(re.fullmatch(ERROR_CODE_PATTERN, code) for code in codes), codes
    prop = build_openapi(RouteRegistry.of(FEATURES), version="test")["components"]["schemas"][
        "ErrorInfo"
    ]["properties"]["code"]
    assert prop["pattern"] == ERROR_CODE_PATTERN and set(prop["examples"]) == codes
    not_found = (
        "blocklist.not_found、console.not_found、kb.miss_not_found、kb.not_found、leader.not_found、"
        "ticket.not_found"
    )
    assert f"404：{not_found}" in prop["description"]
