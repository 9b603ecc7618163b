"""The departments' ranking shared by the cockpit and the weekly disclosure."""

from __future__ import annotations

from typing import Any

from tickets.ranking import composite, rank_departments


def group(key: str | None, received: int, *rates: float | None) -> dict[str, Any]:
    response, closure, satisfaction = rates
    return {
        "key": key,
        "received": received,
        "response_rate": response,
        "closure_rate": closure,
        "satisfaction_rate": satisfaction,
    }


def test_composite_is_the_mean_of_the_known_rates() -> None:
    assert composite(0.9, None, 0.6) == 0.75
    assert composite(1 / 3, 1 / 3, 1 / 3) == 0.3333
    assert composite(None, None) is None


def test_departments_rank_by_score_then_tickets_then_code_unscored_last() -> None:
    groups = [
        group("B", 5, 0.8, 0.8, 0.8),
        group(None, 9, 1.0, 1.0, 1.0),
        group("C", 1, None, None, None),
        group("A", 5, 0.8, 0.8, 0.8),
        group("D", 9, 0.8, 0.8, 0.8),
        group("E", 2, 0.9, 0.9, None),
    ]
    ranked = [(score, g["key"]) for score, g in rank_departments(groups)]
    assert ranked == [(0.9, "E"), (0.8, "D"), (0.8, "A"), (0.8, "B"), (None, "C")]
