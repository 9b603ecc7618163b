"""Caller numbers are ASCII whatever the caller typed: full-width forms count as ASCII, other digit scripts are
refused, and the canonical form is a fixed point (so per-phone limits, repeats and dialling see one number)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tickets.errors import InvalidInput
from tickets.phone import normalise_phone

ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
DEVANAGARI = str.maketrans("0123456789", "०१२३४५६७८९")
FULL_WIDTH = str.maketrans("0123456789-()+ ", "０１２３４５６７８９－（）＋\u3000")


def test_full_width_number_is_the_ascii_number() -> None:
    assert normalise_phone("138１２３４５６７８") == "13812345678"
    assert normalise_phone("（０９３１）１２３４５６７") == "0931-1234567"
    assert normalise_phone("+86 931 1234567".translate(FULL_WIDTH)) == "0931-1234567"


@pytest.mark.parametrize(
    "raw",
    [
        "138" + "12345678".translate(ARABIC_INDIC),
        "13812345678".translate(DEVANAGARI),
        "0931-1234567".translate(ARABIC_INDIC),
        "1381234567\u0663",
    ],
)
def test_other_digit_scripts_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput) as err:
        normalise_phone(raw)
    assert err.value.code == "ticket.invalid_phone"


_digit_chars = st.characters(categories=["Nd"])
_phone_like = st.lists(
    st.one_of(_digit_chars, st.sampled_from(list("0123456789 -()+（）－＋"))),
    min_size=7,
    max_size=16,
).map("".join)


@given(st.one_of(_phone_like, st.text(max_size=24)))
@example("138１２３４５６７８")
@example("+86 10 12345678")
def test_output_is_ascii_and_a_fixed_point(raw: str) -> None:
    try:
        out = normalise_phone(raw)
    except InvalidInput:
        return
    assert out.isascii() and all(c.isdigit() or c == "-" for c in out)
    assert normalise_phone(out) == out


@given(st.text(st.characters(categories=["Nd"]), min_size=11, max_size=11))
def test_digits_outside_ascii_and_full_width_never_pass(raw: str) -> None:
    if all(unicodedata.normalize("NFKC", c).isascii() for c in raw):
        return  # ASCII or full-width digits: the same number in another form
    with pytest.raises(InvalidInput):
        normalise_phone(raw)
