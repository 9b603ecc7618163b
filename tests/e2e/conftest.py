"""Fixtures driving the real local Asterisk: the session `pbx`, a logged-in AMI `ami`, and event waiting.

The PBX lives in the cache folder settings.pbx.cache_dir (default var/pbx under the project, or
HOTLINE_PBX_CACHE_DIR), so the sid root is built once and shared by every run. It is stopped at the end
only when this session started it (another process may be using an instance that was already running).
One suite at a time uses it: every test starts on an empty queue without statistics (`known_queue`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from panoramisk import Manager
from panoramisk.message import Message
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from hotline.db import create_schema, make_engine, make_sessionmaker
from ivr.pbx import LocalPbx, PbxInfo
from ivr.pbx.testcall import ami_connect
from tests.conftest import ROOT, missing


@pytest.fixture(scope="session")
def local_pbx(settings: Settings) -> LocalPbx:
    """The harness object for the shared cache folder (relative paths count from the project folder)."""
    if os.geteuid() != 0:
        missing("the local PBX needs root (debootstrap, chroot, mount)")
    for tool in ("debootstrap", "unshare", "espeak-ng", "sox"):
        if shutil.which(tool) is None:
            missing(f"the local PBX needs {tool} (make system)")
    cache = Path(settings.pbx.cache_dir)
    return LocalPbx(settings, cache if cache.is_absolute() else ROOT / cache)


@pytest.fixture(scope="session")
def pbx(local_pbx: LocalPbx) -> Iterator[PbxInfo]:
    """A started local PBX (contract C). Tests that restart it update this object in place."""
    was_running = local_pbx.status() is not None
    info = local_pbx.start()
    info.clear_messages()  # every test's service starts on a fresh database
    yield info
    if not was_running:
        local_pbx.stop()


@pytest.fixture(scope="session")
def carrier(pbx: PbxInfo, local_pbx: LocalPbx) -> tuple[str, str]:
    """The simulated carrier trunk's SIP account (user, password); a PBX started before it existed is restarted."""
    if not pbx.carrier_password:
        vars(pbx).update(vars(local_pbx.restart()))
    return pbx.carrier_username, pbx.carrier_password


class AmiEvents:
    """Every AMI event since creation, and a way to await the first one matching a predicate."""

    def __init__(self, manager: Manager) -> None:
        self.events: list[Message] = []
        self._arrived = asyncio.Event()
        manager.register_event("*", self._on_event)

    def _on_event(self, _manager: Manager, event: Message) -> None:
        self.events.append(event)
        self._arrived.set()
        self._arrived = asyncio.Event()

    async def wait_for(self, match: Callable[[Message], bool], timeout_s: float = 30) -> Message:
        """The first event (already received or still to come) for which *match* is true."""

        async def first() -> Message:
            seen = 0
            while True:
                for event in self.events[seen:]:
                    if match(event):
                        return event
                seen = len(self.events)
                await self._arrived.wait()

        return await asyncio.wait_for(first(), timeout_s)


@pytest.fixture
async def ami(pbx: PbxInfo) -> AsyncIterator[Manager]:
    """A panoramisk Manager logged in to the local PBX with its generated credentials."""
    manager = await ami_connect(pbx)
    yield manager
    manager.close()


@pytest.fixture
def ami_events(ami: Manager) -> AmiEvents:
    return AmiEvents(ami)


QUEUE = "hotline"
CLEAN_STATISTICS = {
    "Calls": "0",
    "Completed": "0",
    "Abandoned": "0",
    "Holdtime": "0",
    "TalkTime": "0",
}


async def _queue_status(ami: Manager) -> list[Message]:
    """The queue's QueueParams (statistics), QueueMember and QueueEntry (waiting caller) records."""
    reply = await asyncio.wait_for(ami.send_action({"Action": "QueueStatus", "Queue": QUEUE}), 10)
    records = reply if isinstance(reply, list) else [reply]
    return [m for m in records if m.event in ("QueueParams", "QueueMember", "QueueEntry")]


def _left_queue(uniqueid: str) -> Callable[[Message], bool]:
    return lambda e: e.event == "QueueCallerLeave" and e.get("Uniqueid") == uniqueid


async def empty_queue(ami: Manager) -> None:
    """Bring the shared PBX's queue to the state every test starts from, then check it: no member, no waiting
    caller, no statistics.

    Earlier tests (or a controller) leave members, maybe callers, and always Asterisk's averages behind. The
    averages matter as much: a controller seeds its handle time with the queue's TalkTime at every resync, so
    one short agent call of an earlier test would make every estimated wait about a second (no overflow).
    """
    events = AmiEvents(
        ami
    )  # before the snapshot: a waiting caller's QueueCallerLeave cannot be missed
    before = await _queue_status(ami)
    for member in (m for m in before if m.event == "QueueMember"):
        await ami.send_action(
            {"Action": "QueueRemove", "Queue": QUEUE, "Interface": member.get("Location")},
            as_list=False,
        )
    waiting = [m for m in before if m.event == "QueueEntry"]
    for entry in waiting:  # (no member left: nobody can join any more)
        await ami.send_action({"Action": "Hangup", "Channel": entry.get("Channel")}, as_list=False)
    for entry in waiting:
        await events.wait_for(_left_queue(entry.get("Uniqueid")), 10)
    reset = await ami.send_action({"Action": "QueueReset", "Queue": QUEUE}, as_list=False)
    assert reset.success, dict(reset)
    after = await _queue_status(ami)
    assert [m.event for m in after] == ["QueueParams"], [dict(m) for m in after]
    assert {k: after[0].get(k) for k in CLEAN_STATISTICS} == CLEAN_STATISTICS, dict(after[0])


@pytest.fixture(autouse=True)
async def known_queue(pbx: PbxInfo, local_pbx: LocalPbx) -> None:
    """Every test here starts on an empty queue without statistics (:func:`empty_queue`), over an AMI session
    of its own that is closed before the test begins."""
    manager = await ami_connect(local_pbx.status() or pbx)  # a restarted PBX has a new secret
    try:
        await empty_queue(manager)
    finally:
        manager.close()


class RunningHotline(NamedTuple):
    """A `hotline run --no-pbx` service: console base URL, its environment (database URL…), its log."""

    base: str
    env: dict[str, str]
    log_path: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def hotline_run(
    pbx: PbxInfo, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[RunningHotline]:
    """`hotline run --no-pbx` beside the session's PBX (so the fixture keeps owning it), on a fresh SQLite;
    its log goes to test-artifacts/hotline-run-<test>.log."""
    port = _free_port()
    env = os.environ | {
        "HOTLINE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}",
        "HOTLINE_CONSOLE_PORT": str(port),
        "HOTLINE_ASR_AUDIOSOCKET_PORT": str(pbx.audiosocket_port),
        "HOTLINE_DATA_DIR": str(tmp_path),
        # short waits for the caller keep the suite quick; the flow is the same
        "HOTLINE_ASR_BOT_SILENCE_TIMEOUT_S": "2.5",
        "HOTLINE_ASR_BOT_DTMF_TIMEOUT_S": "3.0",
    }
    log_path = ROOT / "test-artifacts" / f"hotline-run-{request.node.name}.log"
    log_path.parent.mkdir(exist_ok=True)
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hotline.cli", "run", "--no-pbx", cwd=ROOT, env=env, stderr=log
        )
        try:
            async with asyncio.timeout(180):  # the service logs when everything listens
                while b"12345 hotline running" not in log_path.read_bytes():
                    assert proc.returncode is None, "hotline run exited before it was ready"
                    await asyncio.sleep(0.2)
            yield RunningHotline(f"http://127.0.0.1:{port}", env, log_path)
        finally:
            proc.terminate()
            async with asyncio.timeout(60):
                await proc.wait()
    assert proc.returncode == 0, "hotline run did not stop cleanly on SIGTERM"


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A fresh SQLite database for one test (the store of the controller, the bot or the message filer)."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'e2e.db'}")
    await create_schema(engine)
    yield make_sessionmaker(engine)
    await engine.dispose()
