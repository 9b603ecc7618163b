"""Working-time arithmetic on the statutory calendar: worked examples a dispatcher would check by hand."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from config import SettingsError, load_settings
from config.settings import SHIPPED_TOML, OfficeHours
from tickets.worktime import WorkCalendar

SH = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def cal() -> WorkCalendar:
    return WorkCalendar.from_settings(load_settings(env={}))


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SH)


def test_statutory_holidays_and_make_up_days(cal: WorkCalendar) -> None:
    assert not cal.is_working_day(date(2025, 10, 1))  # 国庆
    assert cal.is_working_day(date(2025, 9, 28))  # Sunday, 调休 make-up day
    assert cal.is_working_day(date(2026, 2, 14)) and cal.is_working_day(
        date(2026, 2, 28)
    )  # 春节 make-up Saturdays
    assert not cal.is_working_day(date(2026, 2, 23))  # Monday inside the 春节 holiday
    assert not cal.is_working_day(date(2025, 11, 15))  # ordinary Saturday


def test_friday_afternoon_plus_one_working_day_is_next_working_day_same_time(
    cal: WorkCalendar,
) -> None:
    assert cal.add_working_days(at(2025, 11, 14, 16), 1) == at(2025, 11, 17, 16)


def test_working_days_skip_national_day_and_use_make_up_days(cal: WorkCalendar) -> None:
    assert cal.add_working_days(at(2025, 9, 30, 16), 1) == at(2025, 10, 9, 16)
    assert cal.add_working_days(at(2025, 9, 26, 16), 1) == at(
        2025, 9, 28, 16
    )  # Friday → make-up Sunday
    assert cal.add_working_days(at(2026, 2, 13, 16), 1) == at(
        2026, 2, 14, 16
    )  # Friday → make-up Saturday
    assert cal.add_working_days(at(2026, 2, 14, 16), 1) == at(
        2026, 2, 24, 16
    )  # across the 春节 holiday


def test_start_outside_office_hours_starts_the_clock_at_next_opening(cal: WorkCalendar) -> None:
    assert cal.add_working_hours(at(2025, 11, 17, 8), 1) == at(2025, 11, 17, 10)  # before opening
    assert cal.add_working_hours(at(2025, 11, 17, 12, 30), 1) == at(
        2025, 11, 17, 14, 30
    )  # lunch break
    assert cal.add_working_hours(at(2025, 10, 3, 10), 1) == at(2025, 10, 9, 10)  # on a holiday
    # a whole working day from Friday evening ends at the next working day's closing time
    assert cal.add_working_days(at(2025, 11, 14, 20), 1) == at(2025, 11, 17, 18)


def test_a_span_that_fills_a_block_ends_at_closing_time_not_after_the_break(
    cal: WorkCalendar,
) -> None:
    assert cal.add_working_hours(at(2025, 11, 17, 9), 3) == at(2025, 11, 17, 12)
    assert cal.add_working_hours(at(2025, 11, 17, 11), 1.5) == at(2025, 11, 17, 14)


def test_zero_hours_is_the_start_itself(cal: WorkCalendar) -> None:
    assert cal.add_working_hours(at(2025, 11, 15, 23), 0) == at(2025, 11, 15, 23)


def test_working_seconds_between_counts_only_office_hours_of_working_days(
    cal: WorkCalendar,
) -> None:
    assert cal.working_seconds_between(at(2025, 9, 30, 9), at(2025, 10, 9, 9)) == 7.5 * 3600
    assert cal.working_seconds_between(at(2025, 11, 17, 11), at(2025, 11, 17, 14)) == 1.5 * 3600
    assert cal.working_seconds_between(at(2025, 10, 9, 9), at(2025, 9, 30, 9)) == -7.5 * 3600


def test_any_time_zone_in_calendar_zone_out(cal: WorkCalendar) -> None:
    start = datetime(2025, 11, 14, 8, 0, tzinfo=UTC)  # 16:00 in Beijing
    due = cal.add_working_days(start, 1)
    assert due == at(2025, 11, 17, 16) and due.tzinfo == SH


def test_naive_datetimes_are_refused(cal: WorkCalendar) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.add_working_hours(datetime(2025, 11, 14, 16), 1)
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.working_seconds_between(at(2025, 11, 14), datetime(2025, 11, 15))


def test_negative_spans_are_refused(cal: WorkCalendar) -> None:
    with pytest.raises(ValueError):
        cal.add_working_hours(at(2025, 11, 14, 16), -1)
    with pytest.raises(ValueError):
        cal.add_working_days(at(2025, 11, 14, 16), -1)


def test_year_without_holiday_data_falls_back_to_weekdays_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cal = WorkCalendar.from_settings(load_settings(env={}))
    with caplog.at_level(logging.WARNING, logger="tickets.worktime"):
        assert cal.is_working_day(date(2035, 10, 1))  # a Monday; the library has no data for 2035
        assert not cal.is_working_day(date(2035, 10, 6))  # Saturday
        assert cal.add_working_days(datetime(2035, 10, 5, 16, tzinfo=SH), 1) == datetime(
            2035, 10, 8, 16, tzinfo=SH
        )
    warnings = [r for r in caplog.records if "2035" in r.getMessage()]
    assert len(warnings) == 1


def test_office_hours_come_from_settings() -> None:
    hours = OfficeHours(
        morning_start=time(8, 30),
        morning_end=time(12),
        afternoon_start=time(14),
        afternoon_end=time(17, 30),
    )
    cal = WorkCalendar(hours, SH)
    assert cal.day_seconds == 7 * 3600
    assert cal.add_working_hours(at(2025, 11, 17, 11), 2) == at(2025, 11, 17, 15)


def test_office_hours_out_of_order_are_a_settings_error(tmp_path: Path) -> None:
    toml = SHIPPED_TOML.read_text(encoding="utf-8").replace(
        "morning_end = 12:00:00", "morning_end = 08:00:00"
    )
    (tmp_path / "h.toml").write_text(toml, encoding="utf-8")
    with pytest.raises(SettingsError, match="office_hours"):
        load_settings(tmp_path / "h.toml", env={})
