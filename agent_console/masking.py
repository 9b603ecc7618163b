"""Phone numbers as each role may see them (来电号码脱敏)."""

from __future__ import annotations

from agent_console.roles import CALLING_ROLES, Role
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
