"""Leader answering days (领导接听日): schedule validation on SQLite and PostgreSQL, the member plan, and the
controllers of several PBXs (only the window's PBX adds the leader)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from ivr.ami import AmiStats
from ivr.controller import HotlineController
from ivr.leaders import (
    InvalidShift,
    LeaderOnDuty,
    OverlappingShift,
    ShiftInput,
    ShiftNotFound,
    active_shifts,
    add_shift,
    list_shifts,
    on_duty,
    plan,
    remove_shift,
    scheduled_interfaces,
)
from ivr.state import Member

TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2025, 3, 4)


def shift(
    start: str, end: str, interface: str = "PJSIP/6009", name: str = "李明", day: date = DAY
) -> ShiftInput:
    return ShiftInput(
        day, time.fromisoformat(start), time.fromisoformat(end), name, interface, "区长", "区政府"
    )


async def test_add_list_remove(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as s:
        first = await add_shift(s, shift("09:00", "11:00"))
        await add_shift(s, shift("11:00", "12:00"))  # touching windows do not overlap
        await add_shift(
            s, shift("10:00", "11:00", interface="PJSIP/6010", name="王丽")
        )  # another endpoint
        await add_shift(s, shift("09:00", "11:00", day=date(2025, 3, 5)))
    async with sessionmaker() as s:
        rows = await list_shifts(s, day_from=DAY, day_to=DAY)
        assert [(r.start.hour, r.interface) for r in rows] == [
            (9, "PJSIP/6009"),
            (10, "PJSIP/6010"),
            (11, "PJSIP/6009"),
        ]
        removed = await remove_shift(s, first.id)
        assert removed.leader_name == "李明"
        with pytest.raises(ShiftNotFound) as err:
            await remove_shift(s, first.id)
        assert err.value.code == "leader.not_found"
        assert len(await list_shifts(s)) == 3


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (shift("11:00", "11:00"), "leader.invalid_shift"),
        (shift("11:00", "10:00"), "leader.invalid_shift"),
        (shift("09:00", "10:00", interface="6009"), "leader.invalid_shift"),
        (shift("09:00", "10:00", name="  "), "leader.invalid_shift"),
        (shift("10:30", "11:30"), "leader.overlap"),
        (shift("08:00", "12:00"), "leader.overlap"),
        (shift("09:30", "10:00"), "leader.overlap"),
    ],
)
async def test_refused_edits_have_codes_and_lose_nothing(
    sessionmaker: async_sessionmaker[AsyncSession], bad: ShiftInput, code: str
) -> None:
    async with sessionmaker() as s:
        await add_shift(s, shift("09:00", "11:00"))
    async with sessionmaker() as s:
        with pytest.raises((InvalidShift, OverlappingShift)) as err:
            await add_shift(s, bad)
        assert err.value.code == code and err.value.message
    async with sessionmaker() as s:
        assert [(r.start, r.end) for r in await list_shifts(s)] == [(time(9), time(11))]


async def test_active_windows_use_local_wall_clock(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as s:
        await add_shift(s, shift("09:00", "11:00"))
    async with sessionmaker() as s:
        at = datetime(2025, 3, 4, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai: start is inclusive
        assert [r.leader_name for r in await active_shifts(s, at, TZ)] == ["李明"]
        assert (
            await active_shifts(s, datetime(2025, 3, 4, 3, 0, tzinfo=UTC), TZ) == []
        )  # 11:00: end exclusive
        assert await active_shifts(s, datetime(2025, 3, 4, 0, 59, tzinfo=UTC), TZ) == []


def member(interface: str, penalty: int) -> Member:
    return Member(interface, interface, interface, penalty, False, 1, False)


def test_plan_adds_leaders_on_duty_and_removes_closed_windows() -> None:
    duty = [
        LeaderOnDuty("PJSIP/6009", "李明（区长）", "李明"),
        LeaderOnDuty("PJSIP/6010", "王丽", "王丽"),
    ]
    leaders = {"PJSIP/6009", "PJSIP/6010", "PJSIP/6011"}
    members = {
        "PJSIP/6001": member("PJSIP/6001", 1),  # an agent: never touched
        "PJSIP/6002": member(
            "PJSIP/6002", 0
        ),  # added by someone else with the default penalty: kept
        "PJSIP/6009": member("PJSIP/6009", 0),  # already there
        "PJSIP/6011": member("PJSIP/6011", 0),
    }  # window closed (e.g. while the controller was down)
    result = plan(duty, members, 0, leaders)
    assert [d.interface for d in result.add] == ["PJSIP/6010"]
    assert result.remove == ("PJSIP/6011",)
    # a leader endpoint present with an agent's penalty is re-added with the leader's
    result = plan(duty[:1], {"PJSIP/6009": member("PJSIP/6009", 1)}, 0, leaders)
    assert [d.interface for d in result.add] == ["PJSIP/6009"] and result.remove == ("PJSIP/6009",)
    # outside its window, a leader endpoint logged in as an agent (agent penalty) stays
    assert plan([], {"PJSIP/6009": member("PJSIP/6009", 1)}, 0, leaders) == plan([], {}, 0, leaders)


async def test_scheduled_interfaces_cover_neighbouring_days(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as s:
        await add_shift(s, shift("09:00", "11:00", day=date(2025, 3, 3), interface="PJSIP/6010"))
        await add_shift(s, shift("09:00", "11:00"))
        await add_shift(s, shift("09:00", "11:00", day=date(2025, 3, 9), interface="PJSIP/6011"))
        found = await scheduled_interfaces(s, datetime(2025, 3, 4, 1, 0, tzinfo=UTC), TZ)
    assert found == {"PJSIP/6009", "PJSIP/6010"}


async def test_on_duty_names_members_after_the_leader(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as s:
        await add_shift(s, shift("09:00", "11:00"))
        rows = await list_shifts(s)
    assert on_duty(rows) == [LeaderOnDuty("PJSIP/6009", "李明（区长）", "李明")]


@pytest.mark.parametrize(
    "bad",
    [
        shift("09:00", "10:00", name="李明\r\n\r\nAction: Hangup\r\nChannel: /./"),
        ShiftInput(DAY, time(9), time(10), "李明", "PJSIP/6009", "区\n长", "区政府"),
        ShiftInput(DAY, time(9), time(10), "李明", "PJSIP/6009\x00", "区长", "区政府"),
        ShiftInput(DAY, time(9), time(10), "李明", "PJSIP/6009", "区长", "区政府", "li ming"),
        replace(shift("09:00", "10:00"), pbx="b\r\nAction: Hangup"),
        replace(shift("09:00", "10:00"), pbx="b" * 65),
    ],
)
async def test_names_that_would_break_an_ami_line_are_refused(
    sessionmaker: async_sessionmaker[AsyncSession], bad: ShiftInput
) -> None:
    async with sessionmaker() as s:
        with pytest.raises(InvalidShift):
            await add_shift(s, bad)
        assert await list_shifts(s) == []


class QueueAmi:
    """A controller's AMI client that takes every action (QueueAdd, QueueRemove) and records it."""

    def __init__(self) -> None:
        self.actions: list[dict[str, Any]] = []
        self.stats = AmiStats()

    async def action(self, action: dict[str, Any], **_: Any) -> None:
        self.actions.append(action)


def controller_of(
    settings: Settings, pbx: str, sessionmaker: async_sessionmaker[AsyncSession], spool: Path
) -> tuple[HotlineController, QueueAmi]:
    """The controller of PBX ``pbx`` (``callcontrol.pbx``) at 09:30 on DAY, Shanghai time."""
    named = settings.model_copy(
        update={
            "callcontrol": settings.callcontrol.model_copy(update={"pbx": pbx}),
            "calllog": settings.calllog.model_copy(update={"spool_path": str(spool)}),
        }
    )
    ami = QueueAmi()
    controller = HotlineController(
        named,
        sessionmaker,
        ami,  # type: ignore[arg-type]
        is_working_day=lambda _d: True,
        clock=lambda: datetime(2025, 3, 4, 1, 30, tzinfo=UTC),
    )
    return controller, ami


async def test_only_the_controller_of_the_windows_pbx_adds_the_leader(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """Two Asterisks, one controller each: the window is on PBX b, so the leader rings once in the centre."""
    async with sessionmaker() as s:
        await add_shift(s, replace(shift("09:00", "11:00"), pbx="b"))
    a, ami_a = controller_of(settings, "a", sessionmaker, tmp_path / "a.jsonl")
    b, ami_b = controller_of(settings, "b", sessionmaker, tmp_path / "b.jsonl")
    await a._reconcile_leaders()
    await b._reconcile_leaders()
    assert ami_a.actions == [] and a.state.leaders == {}
    assert [(x["Action"], x["Interface"]) for x in ami_b.actions] == [("QueueAdd", "PJSIP/6009")]
    assert ami_b.actions[0]["Penalty"] == b.cfg.leader_penalty
    assert set(b.state.leaders) == {"PJSIP/6009"}

    # a controller of a that added the leader before windows had a PBX takes the leader out of its queue
    stale, ami_stale = controller_of(settings, "a", sessionmaker, tmp_path / "a2.jsonl")
    stale.state.members["PJSIP/6009"] = member("PJSIP/6009", stale.cfg.leader_penalty)
    await stale._reconcile_leaders()
    assert [(x["Action"], x["Interface"]) for x in ami_stale.actions] == [
        ("QueueRemove", "PJSIP/6009")
    ]
    assert "PJSIP/6009" not in stale.state.members
    async with sessionmaker() as s:  # the default PBX ("") has no window open
        assert await active_shifts(s, a.clock(), TZ, "") == []
        assert [r.pbx for r in await active_shifts(s, a.clock(), TZ)] == ["b"]
