"""Overflow policy (溢出策略): which waiting callers go to the speech bot now. Pure and table-tested.

Rules, first match wins:

1. overflow disabled → nobody;
2. no caller waiting, or none eligible (came back from the bot, already redirected, a call-back, or an agent's
   phone ringing for it right now) → nobody;
3. nobody logged in and unpaused → every eligible caller (``no_agent``);
4. off hours (non-working day or outside office hours) with ``off_hours_to_bot`` and no agent free →
   every eligible caller (``off_hours``);
5. inside a peak window: every caller who has already waited longer than ``max_actual_wait_s``
   (``waited_over_limit``), so that nobody waits past the 15-s service level (GB/T 33358) for an agent;
6. inside a peak window: estimated wait of the newest caller above ``max_estimated_wait_s``
   (``wait_over_limit``) or callers per staffed agent above ``max_callers_per_agent``
   (``too_many_callers_per_agent``) → one caller, picked by ``pick``; the next one is decided again on
   the state that follows;
7. otherwise nobody (``within_limits`` in a peak window, ``off_peak`` outside).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from config.settings import OfficeHours, OverflowSettings, PeakWindow
from ivr.estimator import WaitEstimate


@dataclass(frozen=True)
class WaitingCaller:
    uniqueid: str
    channel: str
    joined_at: datetime
    eligible: bool


@dataclass(frozen=True)
class OverflowInputs:
    at: datetime
    peak: bool
    office_hours: bool
    callers: tuple[WaitingCaller, ...]
    estimate: WaitEstimate


@dataclass(frozen=True)
class Decision:
    """One overflow decision with everything it was based on (logged, and kept for the console)."""

    inputs: OverflowInputs
    reason: str
    redirect: tuple[WaitingCaller, ...] = ()

    def as_log(self) -> dict[str, Any]:
        est = self.inputs.estimate
        return {
            "at": self.inputs.at.isoformat(),
            "reason": self.reason,
            "redirect": [c.uniqueid for c in self.redirect],
            "waiting": est.waiting,
            "eligible": sum(c.eligible for c in self.inputs.callers),
            "staffed": est.staffed,
            "free": est.free,
            "handle_time_s": round(est.handle_time_s, 1),
            "estimated_wait_s": None if est.newest_wait_s is None else round(est.newest_wait_s, 1),
            "callers_per_agent": None
            if est.callers_per_agent is None
            else round(est.callers_per_agent, 2),
            "peak": self.inputs.peak,
            "office_hours": self.inputs.office_hours,
        }

    def same_situation(self, other: Decision | None) -> bool:
        """True when ``other`` had the same outcome on the same inputs apart from time (not worth a new log)."""
        return other is not None and self._situation() == other._situation()

    def _situation(self) -> tuple[Any, ...]:
        """What ``as_log`` shows apart from ``at``, without building the dict (taken on every evaluation)."""
        est, inputs = self.inputs.estimate, self.inputs
        return (
            self.reason,
            tuple(c.uniqueid for c in self.redirect),
            est.waiting,
            sum(c.eligible for c in inputs.callers),
            est.staffed,
            est.free,
            round(est.handle_time_s, 1),
            None if est.newest_wait_s is None else round(est.newest_wait_s, 1),
            None if est.callers_per_agent is None else round(est.callers_per_agent, 2),
            inputs.peak,
            inputs.office_hours,
        )


def in_peak(local: datetime, windows: Sequence[PeakWindow]) -> bool:
    """Inside a peak window (高峰时段)? ``local`` is wall-clock time in the hotline's time zone."""
    t = local.time()
    return any(local.isoweekday() in w.weekdays and w.start <= t < w.end for w in windows)


def in_office_hours(local: datetime, hours: OfficeHours, working_day: bool) -> bool:
    t = local.time()
    return working_day and (
        hours.morning_start <= t < hours.morning_end
        or hours.afternoon_start <= t < hours.afternoon_end
    )


def decide(inputs: OverflowInputs, cfg: OverflowSettings) -> Decision:
    """Apply the rules of this module's docstring."""
    eligible = tuple(c for c in inputs.callers if c.eligible)
    est = inputs.estimate
    if not cfg.enabled:
        return Decision(inputs, "disabled")
    if not inputs.callers:
        return Decision(inputs, "no_caller")
    if not eligible:
        return Decision(inputs, "no_eligible_caller")
    if est.staffed == 0:
        return Decision(inputs, "no_agent", eligible)
    if not inputs.office_hours and cfg.off_hours_to_bot and est.free == 0:
        return Decision(inputs, "off_hours", eligible)
    if not inputs.peak:
        return Decision(inputs, "off_peak")
    by_join = sorted(eligible, key=lambda c: c.joined_at)
    if cfg.max_actual_wait_s > 0:
        limit = timedelta(seconds=cfg.max_actual_wait_s)
        overdue = tuple(c for c in by_join if inputs.at - c.joined_at > limit)
        if overdue:
            return Decision(inputs, "waited_over_limit", overdue)
    pick = by_join[-1] if cfg.pick == "newest" else by_join[0]
    if est.newest_wait_s is not None and est.newest_wait_s > cfg.max_estimated_wait_s:
        return Decision(inputs, "wait_over_limit", (pick,))
    if est.callers_per_agent is not None and est.callers_per_agent > cfg.max_callers_per_agent:
        return Decision(inputs, "too_many_callers_per_agent", (pick,))
    return Decision(inputs, "within_limits")
