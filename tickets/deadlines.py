"""Handling deadlines (办理时限) and the sign-for deadline (签收时限).

The tier comes from ``settings.deadlines``: urgency overrides kind (``urgent`` → 24 小时, ``very_urgent`` →
3 小时), otherwise the kind's tier applies (咨询 → 3 个工作日, the other kinds → 5 个工作日); a ticket whose kind
is not set yet (empty string) takes ``default_tier``. Hour tiers count wall-clock hours (urgent matters run
round the clock); working-day tiers count working time on the :class:`~tickets.worktime.WorkCalendar`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from config.errors import HotlineError
from config.settings import DeadlineTier, Settings
from tickets.worktime import WorkCalendar, require_aware

NORMAL_URGENCY = "normal"  # 一般: the kind's tier applies


class DeadlineKeyError(HotlineError, ValueError):
    """A kind (类型) or urgency (紧急程度) that the deadline settings do not know."""

    def __init__(self, code: str, key: str, message: str) -> None:
        super().__init__(code, message)
        self.key = key


def tier_named(settings: Settings, name: str) -> DeadlineTier:
    """The tier called ``name`` (e.g. ``"3wd"``)."""
    for tier in settings.deadlines.tiers:
        if tier.name == name:
            return tier
    raise DeadlineKeyError("deadline.unknown_tier", name, f"未知的办理时限档次“{name}”")


def tier_for(settings: Settings, kind: str, urgency: str) -> DeadlineTier:
    """The deadline tier of a ticket of this kind and urgency; urgency overrides kind."""
    rules = settings.deadlines
    if kind == "":
        kind_tier = rules.default_tier
    elif kind in rules.by_kind:
        kind_tier = rules.by_kind[kind]
    else:
        known = "、".join(rules.by_kind)
        raise DeadlineKeyError(
            "deadline.unknown_kind", kind, f"未知的诉求类型“{kind}”（可选：{known}）"
        )
    if urgency == NORMAL_URGENCY:
        return tier_named(settings, kind_tier)
    if urgency in rules.by_urgency:
        return tier_named(settings, rules.by_urgency[urgency])
    known = "、".join([NORMAL_URGENCY, *rules.by_urgency])
    raise DeadlineKeyError(
        "deadline.unknown_urgency", urgency, f"未知的紧急程度“{urgency}”（可选：{known}）"
    )


def due_at(tier: DeadlineTier, start: datetime, cal: WorkCalendar) -> datetime | None:
    """When a ticket started at ``start`` is due under ``tier``; ``None`` for 即办 (answered at once)."""
    require_aware(start, "start")
    if tier.hours:
        return (start.astimezone(UTC) + timedelta(hours=tier.hours)).astimezone(cal.tz)
    if tier.working_days:
        return cal.add_working_days(start, tier.working_days)
    return None


def sign_for_due(start: datetime, cal: WorkCalendar, settings: Settings) -> datetime:
    """签收 deadline: ``settings.deadlines.sign_for_working_hours`` working hours after dispatch at ``start``."""
    return cal.add_working_hours(start, settings.deadlines.sign_for_working_hours)


def remaining_share(
    start: datetime, due: datetime, now: datetime, cal: WorkCalendar, *, wall_clock: bool = False
) -> float:
    """Share of the handling time still left at ``now``: 1.0 at the start, 0.0 at the deadline, negative after it.

    Before the deadline the share is measured in working time (or wall-clock time with ``wall_clock=True``,
    which suits hour tiers, and whenever the span from start to due holds no working time at all). Past the
    deadline it is minus the wall-clock time overdue as a share of the wall-clock span, so a ticket that ran
    over during a night or a holiday already counts as overdue.
    """
    for value, name in ((start, "start"), (due, "due"), (now, "now")):
        require_aware(value, name)
    if due <= start:
        raise ValueError(f"due ({due.isoformat()}) must be after start ({start.isoformat()})")
    span = _wall_seconds(start, due)
    if now > due:
        return -_wall_seconds(due, now) / span
    now = max(now, start)
    total = 0.0 if wall_clock else cal.working_seconds_between(start, due)
    if total <= 0:
        return _wall_seconds(now, due) / span
    return cal.working_seconds_between(now, due) / total


def _wall_seconds(a: datetime, b: datetime) -> float:
    return (b.astimezone(UTC) - a.astimezone(UTC)).total_seconds()
