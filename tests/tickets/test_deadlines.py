"""Deadline tiers (办理时限), due times, the 签收 deadline and the share of handling time left."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from config import Settings, SettingsError, load_settings
from config.settings import DeadlineTier
from tickets.deadlines import DeadlineKeyError, due_at, remaining_share, sign_for_due, tier_for
from tickets.worktime import WorkCalendar

SH = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def shipped() -> Settings:
    return load_settings(env={})


@pytest.fixture(scope="module")
def cal(shipped: Settings) -> WorkCalendar:
    return WorkCalendar.from_settings(shipped)


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SH)


@pytest.mark.parametrize(
    ("kind", "urgency", "label"),
    [
        ("咨询", "normal", "3个工作日"),
        ("投诉", "normal", "5个工作日"),
        ("求助", "normal", "5个工作日"),
        ("咨询", "urgent", "24小时"),  # urgency overrides kind
        ("投诉", "very_urgent", "3小时"),
        ("", "normal", "5个工作日"),  # kind not set yet: default tier
    ],
)
def test_tier_by_kind_and_urgency(shipped: Settings, kind: str, urgency: str, label: str) -> None:
    assert tier_for(shipped, kind, urgency).label == label


def test_unknown_kind_or_urgency_names_the_key(shipped: Settings) -> None:
    with pytest.raises(ValueError, match="灌水") as err:
        tier_for(shipped, "灌水", "normal")
    assert isinstance(err.value, DeadlineKeyError) and err.value.code == "deadline.unknown_kind"
    assert err.value.key == "灌水"
    with pytest.raises(DeadlineKeyError, match="super_urgent") as err:
        tier_for(shipped, "咨询", "super_urgent")
    assert err.value.code == "deadline.unknown_urgency"


def test_instant_tier_has_no_deadline(shipped: Settings, cal: WorkCalendar) -> None:
    instant = next(t for t in shipped.deadlines.tiers if t.name == "instant")
    assert due_at(instant, at(2025, 11, 17, 10), cal) is None


def test_hour_tiers_run_on_the_wall_clock_even_on_holidays(
    shipped: Settings, cal: WorkCalendar
) -> None:
    assert due_at(tier_for(shipped, "求助", "very_urgent"), at(2025, 10, 1, 22), cal) == at(
        2025, 10, 2, 1
    )
    assert due_at(tier_for(shipped, "投诉", "urgent"), at(2026, 2, 16, 9), cal) == at(
        2026, 2, 17, 9
    )


def test_working_day_tiers_skip_holidays_and_use_make_up_days(
    shipped: Settings, cal: WorkCalendar
) -> None:
    # 30 Sep 10:00 + 3 working days (22.5 h): 6.5 h on 30 Sep, 9 and 10 Oct, then 1 h on Saturday 11 Oct (调休)
    assert due_at(tier_for(shipped, "咨询", "normal"), at(2025, 9, 30, 10), cal) == at(
        2025, 10, 11, 10
    )
    assert due_at(tier_for(shipped, "投诉", "normal"), at(2026, 2, 13, 16), cal) == at(
        2026, 2, 27, 16
    )


def test_sign_for_deadline_counts_working_hours_after_dispatch(
    shipped: Settings, cal: WorkCalendar
) -> None:
    assert sign_for_due(at(2025, 11, 14, 17, 30), cal, shipped) == at(2025, 11, 17, 9, 30)
    assert sign_for_due(at(2025, 11, 17, 10), cal, shipped) == at(2025, 11, 17, 11)


def test_remaining_share_runs_from_one_to_zero_then_negative(cal: WorkCalendar) -> None:
    start, due = at(2025, 11, 17, 9), at(2025, 11, 19, 9)  # 15 working hours
    assert remaining_share(start, due, start, cal) == 1.0
    assert remaining_share(start, due, at(2025, 11, 18, 9), cal) == pytest.approx(0.5)
    assert remaining_share(start, due, at(2025, 11, 17, 20), cal) == pytest.approx(
        0.5
    )  # evening: no time used
    assert remaining_share(start, due, due, cal) == 0.0
    assert remaining_share(start, due, at(2025, 11, 19, 9, 1), cal) < 0


def test_overdue_during_closed_hours_is_already_negative(cal: WorkCalendar) -> None:
    start, due = at(2025, 11, 17, 9), at(2025, 11, 21, 18)
    assert (
        remaining_share(start, due, at(2025, 11, 22, 10), cal) < 0
    )  # Saturday after a Friday deadline


def test_remaining_share_on_the_wall_clock_for_hour_tiers(cal: WorkCalendar) -> None:
    start, due = at(2025, 10, 1, 22), at(2025, 10, 2, 1)
    assert remaining_share(start, due, at(2025, 10, 1, 23), cal, wall_clock=True) == pytest.approx(
        2 / 3
    )
    # a span with no working time at all falls back to the wall clock instead of dividing by zero
    assert remaining_share(start, due, at(2025, 10, 1, 23), cal) == pytest.approx(2 / 3)


def test_remaining_share_refuses_bad_spans_and_naive_times(cal: WorkCalendar) -> None:
    with pytest.raises(ValueError, match="after start"):
        remaining_share(at(2025, 11, 17, 9), at(2025, 11, 17, 9), at(2025, 11, 17, 9), cal)
    with pytest.raises(ValueError, match="timezone-aware"):
        remaining_share(at(2025, 11, 17, 9), at(2025, 11, 18, 9), datetime(2025, 11, 17, 10), cal)


def test_tier_names_are_checked_when_settings_load() -> None:
    with pytest.raises(SettingsError, match="default_tier"):
        load_settings(env={"HOTLINE_DEADLINES_DEFAULT_TIER": "7wd"})


def test_a_tier_has_one_measure() -> None:
    with pytest.raises(ValidationError, match="not both"):
        DeadlineTier(name="odd", label="奇怪", working_days=1, hours=3)
