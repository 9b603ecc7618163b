"""Two speech bots behind the real Asterisk: the controller spreads overflow callers by the bots' load reports, the
dialplan moves on from a bot that is gone, and with both gone the caller goes back to the queue.

Two real bots (Whisper, TTS, knowledge base, as in test_bot_call.py) listen on two free ports and report their
load (table bot_hosts); the controller knows them as ``[bot] hosts``. One agent is kept busy by a first call, so
the next callers wait and the controller redirects them to the bot with ``BOT_HOSTS`` set on their channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from asr.audiosocket_server import AudioSocketServer
from asr.bot import SpeechBot, build_bot
from asr.whisper_engine import WhisperEngine
from config import Settings
from config.settings import replace_settings
from hotline.wiring import bot_hooks, load_reports
from ivr import events as ev
from ivr.bot_hosts import BotHostBoard, BotLoad, read_loads
from ivr.controller import HotlineController
from tests.asr.live_whisper import live_whisper
from tests.e2e.conftest import AmiEvents
from tests.e2e.controller_support import (
    Events,
    controller_on,
    dial_12345,
    e2e_settings,
    explain,
    hang_up,
    start,
    stop,
    until_in_use,
)

pytestmark = [pytest.mark.pbx, pytest.mark.slow, pytest.mark.serial]
AGENT = "Local/6813@test-agent/n"
CALLER = "13800138013"
WAIT = 30.0


@pytest.fixture
def bot_settings(settings: Settings, pbx: Any, tmp_path: Path) -> Settings:
    return replace_settings(
        e2e_settings(settings, pbx),
        {
            "asr": {
                "bot": {"silence_timeout_s": 60, "kb_poll_s": 3600}
            },  # a bot call lasts until hung up
            "tts": {"cache_dir": str(tmp_path / "tts")},
        },
    )


@pytest.fixture
def whisper(bot_settings: Settings) -> Iterator[WhisperEngine]:
    with live_whisper(bot_settings) as engine:
        yield engine


class Sessions:
    """A bot server's calls in progress, awaited by predicate through its load reports (no sleeps)."""

    def __init__(self, server: AudioSocketServer) -> None:
        self.server = server
        self._changed = asyncio.Event()
        server.add_load_listener(lambda _active: self._changed.set())

    async def until_serving(
        self, bot_uuid: str, ami_events: AmiEvents, board: BotHostBoard
    ) -> None:
        try:
            async with asyncio.timeout(WAIT):
                while not any(str(u) == bot_uuid for u in self.server.sessions):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:  # say where the call went instead
            trail = [
                dict(e)
                for e in ami_events.events
                if e.get("Uuid") == bot_uuid
                or (e.get("Event") == "VarSet" and e.get("Variable") in ("BOT_HOSTS", "BOT_TRIED"))
            ]
            pytest.fail(f"this bot never served {bot_uuid}; loads {board.loads}; AMI trail {trail}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def two_bots(
    settings: Settings,
    database: async_sessionmaker[AsyncSession],
    whisper: WhisperEngine,
    ctrl: HotlineController,
) -> AsyncIterator[tuple[SpeechBot, SpeechBot]]:
    """The bots of ``settings.bot.hosts``, started and reporting their load, told the callers by ``ctrl``;
    closed at the end."""
    bots = [
        await build_bot(
            settings,
            database,
            recognizers=whisper,
            port=int(host.rsplit(":", 1)[1]),
            **bot_hooks(ctrl),
        )
        for host in settings.bot.hosts
    ]
    async with contextlib.AsyncExitStack() as stack:
        for bot in bots:
            stack.push_async_callback(bot.close)
            await bot.start()
            await stack.enter_async_context(load_reports(settings, database, bot))
        yield bots[0], bots[1]


async def overflow_call(
    ctrl: HotlineController, seen: Events, ami: Any, name: str
) -> ev.BotStarted:
    """A caller who waits for the busy agent and is sent to the bot by the controller."""
    uniqueid = await dial_12345(
        ami, CALLER, ["TEST_WAIT=60", "TEST_DTMF=0"], prefix=f"bothosts-{name}-"
    )
    try:
        started = await seen.wait(
            lambda e: isinstance(e, ev.BotStarted) and e.chan.uniqueid == uniqueid, WAIT
        )
    except TimeoutError:
        pytest.fail(f"caller {name} was not sent to the bot; {explain(ctrl, seen)}")
    assert isinstance(started, ev.BotStarted)
    return started


async def test_overflow_is_spread_over_two_bots_and_survives_one_then_both_gone(
    bot_settings: Settings,
    pbx: Any,
    local_pbx: Any,
    whisper: WhisperEngine,
    database: async_sessionmaker[AsyncSession],
    ami_events: AmiEvents,
) -> None:
    hosts = (f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}")
    settings = replace_settings(bot_settings, {"bot": {"hosts": list(hosts), "heartbeat_s": 0.2}})
    ctrl = controller_on(settings, database, local_pbx, pbx)
    board = ctrl.bot_hosts
    assert isinstance(board, BotHostBoard)
    seen = Events(ctrl)
    channels: list[str] = []
    async with two_bots(settings, database, whisper, ctrl) as (first, second):
        sessions = Sessions(first.server), Sessions(second.server)
        await start(ctrl)
        try:
            await ctrl.add_agent(AGENT, "测试坐席")
            since = len(seen.seen)
            busy = await dial_12345(
                ctrl.ami,
                CALLER,
                ["TEST_WAIT=60", "TEST_DTMF=0", "__TEST_AGENT_WAIT=60"],
                prefix="bothosts-",
            )
            answered = await seen.wait(lambda e: isinstance(e, ev.AgentConnected), WAIT)
            assert isinstance(answered, ev.AgentConnected), busy
            channels.append(answered.chan.channel)
            await until_in_use(seen, AGENT, since)

            # both idle: the first bot; the first busy: the second
            await board.until(lambda loads: set(loads) == set(hosts))
            a = await overflow_call(ctrl, seen, ctrl.ami, "a")
            channels.append(a.chan.channel)
            await sessions[0].until_serving(a.bot_uuid, ami_events, board)
            await board.until(lambda loads: is_load(loads, hosts[0], 1))
            b = await overflow_call(ctrl, seen, ctrl.ami, "b")
            channels.append(b.chan.channel)
            await sessions[1].until_serving(b.bot_uuid, ami_events, board)

            # the first bot's AudioSocket is gone while its process still reports it idle: the controller
            # still orders it first, the dialplan finds it refusing and goes on to the second in the same run
            await first.server.close()
            await board.until(
                lambda loads: is_load(loads, hosts[0], 0) and is_load(loads, hosts[1], 1)
            )
            c = await overflow_call(ctrl, seen, ctrl.ami, "c")
            channels.append(c.chan.channel)
            await sessions[1].until_serving(c.bot_uuid, ami_events, board)
            assert (
                await channel_variable(ctrl, c.chan.channel, "BOT_TRIED")
                == f"&{hosts[0]}&{hosts[1]}"
            )

            # both gone: back to the queue (then the message box), never silence
            await second.server.close()
            d = await overflow_call(ctrl, seen, ctrl.ami, "d")
            channels.append(d.chan.channel)
            end = await ami_events.wait_for(
                lambda e: e.get("UserEvent") == "HotlineBotEnd" and e.get("Uuid") == d.bot_uuid,
                WAIT,
            )
            assert (end.get("Status"), end.get("Host") or "") == ("FAILED", "")  # no host took it
            await seen.wait(
                lambda e: (
                    isinstance(e, ev.CallerJoined)
                    and e.chan.uniqueid == d.chan.uniqueid
                    and e.at > d.at
                ),
                WAIT,
            )
        finally:
            for channel in channels:
                await hang_up(ctrl, channel)
            await stop(ctrl, [AGENT])
    assert first.server.stats.sessions_total == 1 and second.server.stats.sessions_total == 2
    async with database() as session:
        assert await read_loads(session) == {}  # stopped bots withdrew their reports


async def channel_variable(ctrl: HotlineController, channel: str, name: str) -> str:
    reply = await ctrl.ami.action({"Action": "Getvar", "Channel": channel, "Variable": name})
    return str(reply.get("Value", ""))  # type: ignore[union-attr]


def is_load(loads: Mapping[str, BotLoad], host: str, active: int) -> bool:
    return host in loads and loads[host].active_sessions == active
