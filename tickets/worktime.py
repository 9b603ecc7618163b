"""Working time (工作时间) on the Chinese statutory calendar.

Working days come from ``chinese-calendar``: statutory holidays (法定节假日) are days off and the make-up
workdays (调休, e.g. the Saturdays around 春节 and 国庆) are working days. The library only knows the years it
ships with (1.11.0: 2004–2026) and raises ``NotImplementedError`` for any other year; for such a year the
calendar falls back to Monday–Friday and logs one warning per year — upgrade ``chinese-calendar`` once the
State Council publishes the next year's arrangement.

Working time is the time inside the office-hour blocks (``settings.office_hours``: morning and afternoon) of
working days. The rules:

- ``add_working_hours(start, h)`` is the earliest instant by which ``h`` hours of working time have passed
  since ``start``. A start outside office hours (evening, lunch break, holiday) therefore starts the clock at
  the next opening, and a span that uses up a block exactly ends at that block's closing time.
- ``add_working_days(start, n)`` adds ``n`` × the length of a working day of working time: Friday 16:00 + 1
  working day is the next working day 16:00; Friday 20:00 + 1 is the next working day's closing time.
- ``working_seconds_between(a, b)`` counts working seconds; it is negative when ``b`` is before ``a``.

Every datetime in must be timezone-aware (``ValueError`` otherwise); results are in the calendar's zone.
Arithmetic runs in UTC, so it stays right in zones with daylight saving time.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar

from config.settings import OfficeHours, Settings

_log = logging.getLogger(__name__)

_ONE_DAY = timedelta(days=1)


def require_aware(value: datetime, name: str) -> datetime:
    """``value`` unchanged, or ``ValueError`` when it has no time zone."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value


class WorkCalendar:
    """Working days and office hours of one hotline centre, in its time zone."""

    def __init__(self, office_hours: OfficeHours, tz: ZoneInfo) -> None:
        self.tz = tz
        self._blocks: tuple[tuple[time, time], ...] = (
            (office_hours.morning_start, office_hours.morning_end),
            (office_hours.afternoon_start, office_hours.afternoon_end),
        )
        self.day_seconds = sum(_seconds_of_day(hi) - _seconds_of_day(lo) for lo, hi in self._blocks)
        self._working: dict[date, bool] = {}
        self._warned_years: set[int] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkCalendar:
        return cls(settings.office_hours, ZoneInfo(settings.timezone))

    def is_working_day(self, d: date) -> bool:
        """True on a working day: Monday–Friday that is no statutory holiday, or a 调休 make-up day."""
        known = self._working.get(d)
        if known is None:
            try:
                known = bool(chinese_calendar.is_workday(d))
            except NotImplementedError:
                if d.year not in self._warned_years:
                    self._warned_years.add(d.year)
                    _log.warning(
                        "chinese-calendar has no holiday data for %d: counting Monday–Friday as working "
                        "days for that year (upgrade chinese-calendar)",
                        d.year,
                    )
                known = d.weekday() < 5
            self._working[d] = known
        return known

    def add_working_hours(self, start: datetime, hours: float) -> datetime:
        """The earliest instant by which ``hours`` of working time have passed since ``start``."""
        if not math.isfinite(hours) or hours < 0:
            raise ValueError(f"hours must be a finite number >= 0, got {hours}")
        return self._add_seconds(require_aware(start, "start"), hours * 3600.0)

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """``start`` plus ``days`` × the length of a working day of working time."""
        if days < 0:
            raise ValueError(f"days must be >= 0, got {days}")
        return self._add_seconds(require_aware(start, "start"), days * self.day_seconds)

    def working_seconds_between(self, a: datetime, b: datetime) -> float:
        """Working seconds from ``a`` to ``b`` (negative when ``b`` is before ``a``)."""
        require_aware(a, "a")
        require_aware(b, "b")
        if b < a:
            return -self.working_seconds_between(b, a)
        a_utc, b_utc = a.astimezone(UTC), b.astimezone(UTC)
        total = 0.0
        day, last = a.astimezone(self.tz).date(), b.astimezone(self.tz).date()
        while day <= last:
            for lo, hi in self._open_intervals(day):
                lo, hi = max(lo, a_utc), min(hi, b_utc)
                if hi > lo:
                    total += (hi - lo).total_seconds()
            day += _ONE_DAY
        return total

    def _add_seconds(self, start: datetime, seconds: float) -> datetime:
        seconds = round(
            seconds, 6
        )  # datetimes hold microseconds; float noise must not spill into the next block
        cursor = start.astimezone(UTC)
        if seconds == 0:
            return cursor.astimezone(self.tz)
        day = start.astimezone(self.tz).date()
        while True:
            for lo, hi in self._open_intervals(day):
                lo = max(lo, cursor)
                if hi <= lo:
                    continue
                span = (hi - lo).total_seconds()
                if seconds <= span:
                    return (lo + timedelta(seconds=seconds)).astimezone(self.tz)
                seconds -= span
            day += _ONE_DAY

    def _open_intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        """The office-hour blocks of ``day`` in UTC; none on a day off."""
        if not self.is_working_day(day):
            return []
        return [
            (
                datetime.combine(day, lo, self.tz).astimezone(UTC),
                datetime.combine(day, hi, self.tz).astimezone(UTC),
            )
            for lo, hi in self._blocks
        ]


def _seconds_of_day(t: time) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second
