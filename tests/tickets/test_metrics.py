"""Metrics (考核指标) against a hand-computed fixture driven through the real services with controlled time."""

from __future__ import annotations

import json

import pytest

from hotline.db import create_schema, make_engine, make_sessionmaker
from tests.cli_support import run_cli
from tests.settings_support import SETTINGS
from tests.tickets.loop_support import DEPARTMENTS
from tests.tickets.metrics_support import MARCH, NOW, at, build_march
from tickets.errors import InvalidInput
from tickets.metrics import metrics
from tickets.services import upsert_departments

EXPECTED_TOTAL = {
    "received": 6,
    "withdrawn": 1,
    "closed": 4,
    "open": 1,
    "overdue": 1,
    "dispatched": 4,
    "sign_for_decided": 4,
    "signed_in_time": 3,
    "closed_on_time": 3,
    "instant": 1,
    "satisfied": 2,
    "unsatisfied": 1,
    "surveyed": 3,
    "repeats": 1,
    "handled_closed": 3,
    "response_rate": 0.75,
    "closure_rate": 0.6667,
    "on_time_rate": 0.75,
    "satisfaction_rate": 0.6667,
    "instant_rate": 0.1667,
    "repeat_rate": 0.1667,
    "avg_handling_hours": 80.0,  # (24 + 214 + 2) / 3
}


async def test_totals_match_the_hand_computed_fixture(session, draft) -> None:
    await build_march(session, draft)
    result = await metrics(session, *MARCH, now=NOW, settings=SETTINGS)
    assert result["total"] == EXPECTED_TOTAL
    assert "groups" not in result and result["from"] == "2025-03-01T00:00:00+08:00"


async def test_overdue_and_sign_for_depend_on_now(session, draft) -> None:
    await build_march(session, draft)
    early = await metrics(
        session, *MARCH, now=at(5, 10, 30), settings=SETTINGS
    )  # D's sign-for and handling deadlines not yet passed
    assert (
        early["total"]["overdue"],
        early["total"]["sign_for_decided"],
        early["total"]["response_rate"],
    ) == (0, 3, 1.0)


async def test_by_department(session, draft) -> None:
    await build_march(session, draft)
    groups = {
        g["key"]: g
        for g in (await metrics(session, *MARCH, by="department", now=NOW, settings=SETTINGS))[
            "groups"
        ]
    }
    assert set(groups) == {"zjj", "hbj", None}
    zjj, hbj, none = groups["zjj"], groups["hbj"], groups[None]
    assert (zjj["label"], none["label"]) == (dict(DEPARTMENTS)["zjj"], "（未派发）")
    assert (
        zjj["received"],
        zjj["closed"],
        zjj["overdue"],
        zjj["response_rate"],
        zjj["on_time_rate"],
    ) == (3, 2, 1, 0.6667, 1.0)
    assert (zjj["satisfaction_rate"], zjj["avg_handling_hours"]) == (1.0, 13.0)
    assert (hbj["received"], hbj["on_time_rate"], hbj["satisfaction_rate"], hbj["repeat_rate"]) == (
        1,
        0.0,
        0.5,
        1.0,
    )
    assert hbj["avg_handling_hours"] == 214.0
    assert (none["received"], none["withdrawn"], none["instant_rate"], none["response_rate"]) == (
        2,
        1,
        0.5,
        None,
    )


async def test_by_category_and_area(session, draft) -> None:
    await build_march(session, draft)
    by_cat = {
        g["key"]: g["received"]
        for g in (await metrics(session, *MARCH, by="category", now=NOW, settings=SETTINGS))[
            "groups"
        ]
    }
    assert by_cat == {"住房安居": 2, "生态环境": 1, "健康医疗": 1, None: 2}
    by_area = {
        g["key"]: (g["received"], g["closed"])
        for g in (await metrics(session, *MARCH, by="area", now=NOW, settings=SETTINGS))["groups"]
    }
    assert by_area == {"城关区": (2, 2), "七里河区": (2, 1), None: (2, 1)}


async def test_empty_window_has_no_rates_and_bad_input_is_refused(session) -> None:
    result = await metrics(session, *MARCH, by="department", now=NOW, settings=SETTINGS)
    assert (
        result["total"]["received"] == 0
        and result["total"]["closure_rate"] is None
        and result["groups"] == []
    )
    with pytest.raises(InvalidInput) as err:
        await metrics(session, *MARCH, by="street", settings=SETTINGS)
    assert err.value.code == "metrics.bad_group"
    with pytest.raises(InvalidInput):
        await metrics(session, MARCH[1], MARCH[0], settings=SETTINGS)


@pytest.mark.slow
async def test_cli_metrics_and_warnings_scan_print_json(tmp_path, draft) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}"
    engine = make_engine(url)
    await create_schema(engine)
    async with make_sessionmaker(engine)() as session:
        await upsert_departments(session, DEPARTMENTS)
        await build_march(session, draft)
    await engine.dispose()

    code, out, err = await run_cli(
        url,
        "metrics",
        "--from",
        "2025-03-01",
        "--to",
        "2025-03-31",
        "--by",
        "department",
        "--json",
        "--now",
        "2025-03-20T10:00:00",
    )
    assert code == 0, err
    result = json.loads(out)
    assert {k: result["total"][k] for k in EXPECTED_TOTAL} == EXPECTED_TOTAL
    assert {g["key"] for g in result["groups"]} == {"zjj", "hbj", None}

    code, out, err = await run_cli(url, "warnings", "scan", "--now", "2025-03-20T10:00:00+08:00")
    assert code == 0, err
    first = json.loads(out)
    # D: handling and sign-for deadlines both passed; the Feb 27 and Apr 1 complaints: accepted, overdue / fresh.
    assert (first["open_tickets"], first["raised"], first["open_warnings"]) == (3, 3, 3)
    code, out, err = await run_cli(
        url, "warnings", "scan", "--now", "2025-03-20T10:05:00+08:00", "--deliver"
    )
    second = json.loads(out)
    assert (second["raised"], second["changed"], second["cleared"], second["notices"]) == (
        0,
        0,
        0,
        0,
    )
    assert second["delivery"] == {
        "sent": first["notices"] + first["supervisions"],
        "retry": 0,
        "failed": 0,
    }

    code, _out, err = await run_cli(url, "metrics", "--from", "2025-03-31", "--to", "2025-03-01")
    assert code == 2 and "metrics.bad_range" in err
