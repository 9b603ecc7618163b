"""Several bot hosts: the order a caller's bots are tried in (table of cases), the bots' load reports (heartbeat)
and the controller's BOT_HOSTS before its Redirect."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from panoramisk.message import Message
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from config.settings import BotHostsSettings, SettingsError, load_settings, replace_settings
from ivr.bot_hosts import BotHeartbeat, BotHostBoard, BotLoad, order_hosts, read_loads
from ivr.controller import HotlineController
from ivr.overflow import WaitingCaller
from ivr.pbx.render import RenderValues, render_all
from ivr.state import Call

NOW = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
STALE_S = 10.0
H1, H2, H3 = "10.0.0.1:19092", "10.0.0.2:19092", "10.0.0.3:19092"


def load(address: str, active: int, capacity: int = 16, age_s: float = 1.0) -> BotLoad:
    return BotLoad(address, active, capacity, NOW - timedelta(seconds=age_s))


ORDER_CASES = [
    # (name, loads, expected order of H1, H2, H3)
    ("no reports: the configured order", [], (H1, H2, H3)),
    ("least loaded first", [load(H1, 9), load(H2, 2), load(H3, 5)], (H2, H3, H1)),
    (
        "by free sessions, not by calls",
        [load(H1, 4, 8), load(H2, 6, 16), load(H3, 0, 2)],
        (H2, H1, H3),
    ),
    (
        "equal load keeps the configured order",
        [load(H1, 3), load(H2, 3), load(H3, 3)],
        (H1, H2, H3),
    ),
    (
        "a stale heartbeat counts as down",
        [load(H1, 0, age_s=11), load(H2, 15), load(H3, 15)],
        (H2, H3, H1),
    ),
    ("a bot never seen is last", [load(H2, 8), load(H3, 1)], (H3, H2, H1)),
    ("a full bot after one with room", [load(H1, 16), load(H2, 15)], (H2, H1, H3)),
    ("full but alive before down", [load(H1, 16), load(H2, 1, age_s=60)], (H1, H2, H3)),
    (
        "a report at the limit is still fresh",
        [load(H1, 9, age_s=10), load(H2, 2, age_s=10.5)],
        (H1, H2, H3),
    ),
    ("a bot not in the hosts is ignored", [load("10.9.9.9:1", 0), load(H3, 0)], (H3, H1, H2)),
]


@pytest.mark.parametrize(
    ("loads", "expected"), [c[1:] for c in ORDER_CASES], ids=[c[0] for c in ORDER_CASES]
)
def test_hosts_are_ordered_least_loaded_first_and_stale_ones_last(
    loads: list[BotLoad], expected: tuple[str, ...]
) -> None:
    by_address = {b.address: b for b in loads}
    assert order_hosts((H1, H2, H3), by_address, NOW, STALE_S) == expected


def test_bot_hosts_are_host_and_port_from_toml_or_the_environment() -> None:
    assert load_settings(env={"HOTLINE_BOT_HOSTS": f"{H1}, {H2}"}).bot.hosts == (H1, H2)
    assert load_settings(env={}).bot.hosts == ()  # the one bot of the local PBX
    for bad in ("10.0.0.1", "10.0.0.1:0", f"{H1},{H1}", "a&b:1"):
        with pytest.raises(SettingsError, match=r"bot\.hosts"):
            load_settings(env={"HOTLINE_BOT_HOSTS": bad})


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


async def loads_of(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, BotLoad]:
    async with sessionmaker() as session:
        return await read_loads(session)


async def test_a_bot_reports_its_load_and_goes_stale_when_it_stops_beating(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    clock = Clock()
    first = BotHeartbeat(sessionmaker, H1, 16, 3.0, clock)
    second = BotHeartbeat(sessionmaker, H2, 8, 3.0, clock)
    await first.beat()  # registers: INSERT
    await second.beat()
    first.report(10)  # calls started: the next beat says so (one UPDATE)
    clock.now = NOW + timedelta(seconds=3)
    await first.beat()
    assert await loads_of(sessionmaker) == {
        H1: BotLoad(H1, 10, 16, NOW + timedelta(seconds=3)),
        H2: BotLoad(H2, 0, 8, NOW),
    }
    board_clock = Clock()
    settings = BotHostsSettings(hosts=(H2, H1), stale_after_s=STALE_S)
    board = BotHostBoard(settings, sessionmaker, board_clock)
    board_clock.now = NOW + timedelta(seconds=4)
    await board.refresh()
    assert board.choose() == f"{H2}&{H1}"  # 8 free against 6
    board_clock.now = NOW + timedelta(seconds=11)  # the second bot's last beat is 11 s old: down
    await board.refresh()
    assert board.choose() == f"{H1}&{H2}"
    await first.withdraw()  # stopped: down at once
    await board.refresh()
    assert board.choose() == f"{H2}&{H1}" and set(await loads_of(sessionmaker)) == {H2}


class WatchedHeartbeat(BotHeartbeat):
    """Says when it has written its row."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.written = asyncio.Event()

    async def beat(self) -> None:
        await super().beat()
        self.written.set()


async def test_a_call_start_wakes_the_heartbeat_at_once(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    heartbeat = WatchedHeartbeat(sessionmaker, H1, 16, 3600.0)  # no periodic beat within this test
    task = asyncio.create_task(heartbeat.run())
    try:
        async with asyncio.timeout(5):
            await heartbeat.written.wait()  # registered at start
            heartbeat.written.clear()
            heartbeat.report(2)
            await heartbeat.written.wait()
    finally:
        task.cancel()
    assert heartbeat.beats == 2 and (await loads_of(sessionmaker))[H1].active_sessions == 2


def test_callers_sent_count_on_their_host_until_the_next_refresh() -> None:
    board = BotHostBoard(BotHostsSettings(hosts=(H1, H2)), async_sessionmaker(), clock=lambda: NOW)
    board.loads = {H1: load(H1, 3, 8), H2: load(H2, 4, 8)}
    assert [board.choose() for _ in range(4)] == [
        f"{H1}&{H2}",  # 5 free against 4
        f"{H1}&{H2}",  # 4 against 4: the configured order
        f"{H2}&{H1}",  # 3 against 4
        f"{H1}&{H2}",
    ]


class RecordingAmi:
    """The controller's AMI client: records the actions, every one succeeds; ``meanwhile`` runs while one is
    under way (events that arrive before its answer)."""

    def __init__(self, meanwhile: Callable[[], None] = lambda: None) -> None:
        self.actions: list[dict[str, Any]] = []
        self.meanwhile = meanwhile

    async def action(self, action: dict[str, Any], **_: Any) -> Message:
        self.actions.append(action)
        self.meanwhile()
        return Message({"Response": "Success"})


def redirecting_controller(
    settings: Settings, ami: RecordingAmi, hosts: tuple[str, ...]
) -> HotlineController:
    """A controller with one caller (u1) waiting in the queue; ``hosts`` loaded 9 and 1."""
    sessionmaker: async_sessionmaker[AsyncSession] = async_sessionmaker()  # not used by a redirect
    board = None
    if hosts:
        board = BotHostBoard(BotHostsSettings(hosts=hosts), sessionmaker, clock=lambda: NOW)
        board.loads = {H1: load(H1, 9), H2: load(H2, 1)}
    controller = HotlineController(
        settings,
        sessionmaker,
        ami,  # type: ignore[arg-type]
        is_working_day=lambda _d: True,
        bot_hosts=board,
    )
    controller.state.calls["u1"] = Call(
        "u1",
        "u1",
        "PJSIP/caller-1",
        "13800138000",
        "12345",
        NOW,
        queue="hotline",
        queue_joined_at=NOW,
    )
    return controller


@pytest.mark.parametrize("hosts", [(), (H1, H2)], ids=["one bot", "two bots"])
async def test_an_overflow_caller_gets_its_bot_hosts_before_the_redirect(
    settings: Settings, hosts: tuple[str, ...]
) -> None:
    ami = RecordingAmi()
    controller = redirecting_controller(settings, ami, hosts)
    await controller._redirect(WaitingCaller("u1", "PJSIP/caller-1", NOW, True), NOW)
    setvars = [
        (a["Channel"], a["Variable"], a["Value"]) for a in ami.actions if a["Action"] == "Setvar"
    ]
    assert setvars == ([("PJSIP/caller-1", "BOT_HOSTS", f"{H2}&{H1}")] if hosts else [])
    assert ami.actions[-1]["Action"] == "Redirect" and ami.actions[-1]["Context"] == "hotline-bot"


async def test_a_caller_an_agent_begins_to_ring_for_during_the_setvar_is_not_taken_away(
    settings: Settings,
) -> None:
    """AgentCalled arrives while BOT_HOSTS is being set: no Redirect (it would take the caller from an agent
    about to answer), and the caller may be decided on again once the ring ends unanswered."""

    def agent_rings() -> None:
        controller.state.calls["u1"].ringing = frozenset({"PJSIP/6001"})

    ami = RecordingAmi(agent_rings)
    controller = redirecting_controller(settings, ami, (H1, H2))
    await controller._redirect(WaitingCaller("u1", "PJSIP/caller-1", NOW, True), NOW)
    assert [a["Action"] for a in ami.actions] == ["Setvar"]
    call = controller.state.calls["u1"]
    assert call.redirected_at is None
    call.ringing = frozenset()  # AgentRingNoAnswer
    assert call.overflow_eligible()


@pytest.mark.parametrize(
    ("hosts", "rendered"),
    [((), "BOT_SERVICE=127.0.0.1:19999\n"), ((H1, H2), f"BOT_SERVICE={H1}&{H2}\n")],
    ids=["the local bot", "several bots"],
)
def test_the_dialplan_lists_the_bot_hosts_in_the_configured_order(
    settings: Settings, hosts: tuple[str, ...], rendered: str
) -> None:
    configured = replace_settings(settings, {"bot": {"hosts": list(hosts)}})
    values = RenderValues.generate(configured, audiosocket_port=19999)
    dialplan = render_all(values.as_context())["extensions.conf"]
    assert rendered in dialplan
    bot = dialplan.split("\n[hotline-bot]\n")[1].split("\n[")[0]
    assert "AudioSocket(${BOT_UUID},${BOT_HOST})" in bot and "SHIFT(BOT_TRY,&)" in bot
