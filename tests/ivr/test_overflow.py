"""The overflow decision (table of cases) and the wait estimator."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from config.settings import OfficeHours, OverflowSettings, PeakWindow
from ivr.estimator import HandleTimeAverage, WaitEstimate, estimate_wait
from ivr.overflow import Decision, OverflowInputs, WaitingCaller, decide, in_office_hours, in_peak

AT = datetime(2025, 3, 4, 2, 0, tzinfo=UTC)
CFG = OverflowSettings(
    max_actual_wait_s=0,
    max_estimated_wait_s=60,
    max_callers_per_agent=2,
    pick="longest",
    off_hours_to_bot=True,
)


def callers(*spec: tuple[str, int, bool]) -> tuple[WaitingCaller, ...]:
    """(uniqueid, seconds waited, eligible)."""
    return tuple(WaitingCaller(u, f"PJSIP/{u}", AT - timedelta(seconds=s), e) for u, s, e in spec)


def inputs(
    cs: tuple[WaitingCaller, ...],
    *,
    staffed: int,
    free: int,
    wait: float | None,
    peak: bool = True,
    office: bool = True,
) -> OverflowInputs:
    return OverflowInputs(AT, peak, office, cs, WaitEstimate(len(cs), staffed, free, 120.0, wait))


A, B, C = ("a", 50, True), ("b", 20, True), ("c", 5, True)
FROM_BOT = ("r", 90, False)

CASES = [
    # (name, inputs, config changes, reason, redirected uniqueids)
    (
        "disabled",
        inputs(callers(A), staffed=0, free=0, wait=None),
        {"enabled": False},
        "disabled",
        [],
    ),
    ("empty queue", inputs((), staffed=0, free=0, wait=0), {}, "no_caller", []),
    (
        "only a requeued caller",
        inputs(callers(FROM_BOT), staffed=0, free=0, wait=None),
        {},
        "no_eligible_caller",
        [],
    ),
    (
        "nobody logged in",
        inputs(callers(A, FROM_BOT, B), staffed=0, free=0, wait=None),
        {},
        "no_agent",
        ["a", "b"],
    ),
    (
        "nobody logged in, off peak",
        inputs(callers(A), staffed=0, free=0, wait=None, peak=False),
        {},
        "no_agent",
        ["a"],
    ),
    (
        "off hours, all busy",
        inputs(callers(A, B), staffed=1, free=0, wait=30, peak=False, office=False),
        {},
        "off_hours",
        ["a", "b"],
    ),
    (
        "off hours, an agent free",
        inputs(callers(A), staffed=1, free=1, wait=0, peak=False, office=False),
        {},
        "off_peak",
        [],
    ),
    (
        "off hours, option off",
        inputs(callers(A), staffed=1, free=0, wait=30, peak=False, office=False),
        {"off_hours_to_bot": False},
        "off_peak",
        [],
    ),
    (
        "peak, long wait, longest picked",
        inputs(callers(A, B, C), staffed=3, free=0, wait=61),
        {},
        "wait_over_limit",
        ["a"],
    ),
    (
        "peak, long wait, newest picked",
        inputs(callers(A, B, C), staffed=3, free=0, wait=61),
        {"pick": "newest"},
        "wait_over_limit",
        ["c"],
    ),
    (
        "peak, requeued caller skipped",
        inputs(callers(FROM_BOT, B, C), staffed=3, free=0, wait=61),
        {},
        "wait_over_limit",
        ["b"],
    ),
    (
        "peak, wait exactly at limit",
        inputs(callers(A, B), staffed=3, free=0, wait=60),
        {},
        "within_limits",
        [],
    ),
    (
        "peak, too many callers per agent",
        inputs(callers(A, B, C), staffed=1, free=0, wait=10),
        {},
        "too_many_callers_per_agent",
        ["a"],
    ),
    (
        "peak, two per agent is allowed",
        inputs(callers(A, B), staffed=1, free=0, wait=10),
        {},
        "within_limits",
        [],
    ),
    (
        "peak, every caller waiting past the guard goes, whatever the estimate",
        inputs(callers(C, A, FROM_BOT, B), staffed=3, free=0, wait=0),
        {"max_actual_wait_s": 12},
        "waited_over_limit",
        ["a", "b"],
    ),
    (
        "peak, a caller waiting exactly the guard stays",
        inputs(callers(B), staffed=3, free=0, wait=0),
        {"max_actual_wait_s": 20},
        "within_limits",
        [],
    ),
    (
        "off peak, waiting past the guard",
        inputs(callers(A), staffed=3, free=0, wait=0, peak=False),
        {"max_actual_wait_s": 12},
        "off_peak",
        [],
    ),
    (
        "off peak, long wait",
        inputs(callers(A, B, C), staffed=1, free=0, wait=500, peak=False),
        {},
        "off_peak",
        [],
    ),
]


@pytest.mark.parametrize(
    ("name", "given", "changes", "reason", "redirected"), CASES, ids=[c[0] for c in CASES]
)
def test_overflow_decision_table(
    name: str, given: OverflowInputs, changes: dict[str, object], reason: str, redirected: list[str]
) -> None:
    decision = decide(given, CFG.model_copy(update=changes))
    assert decision.reason == reason
    assert [c.uniqueid for c in decision.redirect] == redirected


def test_decision_log_line_carries_its_inputs() -> None:
    decision = decide(inputs(callers(A, B, C), staffed=3, free=0, wait=61.04), CFG)
    line = decision.as_log()
    assert line == line | {
        "reason": "wait_over_limit",
        "redirect": ["a"],
        "waiting": 3,
        "eligible": 3,
        "staffed": 3,
        "free": 0,
        "estimated_wait_s": 61.0,
        "callers_per_agent": 1.0,
        "peak": True,
    }
    later = Decision(
        OverflowInputs(AT + timedelta(seconds=1), *list(vars(decision.inputs).values())[1:]),
        decision.reason,
        decision.redirect,
    )
    assert later.same_situation(decision)
    assert not decide(inputs(callers(A), staffed=3, free=0, wait=61), CFG).same_situation(decision)


def test_peak_windows_and_office_hours() -> None:
    windows = [PeakWindow(weekdays=[1, 2, 3, 4, 5], start=time(8, 30), end=time(11, 30))]
    tuesday_10 = datetime(2025, 3, 4, 10, 0)
    assert in_peak(tuesday_10, windows)
    assert not in_peak(tuesday_10.replace(hour=11, minute=30), windows)  # end exclusive
    assert not in_peak(datetime(2025, 3, 8, 10, 0), windows)  # Saturday
    hours = OfficeHours()
    assert in_office_hours(tuesday_10, hours, working_day=True)
    assert not in_office_hours(
        tuesday_10.replace(hour=12, minute=30), hours, working_day=True
    )  # lunch
    assert not in_office_hours(tuesday_10, hours, working_day=False)  # holiday


# -- estimator ----------------------------------------------------------------------------------------------------
def test_ewma_starts_from_the_first_sample_and_moves_by_alpha() -> None:
    avg = HandleTimeAverage(alpha=0.5, initial_s=180)
    avg.seed(150)
    assert avg.value == 150  # Asterisk's average until we have our own
    avg.add(100)
    assert avg.value == 100
    avg.add(200)
    assert avg.value == 150
    avg.seed(999)
    assert avg.value == 150  # seeding never overrides real samples


def test_aging_raises_the_estimate_while_long_calls_are_still_running() -> None:
    avg = HandleTimeAverage(alpha=0.2, initial_s=180)
    avg.add(100)
    assert avg.aged([]) == 100
    assert avg.aged([50, 90]) == 100  # calls shorter than the average say nothing yet
    aged = avg.aged([400])
    assert aged == pytest.approx(100 + 0.2 * 300)
    assert avg.aged([400, 600]) > aged  # more overdue calls, higher estimate
    assert avg.value == 100  # aging is a view; only completed calls are samples


@pytest.mark.parametrize(
    ("waiting", "staffed", "free", "elapsed", "expected"),
    [
        (0, 0, 0, [], 0.0),
        (3, 0, 0, [], None),  # nobody can ever answer
        (2, 3, 2, [10], 0.0),  # enough free agents
        (1, 1, 0, [100], 20.0),  # the one agent needs 120 − 100 s more
        (1, 1, 0, [300], 12.0),  # overdue: at least a tenth of the handle time
        (2, 1, 0, [100], 140.0),  # second in line: one more full handle time
        (3, 2, 0, [100, 30], 140.0),  # releases at 20 s and 90 s, then 20 + 120
        (1, 2, 0, [], 60.0),  # busy with calls we did not see: half a handle time
        (3, 2, 2, [], 120.0),  # third caller waits for a free agent's first call to end
    ],
)
def test_estimated_wait(
    waiting: int, staffed: int, free: int, elapsed: list[float], expected: float | None
) -> None:
    est = estimate_wait(waiting, staffed, free, elapsed, handle_time_s=120.0)
    assert est.newest_wait_s == (None if expected is None else pytest.approx(expected))
