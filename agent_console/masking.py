"""Phone numbers as each role may see them (来电号码脱敏)."""

from __future__ import annotations

import re

from agent_console.roles import CALLING_ROLES, Role
from tickets.errors import InvalidInput
from tickets.phone import normalise_phone

_SHORTEST_PERSONAL = 7  # shorter numbers are service numbers (12345, 110, 95588) and shown as they are


def _keep_last4(digits: str) -> str:
    return "*" * (len(digits) - 4) + digits[-4:]


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
        number = normalise_phone(phone)
    except InvalidInput:
        digits = re.sub(r"\D", "", phone)
        return phone if len(digits) < _SHORTEST_PERSONAL else _keep_last4(digits)
    area, dash, local = number.rpartition("-")
    if dash:
        return f"{area}-{_keep_last4(local)}"
    return f"{number[:3]}****{number[-4:]}"
