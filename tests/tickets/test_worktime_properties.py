"""Property tests: working-time arithmetic agrees with a brute-force minute count across holidays.

Starts are drawn around 国庆 2025 and 2026 and 春节 2026 (with its make-up Saturdays); spans stay within three
weeks so the brute force over minutes stays fast.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config import load_settings
from tickets.worktime import WorkCalendar

SH = ZoneInfo("Asia/Shanghai")
CAL = WorkCalendar.from_settings(load_settings(env={}))
OH = load_settings(env={}).office_hours
BLOCKS = ((OH.morning_start, OH.morning_end), (OH.afternoon_start, OH.afternoon_end))
MINUTE = timedelta(minutes=1)
MAX_SPAN_MINUTES = 21 * 24 * 60
statutory_workday = lru_cache(maxsize=None)(chinese_calendar.is_workday)

WINDOWS = [
    datetime(2025, 9, 24, tzinfo=SH),
    datetime(2026, 2, 8, tzinfo=SH),
    datetime(2026, 9, 20, tzinfo=SH),
]

starts = st.builds(
    lambda base, minutes: base + timedelta(minutes=minutes),
    st.sampled_from(WINDOWS),
    st.integers(0, 14 * 24 * 60),
)
# the same instants, sometimes given in UTC: the calendar must not care which zone comes in
any_zone_starts = st.builds(lambda t, utc: t.astimezone(UTC) if utc else t, starts, st.booleans())
working_minutes = st.integers(0, 6 * 450)  # up to six working days

fast = settings(max_examples=40, deadline=None)


def is_working_minute(t: datetime) -> bool:
    local = t.astimezone(SH)
    clock = local.time()
    return statutory_workday(local.date()) and any(lo <= clock < hi for lo, hi in BLOCKS)


def brute_minutes_between(a: datetime, b: datetime) -> int:
    count, t = 0, a
    while t < b:
        count += is_working_minute(t)
        t += MINUTE
    return count


def brute_add_minutes(start: datetime, minutes: int) -> datetime:
    t = start
    while minutes:
        minutes -= is_working_minute(t)
        t += MINUTE
    return t


@fast
@given(any_zone_starts, st.integers(0, MAX_SPAN_MINUTES))
def test_working_seconds_between_matches_minute_count(a: datetime, span: int) -> None:
    b = a + timedelta(minutes=span)
    assert CAL.working_seconds_between(a, b) == 60 * brute_minutes_between(a, b)


@fast
@given(any_zone_starts, working_minutes)
def test_add_working_hours_matches_minute_walk(start: datetime, minutes: int) -> None:
    due = CAL.add_working_hours(start, minutes / 60)
    assert due == brute_add_minutes(start, minutes)
    assert due.tzinfo == SH


@fast
@given(starts, st.floats(0, 60, allow_nan=False), st.floats(0, 60, allow_nan=False))
def test_add_working_hours_is_monotone_in_hours(start: datetime, h1: float, h2: float) -> None:
    lo, hi = sorted((h1, h2))
    assert CAL.add_working_hours(start, lo) <= CAL.add_working_hours(start, hi)


@fast
@given(starts, starts, st.floats(0, 60, allow_nan=False))
def test_add_working_hours_is_monotone_in_start(s1: datetime, s2: datetime, hours: float) -> None:
    lo, hi = sorted((s1, s2))
    assert CAL.add_working_hours(lo, hours) <= CAL.add_working_hours(hi, hours)


@fast
@given(any_zone_starts, st.floats(0, 60, allow_nan=False))
def test_working_seconds_between_inverts_add_working_hours(start: datetime, hours: float) -> None:
    assert CAL.working_seconds_between(start, CAL.add_working_hours(start, hours)) == pytest.approx(
        hours * 3600, abs=1e-3
    )


@fast
@given(starts, st.integers(0, MAX_SPAN_MINUTES))
def test_add_working_hours_of_the_span_reaches_back_no_later_than_the_end(
    a: datetime, span: int
) -> None:
    b = a + timedelta(minutes=span)
    back = CAL.add_working_hours(a, CAL.working_seconds_between(a, b) / 3600)
    assert back <= b
    assert CAL.working_seconds_between(back, b) == 0  # only closed time lies between


@fast
@given(starts, st.integers(0, 5))
def test_a_working_day_is_the_length_of_the_office_day(start: datetime, days: int) -> None:
    day_hours = (
        sum(
            (datetime.combine(start.date(), hi) - datetime.combine(start.date(), lo)).seconds
            for lo, hi in BLOCKS
        )
        / 3600
    )
    assert CAL.add_working_days(start, days) == CAL.add_working_hours(start, days * day_hours)
