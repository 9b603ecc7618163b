"""The command channel from console workers to the controllers (PostgreSQL): a command runs exactly once though
two controllers race for it, a coded error of the call control comes back with its code and HTTP status, a
command nobody takes answers 503 and never runs later, one taken but not finished answers 504, and a controller
whose connection was lost runs, once back, what came meanwhile. A console wired with the remote switchboard
transfers a call through it, and sets its agents' status (示闲 / 示忙 / 话后整理) and starts call-backs (回访)
through it. The controller's call control is the console tests' fake."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agent_console.command_channel import (
    COMMANDS,
    DONE,
    Codec,
    CommandClient,
    CommandExecutor,
    CommandTimeout,
    NoController,
)
from agent_console.errors import ConsoleError
from agent_console.models import ConsoleCommand, ConsoleController
from agent_console.switchboard import (
    ConsoleCommands,
    RemoteCallControl,
    RemoteSwitchboard,
    Switchboard,
)
from config import Settings
from hotline.wiring import command_executor, console_desk, remote_switchboard
from ivr.callbacks import OutsideCallbackHours
from ivr.callcontrol import NoActiveCall, Target, agent_target
from ivr.models import CallRecord
from tests.agent_console.harness import Console, console_settings, start_console, stop_console
from tests.agent_console.switchboard_support import BOARD, NOW, FakeSwitchboard
from tests.agent_console.tickets_support import json_of
from tests.conftest import SQLITE_ONLY
from tests.ivr.callback_support import verified_ticket
from tests.pg_support import Dialer, kill_connections

PG_ONLY = pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
TZ = ZoneInfo("Asia/Shanghai")


def client(
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    timeout_s: float = 10.0,
    target: str = "",
) -> CommandClient:
    return CommandClient(
        sessionmaker,
        Dialer(engine, "console"),
        Codec(ConsoleCommands),
        target=target,
        timeout_s=timeout_s,
    )


def executor(
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    control: FakeSwitchboard,
    name: str,
    pbx: str = "",
) -> CommandExecutor:
    return CommandExecutor(
        control, Codec(ConsoleCommands), sessionmaker, Dialer(engine, name), name=name, pbx=pbx
    )


@pytest.fixture
async def two_pbxes(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[dict[str, tuple[CommandExecutor, FakeSwitchboard]]]:
    """The controllers of PBX a and PBX b, listening and announced; each board lists its own agent."""
    sides = {}
    for pbx in ("a", "b"):
        control = FakeSwitchboard([replace(BOARD[0], interface=f"PJSIP/agent-{pbx}")])
        sides[pbx] = (executor(engine, sessionmaker, control, f"controller-{pbx}", pbx), control)
    for side, _ in sides.values():
        await side.start()
        await side.listening.wait()
        await side.announce()
    yield sides
    for side, _ in sides.values():
        await side.close()


@pytest.fixture
async def console_side(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[CommandClient]:
    side = client(engine, sessionmaker)
    await side.start()
    await side.listening.wait()
    yield side
    await side.close()


@pytest.fixture
async def controller(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[tuple[CommandExecutor, FakeSwitchboard]]:
    control = FakeSwitchboard()
    side = executor(engine, sessionmaker, control, "controller-a")
    await side.start()
    await side.listening.wait()
    yield side, control
    await side.close()


def to(number: str) -> Target:
    return agent_target(f"agent{number}", f"坐席{number}", f"PJSIP/{number}")


async def states(sessionmaker: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessionmaker() as db:
        return list(await db.scalars(select(ConsoleCommand.state).order_by(ConsoleCommand.id)))


@PG_ONLY
async def test_each_command_runs_once_though_two_controllers_race_for_it(
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    console_side: CommandClient,
) -> None:
    controls = [FakeSwitchboard(), FakeSwitchboard()]
    sides = [executor(engine, sessionmaker, c, f"controller-{i}") for i, c in enumerate(controls)]
    for side in sides:
        await side.start()
    await asyncio.gather(*(side.listening.wait() for side in sides))
    numbers = [str(6000 + i) for i in range(12)]
    try:
        rows = await asyncio.gather(
            *(
                console_side.call(
                    "transfer",
                    agent_interface="PJSIP/agent",
                    target=to(n),
                    mode="blind",
                    by="agent",
                    ticket_no=None,
                )
                for n in numbers
            )
        )
    finally:
        for side in sides:
            await side.close()
    assert [row.target for row in rows] == [f"agent{n}" for n in numbers]
    ran = [t.dial for c in controls for _, t, _, _, _ in c.transfers]
    assert sorted(ran) == [f"PJSIP/{n}" for n in numbers]  # each once, whichever controller
    assert await states(sessionmaker) == ["done"] * len(numbers)


@PG_ONLY
async def test_a_coded_error_of_the_call_control_comes_back_with_its_code_and_status(
    console_side: CommandClient, controller: tuple[CommandExecutor, FakeSwitchboard]
) -> None:
    _, control = controller
    control.refusal = NoActiveCall("PJSIP/agent")
    with pytest.raises(ConsoleError) as refused:
        await RemoteSwitchboard(console_side).transfer(
            "PJSIP/agent", to("6001"), "blind", by="agent", ticket_no=None
        )
    error = refused.value
    assert (error.status, error.code) == (409, "callcontrol.no_call")
    assert error.message == "该坐席当前没有正在进行的通话"


@PG_ONLY
async def test_a_command_no_controller_takes_answers_503_and_never_runs_later(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    side = client(engine, sessionmaker, timeout_s=0.3)
    await side.start()
    try:
        with pytest.raises(NoController) as unclaimed:
            await side.call("spy", **spy_arguments())
        assert unclaimed.value.status == 503 and "hotline ivr" in unclaimed.value.message
        assert await RemoteSwitchboard(side).board(TZ) is None  # the board: not connected
    finally:
        await side.close()
    control = FakeSwitchboard()
    late = executor(engine, sessionmaker, control, "controller-late")
    await late.start()
    await late.listening.wait()  # it has looked for waiting commands
    await late.close()
    assert control.spies == [] and await states(sessionmaker) == ["expired", "expired"]


@PG_ONLY
async def test_a_command_taken_but_not_finished_in_time_answers_504(
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    controller: tuple[CommandExecutor, FakeSwitchboard],
) -> None:
    _, control = controller
    control.hold = asyncio.Event()
    side = client(engine, sessionmaker, timeout_s=0.3)
    await side.start()
    try:
        with pytest.raises(CommandTimeout) as late:
            await side.call("board", tz=TZ)
    finally:
        await side.close()
    assert late.value.status == 504 and late.value.code == "command.timeout"
    control.hold.set()


@PG_ONLY
async def test_a_controller_back_from_a_lost_connection_runs_what_came_meanwhile(
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    console_side: CommandClient,
) -> None:
    control = FakeSwitchboard()
    dialer = Dialer(engine, "controller-a")
    side = CommandExecutor(control, Codec(Switchboard), sessionmaker, dialer)
    await side.start()
    await side.listening.wait()
    sent = asyncio.Event()
    watcher = await Dialer(engine, "watcher").connect()
    await watcher.add_listener(COMMANDS, lambda *_: sent.set())
    try:
        dialer.hold()  # the database is unreachable for the controller
        assert await kill_connections(engine, "controller-a") == 1
        await dialer.waiting.wait()
        call = asyncio.create_task(console_side.call("board", tz=TZ))
        await sent.wait()  # stored while the controller was away
        dialer.release()
        assert await asyncio.wait_for(call, 5) == BOARD
    finally:
        await watcher.close()
        await side.close()
    assert dialer.made.qsize() == 2


@PG_ONLY
async def test_a_console_back_from_a_lost_connection_hears_what_finished_meanwhile(
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    controller: tuple[CommandExecutor, FakeSwitchboard],
) -> None:
    dialer = Dialer(engine, "console-a")
    side = CommandClient(sessionmaker, dialer, Codec(Switchboard), timeout_s=60)
    await side.start()
    await side.listening.wait()
    finished = asyncio.Event()
    watcher = await Dialer(engine, "watcher").connect()
    await watcher.add_listener(DONE, lambda *_: finished.set())
    try:
        dialer.hold()
        assert await kill_connections(engine, "console-a") == 1
        await dialer.waiting.wait()
        call = asyncio.create_task(side.call("board", tz=TZ))
        await finished.wait()  # its answer came while the console did not listen
        dialer.release()
        assert await asyncio.wait_for(call, 5) == BOARD  # long before the 60 s timeout
    finally:
        await watcher.close()
        await side.close()


@PG_ONLY
async def test_a_new_switchboard_method_goes_through_without_code_of_its_own_and_leaves_no_password(
    sessionmaker: async_sessionmaker[AsyncSession],
    console_side: CommandClient,
    controller: tuple[CommandExecutor, FakeSwitchboard],
) -> None:
    _, control = controller
    await RemoteSwitchboard(console_side).provision_softphone("6101", "s3cret-pw", 900.0)
    assert control.softphones == {"6101": ("s3cret-pw", 900.0)}
    async with sessionmaker() as db:
        stored = (await db.scalars(select(ConsoleCommand))).one()
    assert (stored.kind, stored.state, stored.arguments) == ("provision_softphone", "done", {})


@PG_ONLY
async def test_a_console_wired_with_the_remote_switchboard_transfers_through_a_controller(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    own = worker_settings(settings, engine)
    switchboard = remote_switchboard(own, sessionmaker)
    control = FakeSwitchboard()
    runner = command_executor(own, sessionmaker, control)  # type: ignore[arg-type]
    assert switchboard is not None and runner is not None
    await switchboard.start()
    await runner.start()
    await asyncio.gather(switchboard.client.listening.wait(), runner.listening.wait())
    console = await start_console(own, sessionmaker, switchboard=switchboard)
    try:
        agent = await console.logged_in("agent")
        body = {"mode": "blind", "target_kind": "emergency", "target": "120"}
        resp = await agent.write("POST", "/api/v1/console/calls/transfer", body)
        assert resp.status == 201, await resp.text()
        answer = await resp.json()
        assert (answer["id"], answer["target_label"], answer["outcome_label"]) == (
            1,
            "医疗急救",
            "呼叫中",
        )
        [(interface, target, mode, by, _)] = control.transfers
        assert (interface, target.target, mode, by) == ("PJSIP/agent", "120", "blind", "agent")
        control.refusal = NoActiveCall("PJSIP/agent")
        refused = await agent.write("POST", "/api/v1/console/calls/transfer", body)
        assert refused.status == 409
        assert (await refused.json())["error"]["code"] == "callcontrol.no_call"
    finally:
        await stop_console(console)
        await runner.close()
        await switchboard.close()


async def on_call(
    sessionmaker: async_sessionmaker[AsyncSession], interface: str, pbx: str, *, ended: bool = False
) -> None:
    """The call log: ``interface`` took a call on ``pbx`` (still going unless ``ended``)."""
    async with sessionmaker.begin() as db:
        count = len((await db.scalars(select(CallRecord.id))).all())
        uniqueid = f"{pbx}-1741000000.{count}"
        db.add(
            CallRecord(
                uniqueid=uniqueid,
                pbx=pbx,
                linkedid=uniqueid,
                started_at=NOW,
                answered_at=NOW + timedelta(seconds=count),
                ended_at=NOW + timedelta(minutes=5) if ended else None,
                agent_interface=interface,
                updated_at=NOW,
            )
        )


@PG_ONLY
async def test_an_agents_transfer_and_supervision_reach_the_controller_of_the_pbx_of_their_call(
    sessionmaker: async_sessionmaker[AsyncSession],
    console_side: CommandClient,
    two_pbxes: dict[str, tuple[CommandExecutor, FakeSwitchboard]],
) -> None:
    calls = {"PJSIP/6001": "b", "PJSIP/6002": "a", "PJSIP/6003": "b", "PJSIP/6004": "a"}
    await on_call(sessionmaker, "PJSIP/6001", "a", ended=True)  # an earlier call, on the other PBX
    for interface, pbx in calls.items():
        await on_call(sessionmaker, interface, pbx)
    switchboard = RemoteSwitchboard(console_side)
    for interface in calls:
        await switchboard.transfer(interface, to("6100"), "blind", by="agent", ticket_no=None)
    for pbx, (_, control) in two_pbxes.items():
        assert [t[0] for t in control.transfers] == [i for i, p in calls.items() if p == pbx]
    await switchboard.spy(**(spy_arguments() | {"agent_interface": "PJSIP/6003"}))  # type: ignore[arg-type]
    assert [s["interface"] for s in two_pbxes["b"][1].spies] == ["PJSIP/6003"]
    assert two_pbxes["a"][1].spies == []


@PG_ONLY
async def test_the_board_is_the_union_of_the_pbxs_announced_and_passwords_reach_each(
    sessionmaker: async_sessionmaker[AsyncSession],
    console_side: CommandClient,
    two_pbxes: dict[str, tuple[CommandExecutor, FakeSwitchboard]],
) -> None:
    async with sessionmaker.begin() as db:  # a controller gone an hour ago is not asked
        stale = await db.scalar(select(func.now() - timedelta(hours=1)))
        db.add(ConsoleController(pbx="c", name="gone", heartbeat_at=stale))
    switchboard = RemoteSwitchboard(console_side)
    board = await switchboard.board(TZ)
    assert board is not None and sorted(a.interface for a in board) == [
        "PJSIP/agent-a",
        "PJSIP/agent-b",
    ]
    await switchboard.provision_softphone("6101", "s3cret-pw", 900.0)
    for _, control in two_pbxes.values():
        assert control.softphones == {"6101": ("s3cret-pw", 900.0)}
    await switchboard.revoke_softphone("6101")
    for _, control in two_pbxes.values():
        assert control.softphones == {}
    async with sessionmaker() as db:
        sent = (await db.execute(select(ConsoleCommand.kind, ConsoleCommand.target))).all()
    assert sorted(sent) == sorted(
        (kind, pbx)
        for kind in ("board", "provision_softphone", "revoke_softphone")
        for pbx in ("a", "b")
    )

    side_b, control_b = two_pbxes["b"]
    await side_b.close()  # b stops: its announcement goes with it
    control_b.agents = []
    board = await switchboard.board(TZ)
    assert board is not None and [a.interface for a in board] == ["PJSIP/agent-a"]


def str_url(engine: AsyncEngine) -> str:
    return engine.url.render_as_string(hide_password=False)


def worker_settings(settings: Settings, engine: AsyncEngine, **callcontrol: float) -> Settings:
    """A console worker's settings on ``engine``'s database; ``agent`` answers on softphone extension 6101."""
    return console_settings(
        settings.model_copy(
            update={
                "database": settings.database.model_copy(update={"url": str_url(engine)}),
                "callcontrol": settings.callcontrol.model_copy(update=callcontrol),
                "softphone": settings.softphone.model_copy(
                    update={"extensions": {"agent": "6101"}}
                ),
            }
        )
    )


@contextlib.asynccontextmanager
async def console_worker(
    own: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    control: FakeSwitchboard | None,
    *,
    seed: bool = True,
) -> AsyncIterator[Console]:
    """A console wired as `hotline console` on PostgreSQL (switchboard and desk through the command channel),
    and, unless ``control`` is None, a controller running the commands on it, both listening; one account per
    role unless ``seed`` is False."""
    switchboard = remote_switchboard(own, sessionmaker)
    assert switchboard is not None
    runner = None if control is None else command_executor(own, sessionmaker, control)  # type: ignore[arg-type]
    await switchboard.start()
    await switchboard.client.listening.wait()
    if runner is not None:
        await runner.start()
        await runner.listening.wait()
    console = await start_console(
        own, sessionmaker, seed=seed, switchboard=switchboard, desk=console_desk(own, switchboard)
    )
    try:
        yield console
    finally:
        await stop_console(console)
        if runner is not None:
            await runner.close()
        await switchboard.close()


@PG_ONLY
async def test_a_console_worker_sets_its_agents_status_and_starts_call_backs_through_a_controller(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    control = FakeSwitchboard()
    async with console_worker(worker_settings(settings, engine), sessionmaker, control) as console:
        agent = await console.logged_in("agent")
        for state, reason in (("ready", ""), ("paused", "培训"), ("wrap_up", "")):
            body = {"state": state} | ({"reason": reason} if reason else {})
            out = await json_of(agent, "POST", "/api/v1/console/workspace/state", body)
            assert out["interface"] == "PJSIP/6101"  # the agent's softphone extension
        assert control.states == [
            ("PJSIP/6101", "ready", ""),
            ("PJSIP/6101", "paused", "培训"),
            ("PJSIP/6101", "wrap_up", ""),
        ]
        ticket_no = await verified_ticket(sessionmaker, "13900001111", datetime.now(UTC))
        path = f"/api/v1/console/callbacks/{ticket_no}/start"
        assert (await json_of(agent, "POST", path, status=202))["status"] == "started"
        assert control.callbacks == [ticket_no]
        control.refusal = OutsideCallbackHours("当前不在回访时段（08:00–20:00）")
        refused = await agent.write("POST", path)
        error = (await refused.json())["error"]
        assert (refused.status, error["code"]) == (409, "callback.outside_hours")
        assert error["message"] == "当前不在回访时段（08:00–20:00）"


@PG_ONLY
async def test_an_agents_status_answers_503_without_a_controller_and_504_when_it_is_not_done_in_time(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    own = worker_settings(settings, engine, command_timeout_s=0.3)
    ready = {"state": "ready"}
    async with console_worker(own, sessionmaker, None) as console:
        agent = await console.logged_in("agent")
        unclaimed = await agent.write("POST", "/api/v1/console/workspace/state", ready)
        error = (await unclaimed.json())["error"]
        assert (unclaimed.status, error["code"]) == (503, "command.no_controller")
        assert "hotline ivr" in error["message"]
    control = FakeSwitchboard()
    control.hold = asyncio.Event()
    async with console_worker(own, sessionmaker, control, seed=False) as console:
        agent = await console.logged_in("agent")
        late = await agent.write("POST", "/api/v1/console/workspace/state", ready)
        error = (await late.json())["error"]
        assert (late.status, error["code"]) == (504, "command.timeout")
        assert await states(sessionmaker) == ["expired", "claimed"]
        control.hold.set()


@PG_ONLY
async def test_an_agents_status_goes_to_the_pbx_of_their_call_else_the_consoles_as_do_call_backs(
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    two_pbxes: dict[str, tuple[CommandExecutor, FakeSwitchboard]],
) -> None:
    side = client(engine, sessionmaker, target="a")
    await side.start()
    await side.listening.wait()
    await on_call(sessionmaker, "PJSIP/6002", "b")
    control = RemoteCallControl(RemoteSwitchboard(side))
    try:
        await control.set_agent_state("PJSIP/6001", "ready")
        await control.set_agent_state("PJSIP/6002", "paused", "会议")
        await control.start_callback("12345-20250303-00001")
    finally:
        await side.close()
    (_, on_a), (_, on_b) = two_pbxes["a"], two_pbxes["b"]
    assert on_a.states == [("PJSIP/6001", "ready", "")]
    assert on_b.states == [("PJSIP/6002", "paused", "会议")]
    assert (on_a.callbacks, on_b.callbacks) == (["12345-20250303-00001"], [])


def spy_arguments() -> dict[str, str]:
    return {
        "agent_interface": "PJSIP/agent",
        "action": "listen",
        "agent": "agent",
        "supervisor": "supervisor",
        "role": "supervisor",
        "phone": "PJSIP/supervisor",
    }


@SQLITE_ONLY
async def test_on_sqlite_the_console_and_the_controller_keep_the_direct_call_control(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    assert remote_switchboard(settings, sessionmaker) is None
    assert command_executor(settings, sessionmaker, FakeSwitchboard()) is None  # type: ignore[arg-type]
