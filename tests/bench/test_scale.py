"""The scale bench (bench/scale.py) at a tiny size: its report has the shape that scale.md and the sizing model
read, every live event reached every listener exactly once, and the model's queueing formulas are right."""

from __future__ import annotations

import math
from typing import Any

import pytest

from bench.scale import (
    RESULTS,
    Centre,
    Sizes,
    _exactly_once,
    agents_for,
    erlang_b,
    erlang_c,
    markdown,
    measure,
    measured_elsewhere,
    sizing,
)
from bench.tickets import _server_cpu
from hotline.local_postgres import LocalPostgres

TINY = Sizes(workers=(1, 2), tickets=30, base_rows=300, events=60, rate=40.0, seconds=1.0, rounds=1)


@pytest.mark.serial
async def test_tiny_run_reports_both_parts_and_every_event_once(
    postgres: LocalPostgres | str,
) -> None:
    admin_url = postgres if isinstance(postgres, str) else postgres.url()
    server_cpu = None if isinstance(postgres, str) else _server_cpu(postgres)
    report = await measure(admin_url, TINY, server_cpu)

    assert report["machine"]["cores"] >= 1 and report["postgresql"]
    assert [r["workers"] for r in report["tickets"]] == [1, 2]
    for run in report["tickets"]:
        assert run["tickets"] == TINY.tickets and run["errors"] == {}
        assert run["rounds"] == [run["tickets_per_s"]] and run["client_cpu_ms_per_ticket"] > 0
    assert report["tickets"][0]["ratio_tickets_per_s_to_1"] == 1.0
    assert [r["listeners"] for r in report["fanout"]] == [1, 2]
    for run in report["fanout"]:
        for phase, sent in (("burst", TINY.events), ("paced", int(TINY.rate * TINY.seconds))):
            figures = run[phase]
            assert figures["every_event_once_to_every_listener"], (phase, figures)
            assert figures["latency"]["n"] == sent * run["listeners"]
        assert run["every_event_once_in_every_round"]
        assert run["burst"]["ratio_delivered_to_all_per_s_to_1"] > 0
    model = sizing(report, measured_elsewhere(RESULTS), Centre())
    assert all(role["cores"] > 0 and role["machines"] >= 1 for role in model["roles"].values())
    assert "Sizing model" in markdown(report, model)


def _heard(seqs: list[int]) -> dict[str, Any]:
    return {"burst": {"seqs": seqs, "complete": True, "dropped": False}}


def test_a_doubled_or_lost_event_is_reported() -> None:
    check = _exactly_once([_heard([0, 1, 2]), _heard([0, 1, 1])], "burst", sent=3)
    assert check["missing"] == 1 and check["duplicates"] == 1
    assert not check["every_event_once_to_every_listener"]
    assert _exactly_once([_heard([2, 0, 1])], "burst", sent=3)["every_event_once_to_every_listener"]


def test_erlang_formulas_match_the_tables() -> None:
    assert math.isclose(erlang_b(10, 10), 0.2146, abs_tol=1e-4)
    assert math.isclose(erlang_c(10, 11), 0.6821, abs_tol=1e-4)
    agents = agents_for(100, 180, 20, 0.8)  # 100 Erlangs, 180 s calls, 80 % answered within 20 s

    def within_20_s(n: int) -> float:
        return 1 - erlang_c(100, n) * math.exp(-(n - 100) * 20 / 180)

    assert within_20_s(agents) >= 0.8 > within_20_s(agents - 1)
    assert agents == 107
