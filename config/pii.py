"""Personal information (个人信息, PIPL) kept out of logs and stored free text: phone numbers masked.

:func:`mask_phone` masks one number (``13812345678`` → ``138****5678``, ``0931-1234567`` → ``0931-***4567``);
:func:`mask_phones` masks every mobile or landline number inside a text, also one written in Chinese numerals
(一三八…) or full-width digits; :class:`MaskPhones` is the logging filter that applies it to every record a
handler writes, the safety net under log calls that already mask or leave out what they log.
"""

from __future__ import annotations

import logging
import re

_SHORTEST_PERSONAL = (
    7  # shorter numbers are service numbers (12345, 110, 95588) and stay as they are
)
# Full-width digits, and numerals as the recogniser may write a spoken number (幺 is how 1 is said in phone
# numbers), read as ASCII digits; one character each, so a match has the same span in the original text.
_NUMERALS = str.maketrans("０１２３４５６７８９〇零一二三四五六七八九幺", "0123456789001234567891")
# A mobile (with an optional +86 / 0086 / 86 prefix) or a landline with its area code, as people write them
# (spaces or dashes between the groups), and not part of a longer digit run.
_PHONE = re.compile(
    r"(?<!\d)(?:(?:\+|00)?86[\s-]?)?1[3-9]\d(?P<mobile>[\s-]?\d{4}[\s-]?)\d{4}(?!\d)"
    r"|(?<!\d)(?:010|02\d|0[3-9]\d\d)[\s-]?(?P<local>[1-9]\d{2,3})\d{4}(?!\d)"
)
_DIGIT = re.compile(r"\d")


def mask_phones(text: str) -> str:
    """``text`` with the middle digits of each phone number in it starred; the last four are kept."""
    shadow = text.translate(_NUMERALS)
    parts: list[str] = []
    kept = 0
    for match in _PHONE.finditer(shadow):
        start, end = match.span("mobile" if match.group("mobile") is not None else "local")
        parts += [text[kept:start], _DIGIT.sub("*", shadow[start:end])]
        kept = end
    return "".join(parts) + text[kept:] if parts else text


def mask_phone(number: str | None) -> str:
    """One phone number masked: mobiles and landlines as :func:`mask_phones` does, any other number of seven
    digits or more down to its last four, shorter service numbers unchanged."""
    if not number:
        return ""
    masked = mask_phones(number)
    if masked != number:
        return masked
    digits = re.sub(r"\D", "", number)
    return number if len(digits) < _SHORTEST_PERSONAL else "*" * (len(digits) - 4) + digits[-4:]


class MaskPhones(logging.Filter):
    """Masks phone numbers in each record's message, exception and stack text (install it on handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = mask_phones(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_phones(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_phones(record.stack_info)
        return True
