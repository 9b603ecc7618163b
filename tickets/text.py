"""Text accepted from people and machines: no control characters, the same rule on every database.

PostgreSQL refuses NUL in text, and the other C0 characters (and DEL) only hide content from its readers, so
every text field of the ticket domain's, the console's and the citizens' schemas is a :data:`Line` (no control
character) or a :data:`Text` (several lines: tab, line feed and carriage return allowed). Both are plain string
patterns, so a field's own length limits still report ``string_too_long``; a refusal is reported as
:data:`CONTROL_CHARACTER` (see :func:`is_control_character_error`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import StringConstraints

CONTROL_CHARACTER = "control_character"
CONTROL_CHARACTER_MESSAGE = "不能包含控制字符"
LINE_PATTERN = r"^[^\x00-\x1f\x7f]*$"
TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
Line = Annotated[str, StringConstraints(pattern=LINE_PATTERN)]
Text = Annotated[str, StringConstraints(pattern=TEXT_PATTERN)]


def is_control_character_error(error: Mapping[str, Any]) -> bool:
    """Whether a pydantic error is a :data:`Line` or :data:`Text` refusing a control character."""
    return error["type"] == "string_pattern_mismatch" and error.get("ctx", {}).get("pattern") in (
        LINE_PATTERN,
        TEXT_PATTERN,
    )


def has_control_character(value: str, *, multiline: bool) -> bool:
    """The same rule for text checked outside a schema (e.g. a note)."""
    return re.fullmatch(TEXT_PATTERN if multiline else LINE_PATTERN, value) is None
