"""A city centre on one machine (issue #14): PostgreSQL, two real Asterisks (the default local PBX "a" and the
named instance "b" in the same root), one `hotline ivr` per Asterisk, two `hotline bot` and two `hotline console`
workers, each a process of its own.

A call into Asterisk b reaches the /ws of a logged-in client on console worker A through PostgreSQL, and the
cockpit a leader has open in Chromium on worker A. Its controller logs it as b's, under b's system-name-prefixed
Uniqueid. Both Asterisks' dialplans list both bots (``[bot] hosts``) and both controllers order them by load:
when a queue loses its last free member, its waiting caller overflows to a bot, from a and from b alike; bot 1
stops, and the next overflow caller is served by bot 2, which speaks to them. Controller a stops: controller b
keeps serving calls into b and takes the call-back scheduler over (a run-once job: it ran in a, never in both),
and rings a due citizen exactly once; the ticket it closes shows as closed on worker A's socket at once. No
run-once job ran in two processes at a time. Console worker B serves the agents of Asterisk a (``callcontrol.pbx = a``):
an agent's 示闲 and 示忙 there reach controller a, which logs them into a's queue and pauses them with the reason.

The bots load their models once per module, started before the Asterisks and the other services.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from panoramisk import Manager
from playwright.async_api import Browser as Chromium
from playwright.async_api import Page, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from yarl import URL

from agent_console.auth import Accounts, Origin
from agent_console.masking import mask_phone
from agent_console.roles import Role
from agent_console.schemas import UserCreate
from config import Settings
from config.settings import replace_settings
from hotline.db import make_engine, make_sessionmaker
from hotline.local_postgres import LocalPostgres
from ivr.bot_hosts import read_loads
from ivr.models import CallbackAttempt, CallRecord
from ivr.pbx import LocalPbx, PbxInfo
from ivr.pbx.testcall import ami_connect
from tests.agent_console.harness import FAST_ARGON2, Browser, password_of
from tests.browser.conftest import ARTIFACTS, TIMEOUT_MS, chromium, chromium_path  # noqa: F401 (fixtures)
from tests.conftest import ROOT, _fresh_pg_database
from tests.e2e.conftest import AmiEvents
from tests.e2e.controller_support import new_number
from tests.ivr.callback_support import verified_ticket
from tickets.services import get_ticket

pytestmark = [pytest.mark.pbx, pytest.mark.browser, pytest.mark.slow, pytest.mark.serial]

LEADER = "leader"
AGENT = "agent"  # answers on PJSIP/agent (no softphone extension of their own)
SURVEY_JOB = "job callbacks-survey: running in this process"
MISSED_JOB = "job callbacks-missed: running in this process"
JOB_RUNNING = re.compile(r"job (\S+): running in this process")
# A queue member that rings and never answers (the emulated citizen told "noanswer"): callers stay waiting
# (the queue refuses callers while no member could take them).
UNANSWERED = "6999"
MEMBER = f"Local/{UNANSWERED}@test-citizen/n"
BOT_READY = "speech bot listening on"
WAIT_S = 30.0


class Service:
    """One `hotline …` process of the centre; its log (stderr) goes to test-artifacts/ and is awaited line by
    line as it arrives."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name, self.args, self.env = name, args, env
        self.lines: list[str] = []
        self.log_path = ROOT / "test-artifacts" / f"city-centre-{name}.log"
        self._changed = asyncio.Condition()
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> Service:
        self.log_path.parent.mkdir(exist_ok=True)
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hotline.cli",
            *self.args,
            cwd=ROOT,
            env=self.env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read(self._proc))
        return self

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        with self.log_path.open("w", encoding="utf-8") as log:
            async for raw in proc.stderr:
                line = raw.decode(errors="replace")
                log.write(line)
                log.flush()
                async with self._changed:
                    self.lines.append(line)
                    self._changed.notify_all()
        async with self._changed:  # the process closed its log: it is ending
            self._changed.notify_all()

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    async def wait_for(self, text: str, timeout_s: float = 60) -> None:
        """Until a line of the log contains ``text``; fails at once when the process ends first."""
        assert self._reader is not None
        async with asyncio.timeout(timeout_s), self._changed:
            while not self.count(text):
                assert not self._reader.done(), f"{self.name} ended before logging {text!r}"
                await self._changed.wait()

    async def stop(self) -> int | None:
        """SIGTERM, then wait for the process and its log; its exit status."""
        if self._proc is None or self._reader is None:
            return None
        if self._proc.returncode is None:
            self._proc.terminate()
        async with asyncio.timeout(60):
            await self._proc.wait()
            await self._reader
        return self._proc.returncode


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
async def centre_engine(
    postgres: LocalPostgres | str, postgres_template: str
) -> AsyncIterator[AsyncEngine]:
    """The centre's PostgreSQL database, fresh for this module: the bots report their load into it from the
    module's start."""
    engine = make_engine(await _fresh_pg_database(postgres, postgres_template))
    yield engine
    await engine.dispose()


@pytest.fixture(scope="module")
def centre_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("city-centre")


@pytest.fixture(scope="module")
def bot_hosts() -> tuple[str, str]:
    """``[bot] hosts`` of the centre: two free loopback ports."""
    return f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"


@pytest.fixture(scope="module")
def centre_env(
    centre_engine: AsyncEngine, centre_dir: Path, bot_hosts: tuple[str, str]
) -> dict[str, str]:
    """What every process of the centre shares: the database, a data folder, the bots and their reports."""
    return os.environ | {
        "HOTLINE_DATABASE_URL": centre_engine.url.render_as_string(hide_password=False),
        "HOTLINE_DATA_DIR": str(centre_dir),
        "HOTLINE_BOT_HOSTS": ",".join(bot_hosts),
        "HOTLINE_BOT_HEARTBEAT_S": "0.5",
    }


# The bot's sentences a silent caller hears, short in this test: the greeting, then the hand-over to a human.
SHORT_PROMPTS = {"greeting": "您好，请讲。", "to_human": "请稍候。"}


def short_prompts(folder: Path) -> Path:
    """The shipped bot sentences (config/bot_prompts.toml) with :data:`SHORT_PROMPTS` in place of theirs."""
    text = (ROOT / "config" / "bot_prompts.toml").read_text(encoding="utf-8")
    for key, sentence in SHORT_PROMPTS.items():
        text, replaced = re.subn(rf'^{key} = ".*"$', f'{key} = "{sentence}"', text, flags=re.M)
        assert replaced == 1, key
    path = folder / "bot_prompts.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
async def bots(
    centre_env: dict[str, str], bot_hosts: tuple[str, str]
) -> AsyncIterator[list[Service]]:
    """Two `hotline bot` processes, one per host, started (not yet awaited: they load their models while the
    Asterisks and the other services start). A caller who says nothing hears the (short) greeting, then after a
    second of silence goes back to a human: the bot ends the call."""
    prompts = short_prompts(Path(centre_env["HOTLINE_DATA_DIR"]))
    started = []
    for n, host in enumerate(bot_hosts, 1):
        address, port = host.rsplit(":", 1)
        env = centre_env | {
            "HOTLINE_ASR_BOT_SILENCE_TIMEOUT_S": "1",
            "HOTLINE_ASR_BOT_MAX_SILENCES": "1",
            "HOTLINE_ASR_BOT_PROMPTS": str(prompts),
            "HOTLINE_ASR_BOT_KB_POLL_S": "3600",
            "HOTLINE_TTS_CACHE_DIR": str(Path(centre_env["HOTLINE_DATA_DIR"]) / f"tts-{n}"),
        }
        started.append(
            await Service(f"bot-{n}", ["bot", "--host", address, "--port", port], env).start()
        )
    yield started
    for bot in started:
        await bot.stop()


@pytest.fixture(scope="module")
def centre_pbxs(
    local_pbx: LocalPbx, pbx: PbxInfo, bot_hosts: tuple[str, str], bots: list[Service]
) -> Iterator[tuple[PbxInfo, PbxInfo]]:
    """Asterisk a (the session's) and b (the named instance beside it, in the same root), their dialplans
    rendered from settings whose ``[bot] hosts`` list both bots (a running instance is rendered again and its
    dialplan reloaded: ``start(audiosocket_port=…)`` re-targets it). Afterwards a is put back as it was, and b
    stopped (put back when it was already running)."""
    with_bots = replace_settings(local_pbx.settings, {"bot": {"hosts": list(bot_hosts)}})
    bot_port = int(bot_hosts[0].rsplit(":", 1)[1])
    plain = {n: LocalPbx(local_pbx.settings, local_pbx.cache_dir, instance=n) for n in ("", "b")}
    before = {n: instance.status() for n, instance in plain.items()}
    infos = [
        LocalPbx(with_bots, local_pbx.cache_dir, instance=n).start(audiosocket_port=bot_port)
        for n in ("", "b")
    ]
    yield infos[0], infos[1]
    for name, instance in plain.items():
        info = before[name]
        if info is None:
            instance.stop()
        else:
            instance.start(audiosocket_port=info.audiosocket_port)


def controller_env(base: dict[str, str], info: PbxInfo, name: str, agi_port: int) -> dict[str, str]:
    """`hotline ivr` for one Asterisk: its AMI login, the name its call-log rows carry, the port of the
    blocklist FastAGI its dialplan asks, a call-log spool of its own; callers overflow to the bots only when
    no member of the queue is free to take them (whatever the hour: no peak or off-hours rule); call-backs
    ring the emulated citizen at any hour, every half second."""
    return base | {
        "HOTLINE_AMI_HOST": info.ami_host,
        "HOTLINE_AMI_PORT": str(info.ami_port),
        "HOTLINE_AMI_USERNAME": info.ami_username,
        "HOTLINE_AMI_SECRET": info.ami_secret,
        "HOTLINE_AMI_CREDENTIALS_USERNAME": info.credentials_username,
        "HOTLINE_AMI_CREDENTIALS_SECRET": info.credentials_secret,
        "HOTLINE_CALLCONTROL_PBX": name,
        "HOTLINE_BLOCKLIST_AGI_PORT": str(agi_port),
        "HOTLINE_CALLLOG_SPOOL_PATH": str(Path(base["HOTLINE_DATA_DIR"]) / f"spool-{name}.jsonl"),
        "HOTLINE_OVERFLOW_OFF_HOURS_TO_BOT": "false",
        "HOTLINE_OVERFLOW_MAX_ACTUAL_WAIT_S": "0",
        "HOTLINE_OVERFLOW_MAX_ESTIMATED_WAIT_S": "86400",
        "HOTLINE_OVERFLOW_MAX_CALLERS_PER_AGENT": "1000",
        "HOTLINE_CALLBACK_CHANNEL_TEMPLATE": "Local/{number}@test-citizen/n",
        "HOTLINE_CALLBACK_ALLOWED_START": "00:00:00",
        "HOTLINE_CALLBACK_ALLOWED_END": "23:59:59",
        "HOTLINE_CALLBACK_TICK_S": "0.5",
    }


async def call_12345(ami: Manager, caller: str) -> None:
    """An emulated caller into the hotline that presses 0 (a person) and stays in the queue; Asterisk gives
    its channels their Uniqueids (prefixed by the system name of a named instance)."""
    reply = await ami.send_action(
        {
            "Action": "Originate",
            "Channel": "Local/s@test-caller/n",
            "Context": "hotline-inbound",
            "Exten": "12345",
            "Priority": 1,
            "Async": "true",
            "CallerID": caller,
            "Variable": "TEST_DTMF=0,TEST_WAIT=120",
        },
        as_list=False,
    )
    assert reply.success, dict(reply)


@contextlib.asynccontextmanager
async def ringing_member(ami: Manager) -> AsyncIterator[None]:
    """The unanswered member in the hotline queue of this Asterisk, taken out again on exit."""
    for action in (
        {"Action": "Setvar", "Variable": f"TEST_CITIZEN_{UNANSWERED}", "Value": "noanswer"},
        {"Action": "QueueAdd", "Queue": "hotline", "Interface": MEMBER},
    ):
        reply = await ami.send_action(action, as_list=False)
        assert reply.success, dict(reply)
    try:
        yield
    finally:
        await ami.send_action(
            {"Action": "QueueRemove", "Queue": "hotline", "Interface": MEMBER}, as_list=False
        )


async def pause_member(ami: Manager, paused: bool) -> None:
    """Pause (or resume) the one member of this Asterisk's queue: paused, nobody can take a caller."""
    reply = await ami.send_action(
        {
            "Action": "QueuePause",
            "Queue": "hotline",
            "Interface": MEMBER,
            "Paused": str(paused).lower(),
        },
        as_list=False,
    )
    assert reply.success, dict(reply)


async def global_variable(ami: Manager, name: str) -> str:
    reply = await ami.send_action({"Action": "Getvar", "Variable": name}, as_list=False)
    return str(reply.get("Value", ""))


async def bot_call_of(events: AmiEvents, caller: str) -> str:
    """The AudioSocket id of ``caller``'s visit to the bot (the dialplan's UserEvent HotlineBot)."""
    event = await events.wait_for(
        lambda e: e.get("UserEvent") == "HotlineBot" and e.get("CallerIdNum") == caller, WAIT_S
    )
    return str(event.get("Uuid"))


async def bot_serving(bots: Sequence[Service], bot_call: str) -> Service:
    """The bot whose log shows that it took the call ``bot_call``."""
    started = f"AudioSocket call {bot_call} started"
    waits = {asyncio.create_task(bot.wait_for(started, WAIT_S)): bot for bot in bots}
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    first = done.pop()
    first.result()
    return waits[first]


async def bot_end_of(events: AmiEvents, bot_call: str) -> tuple[str, str]:
    """How the dialplan saw the bot call ``bot_call`` end (UserEvent HotlineBotEnd): status and host."""
    end = await events.wait_for(
        lambda e: e.get("UserEvent") == "HotlineBotEnd" and e.get("Uuid") == bot_call, WAIT_S
    )
    return str(end.get("Status")), str(end.get("Host") or "")


async def frames_spoken(bot: Service, bot_call: str) -> int:
    """How many audio frames ``bot`` sent the caller of ``bot_call``, once that call has ended."""
    ended = f"AudioSocket call {bot_call} ended"
    await bot.wait_for(ended, WAIT_S)
    line = next(line for line in bot.lines if ended in line)
    found = re.search(r"out (\d+)", line)
    assert found, line
    return int(found.group(1))


@contextlib.asynccontextmanager
async def leader_cockpit(browser: Chromium, port: int) -> AsyncIterator[Page]:
    """The leader logged in through the login form of the console worker at ``port``, on the cockpit."""
    context = await browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = await context.new_page()
        base = URL(f"http://127.0.0.1:{port}")
        await page.goto(str(base / "login"))
        await page.fill("#username", LEADER)
        await page.fill("#password", password_of(LEADER))
        await page.click("#login-submit")
        await page.wait_for_url(str(base / ""))
        await page.goto(str(base / "cockpit"))
        await expect(page.locator("#panel-queue")).to_have_attribute("data-state", "ready")
        yield page
    finally:
        await context.close()


async def hang_up_callers(ami: Manager, callers: list[str]) -> None:
    """Hang up every channel of ``callers`` still up on this Asterisk."""
    channels = await ami.send_action({"Action": "CoreShowChannels"})
    for channel in channels if isinstance(channels, list) else [channels]:
        if channel.get("CallerIDNum") in callers:
            await ami.send_action(
                {"Action": "Hangup", "Channel": channel.get("Channel")}, as_list=False
            )


class Worker:
    """A console worker process, addressed as the console tests' :class:`Browser` addresses its server."""

    def __init__(self, port: int) -> None:
        self.base = URL(f"http://127.0.0.1:{port}")

    def make_url(self, path: str) -> URL:
        return self.base.join(URL(path))


async def logged_in_socket(port: int) -> tuple[Browser, aiohttp.ClientWebSocketResponse]:
    """The leader logged in on the console worker at ``port`` (it binds its socket right after its start-up),
    with its /ws subscribed to the live queue and every ticket's state changes."""
    browser = Browser(Worker(port))  # type: ignore[arg-type]
    async with asyncio.timeout(30):
        while True:
            try:
                response = await browser.login(LEADER)
                break
            except aiohttp.ClientConnectorError:
                await asyncio.sleep(0.1)  # not listening yet: nothing to wait on but the port
    assert response.status == 303, await response.text()
    ws = await browser.http.ws_connect(browser.url("/ws"))
    assert (await ws.receive_json(timeout=10))["type"] == "hello"
    await ws.send_json({"type": "subscribe", "topics": ["queue", "tickets:all"]})
    return browser, ws


async def queue_event(
    ws: aiohttp.ClientWebSocketResponse, waiting: set[str], timeout_s: float = 30
) -> dict[str, Any]:
    """The first live-queue snapshot on ``ws`` whose waiting callers (masked numbers) are ``waiting``."""
    async with asyncio.timeout(timeout_s):
        while True:
            message = await ws.receive_json()
            if message.get("type") == "event" and message.get("topic") == "queue":
                shown = {c["caller"] for c in message["data"]["waiting"]}
                if shown == waiting:
                    return dict(message["data"])


async def ticket_change(
    ws: aiohttp.ClientWebSocketResponse, ticket_no: str, state: str, timeout_s: float = 30
) -> None:
    """Until ``ws`` hears that ticket ``ticket_no`` went to ``state`` (hub topic ``tickets:all``)."""
    async with asyncio.timeout(timeout_s):
        while True:
            message = await ws.receive_json()
            if message.get("type") == "event" and message.get("topic") == "tickets:all":
                if (message["data"]["ticket_no"], message["data"]["state"]) == (ticket_no, state):
                    return


async def call_of(sessionmaker: async_sessionmaker[AsyncSession], caller: str) -> CallRecord:
    """The call of ``caller`` in the shared call log, once its controller has written it."""
    async with asyncio.timeout(10):
        while True:
            async with sessionmaker() as session:
                query = select(CallRecord).where(CallRecord.caller_number == caller)
                row = await session.scalar(query)
            if row is not None:
                return row
            await asyncio.sleep(0.2)  # another process writes it: the database is what we can watch


async def attempts_of(
    sessionmaker: async_sessionmaker[AsyncSession], ticket_no: str
) -> list[CallbackAttempt]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(CallbackAttempt).where(CallbackAttempt.ticket_no == ticket_no)
        )
        return list(rows.all())


async def until_called_back(
    sessionmaker: async_sessionmaker[AsyncSession], ticket_no: str, timeout_s: float = 40
) -> str:
    """The ticket's state once its call-back result is recorded (read from the shared database)."""
    async with asyncio.timeout(timeout_s):
        while True:
            async with sessionmaker() as session:
                ticket = await get_ticket(session, ticket_no, repeat_links=False)
            if ticket.state != "verified":
                return str(ticket.state)
            await asyncio.sleep(0.2)  # another process writes it: the database is what we can watch


@contextlib.asynccontextmanager
async def running(service: Service) -> AsyncIterator[Service]:
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


def masked(caller: str) -> str:
    return mask_phone(caller, Role.LEADER)


async def overflow_from_each_pbx(
    bots: Sequence[Service], pbxs: Sequence[tuple[Manager, AmiEvents, str]]
) -> None:
    """On each Asterisk in turn the queue loses its one free member: its waiting caller goes to a bot, which
    takes the call."""
    for bot in bots:
        await bot.wait_for(BOT_READY, timeout_s=120)
    for ami, events, caller in pbxs:
        await pause_member(ami, True)
        await bot_serving(bots, await bot_call_of(events, caller))
        await hang_up_callers(ami, [caller])


async def overflow_after_bot_1_stopped(
    bots: Sequence[Service],
    host_2: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    pbx: tuple[Manager, AmiEvents],
    ws: Any,
    caller: str,
) -> None:
    """Bot 1 stops; a caller waits in the queue of ``pbx``, which then loses its free member: bot 2 takes the
    call, speaks to the caller (frames sent) and ends the call itself (the dialplan's HotlineBotEnd names it,
    SUCCESS)."""
    ami, events = pbx
    assert await bots[0].stop() == 0, "bot 1 did not stop cleanly on SIGTERM"
    async with sessionmaker() as session:
        assert set(await read_loads(session)) == {host_2}  # bot 1 withdrew its load report
    await pause_member(ami, False)
    await call_12345(ami, caller)
    await queue_event(ws, {masked(caller)})
    await pause_member(ami, True)
    bot_call = await bot_call_of(events, caller)
    assert await bot_serving(bots[1:], bot_call) is bots[1]
    assert await bot_end_of(events, bot_call) == ("SUCCESS", host_2)
    assert await frames_spoken(bots[1], bot_call) > 0
    assert bots[0].count(bot_call) == 0
    await hang_up_callers(ami, [caller])
    await pause_member(ami, False)


async def remove_member(ami: Manager, interface: str) -> None:
    await ami.send_action(
        {"Action": "QueueRemove", "Queue": "hotline", "Interface": interface}, as_list=False
    )


async def agent_status_reaches_pbx(port: int, events: AmiEvents) -> None:
    """The agent logs in on the console worker at ``port`` and sets 示闲, then 示忙（培训）: the controller of
    the worker's PBX adds them to its queue unpaused (QueueMemberAdded), then pauses them with the reason."""
    browser = Browser(Worker(port))  # type: ignore[arg-type]
    try:
        assert (await browser.login(AGENT)).status == 303
        interface = f"PJSIP/{AGENT}"
        for body in ({"state": "ready"}, {"state": "paused", "reason": "培训"}):
            response = await browser.write("POST", "/api/v1/console/workspace/state", body)
            assert response.status == 200, await response.text()
            assert (await response.json())["interface"] == interface
        added = await events.wait_for(
            lambda e: e.get("Event") == "QueueMemberAdded" and e.get("Interface") == interface,
            WAIT_S,
        )
        assert (added.get("Queue"), added.get("Paused")) == ("hotline", "0")
        paused = await events.wait_for(
            lambda e: (
                e.get("Event") == "QueueMemberPause"
                and e.get("Interface") == interface
                and e.get("Paused") == "1"
            ),
            WAIT_S,
        )
        assert paused.get("PausedReason") == "培训"
    finally:
        await browser.close()


def jobs_run(service: Service, upto: int | None = None) -> Counter[str]:
    """How often each run-once job (:class:`hotline.leadership.RunOnce`) started in ``service`` (in its first
    ``upto`` log lines)."""
    return Counter(m.group(1) for line in service.lines[:upto] if (m := JOB_RUNNING.search(line)))


def assert_no_job_ran_twice(
    stayed: Sequence[Service], stopped: Service, serving: Mapping[str, int]
) -> dict[str, set[str]]:
    """Each run-once job started at most once per process and in at most one of the processes that stayed up
    (only a job of the ``stopped`` one may have been taken over by another), counted in each one's first
    ``serving[name]`` log lines (up to the shut-down: a worker still up rightly takes a job over from one that
    stopped before it); job → the processes it ran in."""
    ran = {s.name: jobs_run(s, serving.get(s.name)) for s in (*stayed, stopped)}
    where: dict[str, set[str]] = {}
    for job in set().union(*ran.values()):
        counts = {name: c[job] for name, c in ran.items() if c[job]}
        assert max(counts.values()) == 1, f"{job} started twice in one process: {counts}"
        assert sum(n for name, n in counts.items() if name != stopped.name) <= 1, (
            f"{job} ran in two processes at once: {counts}"
        )
        where[job] = set(counts)
    return where


async def test_two_asterisks_controllers_bots_and_console_workers_on_one_postgresql(
    settings: Settings,
    local_pbx: LocalPbx,
    bots: list[Service],
    centre_pbxs: tuple[PbxInfo, PbxInfo],
    centre_engine: AsyncEngine,
    centre_env: dict[str, str],
    bot_hosts: tuple[str, str],
    chromium: Chromium,  # noqa: F811 (the browser tests' fixture)
) -> None:
    pbx_a, pbx_b = centre_pbxs
    sessionmaker = make_sessionmaker(centre_engine)
    async with sessionmaker() as db:
        for username, role, name in ((LEADER, Role.LEADER, "领导"), (AGENT, Role.AGENT, "坐席")):
            await Accounts(settings.console.model_copy(update=FAST_ARGON2)).create_user(
                db,
                UserCreate(
                    username=username, role=role, display_name=name, password=password_of(username)
                ),
                Origin("test"),
                datetime.now(UTC),
            )
    agi_b = settings.blocklist.agi_port + settings.pbx.instance_port_offset
    ivr_a = Service(
        "ivr-a", ["ivr"], controller_env(centre_env, pbx_a, "a", settings.blocklist.agi_port)
    )
    ivr_b = Service("ivr-b", ["ivr"], controller_env(centre_env, pbx_b, "b", agi_b))
    ports = _free_port(), _free_port()
    consoles = [
        Service(f"console-{n}", ["console", "--host", "127.0.0.1", "--port", str(p)], env)
        for n, p, env in zip(
            "ab", ports, (centre_env, centre_env | {"HOTLINE_CALLCONTROL_PBX": "a"}), strict=True
        )
    ]
    first_b, second_b, into_a, to_bot_2 = callers = [new_number() for _ in range(4)]
    async with contextlib.AsyncExitStack() as stack:
        ami_a, ami_b = await ami_connect(pbx_a), await ami_connect(pbx_b)
        events_a, events_b = AmiEvents(ami_a), AmiEvents(ami_b)
        stack.callback(ami_a.close)
        stack.callback(ami_b.close)
        stack.push_async_callback(hang_up_callers, ami_a, callers)
        stack.push_async_callback(hang_up_callers, ami_b, callers)
        for ami in (ami_a, ami_b):
            assert await global_variable(ami, "BOT_SERVICE") == "&".join(bot_hosts)
            await stack.enter_async_context(ringing_member(ami))
        for console in consoles:
            await stack.enter_async_context(running(console))
        await stack.enter_async_context(running(ivr_a))
        for job in (SURVEY_JOB, MISSED_JOB):  # a started first: the call-back schedulers run there
            await ivr_a.wait_for(job)
        await stack.enter_async_context(running(ivr_b))
        await ivr_b.wait_for("resync #1")
        for console in consoles:
            await console.wait_for("live events: listening on PostgreSQL")
        browser_a, ws_a = await logged_in_socket(ports[0])
        stack.push_async_callback(browser_a.close)
        browser_b, ws_b = await logged_in_socket(ports[1])
        stack.push_async_callback(browser_b.close)
        cockpit = await stack.enter_async_context(leader_cockpit(chromium, ports[0]))

        # a call into Asterisk b is seen on console worker A (a client's /ws, the leader's cockpit in Chromium);
        # one into a on worker B
        await call_12345(ami_b, first_b)
        await queue_event(ws_a, {masked(first_b)})
        await expect(cockpit.locator("#panel-queue")).to_contain_text(masked(first_b))
        ARTIFACTS.mkdir(exist_ok=True)
        await cockpit.screenshot(path=str(ARTIFACTS / "city-centre-cockpit.png"), full_page=True)
        await call_12345(ami_a, into_a)
        await queue_event(ws_b, {masked(into_a)})
        logged_b, logged_a = (
            await call_of(sessionmaker, first_b),
            await call_of(sessionmaker, into_a),
        )
        assert (logged_b.pbx, logged_a.pbx) == ("b", "a")
        assert logged_b.uniqueid.startswith("hotline-b-") and not logged_a.uniqueid.startswith(
            "hotline"
        )
        assert ivr_b.count(SURVEY_JOB) == 0  # one scheduler at a time

        # callers overflow from a and from b to the bots; bot 1 stops: bot 2 serves the next one
        await overflow_from_each_pbx(bots, [(ami_a, events_a, into_a), (ami_b, events_b, first_b)])
        await overflow_after_bot_1_stopped(
            bots, bot_hosts[1], sessionmaker, (ami_b, events_b), ws_a, to_bot_2
        )

        # an agent on console worker B: 示闲 logs them into Asterisk a's queue, 示忙 pauses them there
        stack.push_async_callback(remove_member, ami_a, f"PJSIP/{AGENT}")
        await agent_status_reaches_pbx(ports[1], events_a)

        # controller a stops: b serves the next call into b, and takes the call-backs over
        assert await ivr_a.stop() == 0
        await call_12345(ami_b, second_b)
        await queue_event(ws_a, {masked(second_b)})
        assert (await call_of(sessionmaker, second_b)).pbx == "b"
        for job in (SURVEY_JOB, MISSED_JOB):
            await ivr_b.wait_for(job, timeout_s=20)
        citizen = new_number()
        await ami_b.send_action(
            {"Action": "Setvar", "Variable": f"TEST_CITIZEN_{citizen}", "Value": "1"}, as_list=False
        )
        ticket_no = await verified_ticket(sessionmaker, citizen, datetime.now(UTC))
        assert await until_called_back(sessionmaker, ticket_no) == "closed"  # 1 满意 → 办结
        await ticket_change(ws_a, ticket_no, "closed")  # closed in ivr-b, seen on worker A
        [attempt] = await attempts_of(sessionmaker, ticket_no)
        assert attempt.result == "satisfied"
        assert ivr_a.count(SURVEY_JOB) == 1 and ivr_b.count(SURVEY_JOB) == 1
        serving = {s.name: len(s.lines) for s in (ivr_b, *consoles)}  # the log up to the shut-down
    for service in (ivr_b, *consoles, bots[1]):
        assert await service.stop() == 0, f"{service.name} did not stop cleanly on SIGTERM"
    where = assert_no_job_ran_twice([ivr_b, *consoles], stopped=ivr_a, serving=serving)
    for job in ("callbacks-survey", "callbacks-missed"):  # a's, then b's once a stopped
        assert where[job] == {"ivr-a", "ivr-b"}, (job, where)
    for pbx, ivr in (("a", ivr_a), ("b", ivr_b)):  # each controller sweeps its own messages
        sweeps = [w for job, w in where.items() if job.startswith(f"message-sweep:{pbx}:")]
        assert sweeps == [{ivr.name}], (pbx, where)
    for job in ("warnings", "public-pruning"):  # one console worker of the two
        assert len(where[job]) == 1 and where[job] <= {c.name for c in consoles}, (job, where)
