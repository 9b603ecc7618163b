"""Caller phone numbers (来电号码): one canonical form for mobiles and landlines."""

from __future__ import annotations

import re
import unicodedata

from tickets.errors import InvalidInput

# After NFKC (full-width digits, spaces, dashes and brackets become ASCII) only ASCII digits are accepted:
# other Unicode digits (Arabic-Indic, Devanagari …) would defeat per-phone limits, repeat detection and dialling.
_SEPARATORS = re.compile(r"[\s\-()]", re.ASCII)
_MOBILE = re.compile(r"1[3-9][0-9]{9}")
# Area codes: 010 and 02x are three digits with an 8-digit local number; others are four digits (03xx–09xx)
# with a 7- or 8-digit local number. Local numbers never start with 0.
_LANDLINE_3 = re.compile(r"(010|02[0-9])([1-9][0-9]{7})")
_LANDLINE_4 = re.compile(r"(0[3-9][0-9]{2})([1-9][0-9]{6,7})")
UNKNOWN_PHONE = (
    ""  # a caller who withheld the number or whose number is unusable: never called, never texted
)
UNKNOWN_PHONE_LABEL = "未显示号码"  # how the console and the ticket show it


def normalise_phone(raw: str) -> str:
    """``13812345678`` for mobiles, ``0931-1234567`` / ``010-12345678`` for landlines (always ASCII).

    Full-width characters count as their ASCII forms (NFKC); spaces, dashes and brackets are ignored; a
    ``+86`` / ``0086`` / ``86`` country prefix is stripped. Anything else (any other digit script included)
    raises :class:`InvalidInput` (code ``ticket.invalid_phone``).
    """
    digits = _SEPARATORS.sub("", unicodedata.normalize("NFKC", raw).strip())
    candidates = [digits]
    for prefix in ("+86", "0086"):
        if digits.startswith(prefix):
            rest = digits[len(prefix) :]
            # Dialled from abroad, a landline loses its trunk 0: +86 931 1234567.
            candidates = [rest, "0" + rest]
    if digits.startswith("86") and len(digits) == 13:
        candidates = [digits[2:]]
    for number in candidates:
        if _MOBILE.fullmatch(number):
            return number
        for pattern in (_LANDLINE_3, _LANDLINE_4):
            if m := pattern.fullmatch(number):
                return f"{m.group(1)}-{m.group(2)}"
    raise InvalidInput(
        f"来电号码格式不正确：{raw!r}。"
        "请填写 11 位手机号（如 13812345678）或带区号的固话（如 0931-1234567、010-12345678）",
        code="ticket.invalid_phone",
        field="caller_phone",
    )


def is_mobile(phone: str) -> bool:
    """Whether a number in canonical form (:func:`normalise_phone`) is a mobile, which can take an SMS."""
    return bool(_MOBILE.fullmatch(phone))


def phone_or_unknown(raw: str) -> str:
    """The canonical form of ``raw``, or :data:`UNKNOWN_PHONE` when it was withheld or is not a valid number."""
    try:
        return normalise_phone(raw)
    except InvalidInput:
        return UNKNOWN_PHONE
