"""Phone numbers and callers as each role may see them (来电号码脱敏, 保密件).

:func:`caller_of` is the one place that decides what a role sees of a ticket's caller: every ticket list,
detail, export and screen built from tickets goes through it.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent_console.roles import CALLING_ROLES, CONFIDENTIAL_ROLES, Role
from config.pii import mask_phone as masked
from tickets.errors import InvalidInput
from tickets.phone import normalise_phone


def mask_phone(phone: str | None, role: Role | str) -> str:
    """The full number for roles that call back (话务员、派单员、管理员); masked for every other role.

    Mobile ``13812345678`` → ``138****5678``; landline ``0931-1234567`` → ``0931-***4567``,
    ``010-12345678`` → ``010-****5678``; anything else keeps only its last four digits.
    """
    if not phone:
        return ""
    if role in CALLING_ROLES:
        return phone
    try:
        return masked(normalise_phone(phone))
    except InvalidInput:
        return masked(phone)


CONFIDENTIAL_MARK = "（保密）"


@dataclass(frozen=True)
class Caller:
    """A ticket's caller as one role sees it."""

    phone: str
    name: str | None


def caller_of(
    phone: str | None, name: str | None, role: Role | str, *, confidential: bool
) -> Caller:
    """The caller of a ticket as ``role`` sees it: a confidential (保密) caller's name and number only for the
    roles that call back (:data:`~agent_console.roles.CONFIDENTIAL_ROLES`), otherwise both read 「（保密）」;
    any other caller's number as :func:`mask_phone` shows it."""
    if confidential and role not in CONFIDENTIAL_ROLES:
        return Caller(CONFIDENTIAL_MARK, CONFIDENTIAL_MARK)
    return Caller(mask_phone(phone, role), name)


def sees_confidential(role: Role | str) -> bool:
    """Whether ``role`` sees confidential callers (and may therefore find their tickets by phone number)."""
    return role in CONFIDENTIAL_ROLES
