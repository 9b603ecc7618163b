"""Leader answering days (领导接听日): schedule validation on SQLite and PostgreSQL, and the member plan."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

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
    ],
)
async def test_names_that_would_break_an_ami_line_are_refused(
    sessionmaker: async_sessionmaker[AsyncSession], bad: ShiftInput
) -> None:
    async with sessionmaker() as s:
        with pytest.raises(InvalidShift):
            await add_shift(s, bad)
        assert await list_shifts(s) == []
