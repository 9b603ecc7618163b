"""The departments' ranking (承办单位排名) of the cockpit and the weekly disclosure: a composite score,
the mean of the response, closure and satisfaction rates (a rate without data is left out), best first."""

from __future__ import annotations

from typing import Any


def composite(*rates: float | None) -> float | None:
    """The mean of the known rates, rounded to 4 decimals; None when none is known."""
    known = [r for r in rates if r is not None]
    return round(sum(known) / len(known), 4) if known else None


def rank_departments(groups: list[dict[str, Any]]) -> list[tuple[float | None, dict[str, Any]]]:
    """``tickets.metrics`` groups by department (not the undispatched group) with their composite score,
    best first; ties go to more tickets received, then to the department code; unscored ones come last."""
    scored = [
        (composite(g["response_rate"], g["closure_rate"], g["satisfaction_rate"]), g)
        for g in groups
        if g["key"] is not None
    ]
    return sorted(
        scored, key=lambda p: (p[0] is None, -(p[0] or 0), -p[1]["received"], p[1]["key"])
    )
