"""The call log through a database outage: records wait in the spool, in order, and are written once it is back —
also by the next controller when this one stops first. Calls come from recorded AMI streams."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from hotline.wiring import Telephony, subscribe
from ivr.calllog import CallLogEntry, CallLogSpool, CallRows, CloseUnseen, call_rows
from ivr.controller import HotlineController
from ivr.models import CallRecord
from ivr.state import HotlineState
from tests.ivr.amitools import RECEIVED, Replayer, attach, fixture_bytes, new_client

STREAMS = ("bot_then_agent.ami", "leader_and_abandon.ami")
COMPARED = (
    "linkedid",
    "caller_number",
    "dialled_number",
    "started_at",
    "answered_at",
    "ended_at",
    "queue_wait_s",
    "outcome",
    "answered_by",
    "agent_interface",
    "agent_name",
    "bot_uuid",
    "recording",
    "menu",
)


class FakeDatabaseOutage:
    """The test database behind a switch: while ``down`` no session can be had, as during a failover
    (OperationalError). ``refused`` is set at the first refusal."""

    def __init__(self, real: async_sessionmaker[AsyncSession]) -> None:
        self.real = real
        self.down = False
        self.refused = asyncio.Event()

    def __call__(self) -> AsyncSession:
        if self.down:
            self.refused.set()
            raise OperationalError(
                "INSERT INTO ivr_call", None, ConnectionRefusedError("database away")
            )
        return self.real()


def spool_settings(settings: Settings, **changes: Any) -> Settings:
    calllog = settings.calllog.model_copy(
        update={"retry_min_s": 0.01, "retry_max_s": 0.05, **changes}
    )
    return settings.model_copy(update={"calllog": calllog})


def controller_on(settings: Settings, database: FakeDatabaseOutage) -> HotlineController:
    controller = HotlineController(
        settings,
        cast(async_sessionmaker[AsyncSession], database),
        new_client(),
        is_working_day=lambda _d: True,
        clock=lambda: RECEIVED,
    )
    subscribe(Telephony(controller))
    return controller


def expected_rows() -> dict[str, dict[str, Any]]:
    """What the call log must hold after the streams: the last state of every call."""
    client, state = new_client(), HotlineState("hotline")
    replayer = Replayer(client, state)
    protocol, _ = attach(client)
    for name in STREAMS:
        protocol.data_received(fixture_bytes(name))
    last = {c.uniqueid: c for u in replayer.updates for c in u.calls}
    return {
        row["uniqueid"]: {k: row[k] for k in COMPARED} for row in call_rows(last.values(), RECEIVED)
    }


async def logged_rows(sessionmaker: async_sessionmaker[AsyncSession]) -> list[CallRecord]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(CallRecord).order_by(CallRecord.id))).all())


async def test_records_wait_out_a_database_outage_and_are_written_once(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    database = FakeDatabaseOutage(sessionmaker)
    database.down = True
    controller = controller_on(spool_settings(settings), database)
    await controller.start()
    protocol, _ = attach(controller.ami)
    protocol.data_received(fixture_bytes(STREAMS[0]))
    await database.refused.wait()  # the first write failed: it and all behind it are in the spool
    protocol.data_received(
        fixture_bytes(STREAMS[1])
    )  # events while the database is away go to the spool too
    assert controller.spool.path.exists() and controller.status()["calllog"]["spooled_bytes"] > 0
    assert await logged_rows(sessionmaker) == []

    database.down = False
    await asyncio.wait_for(controller.flush(), 10)
    rows = await logged_rows(sessionmaker)
    assert {r.uniqueid: {k: getattr(r, k) for k in COMPARED} for r in rows} == expected_rows()
    assert len(rows) == len({r.uniqueid for r in rows})  # each call once
    assert not controller.spool.path.exists() and controller.status()["calllog"]["dropped"] == 0
    await controller.stop()


async def test_a_restarted_controller_writes_the_spool_it_finds_first(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    database = FakeDatabaseOutage(sessionmaker)
    database.down = True
    first = controller_on(spool_settings(settings), database)
    await first.start()
    attach(first.ami)[0].data_received(b"".join(fixture_bytes(name) for name in STREAMS))
    await database.refused.wait()
    await asyncio.wait_for(first.stop(), 5)  # stops at once although the database is away
    assert first.spool.path.stat().st_size > 0

    database.down = False
    second = controller_on(spool_settings(settings), database)
    await second.start()
    await asyncio.wait_for(second.flush(), 10)
    rows = await logged_rows(sessionmaker)
    assert {r.uniqueid: {k: getattr(r, k) for k in COMPARED} for r in rows} == expected_rows()
    assert not second.spool.path.exists()
    await second.stop()


def entry(n: int) -> CallRows:
    at = RECEIVED + timedelta(seconds=n)
    return CallRows(
        ({"uniqueid": f"1741053600.{n}", "started_at": at, "ended_at": None, "outcome": "agent"},)
    )


async def test_spool_replays_in_order_and_keeps_what_was_not_written(tmp_path: Path) -> None:
    spool = CallLogSpool(tmp_path / "spool.jsonl", 1 << 20)
    close = CloseUnseen(frozenset({"1741053600.1"}), RECEIVED, "b")  # of PBX b, read back as b's
    spool.append([entry(1), close, entry(2), entry(3)])
    written: list[CallLogEntry] = []

    async def fail_at_third(e: CallLogEntry) -> None:
        if len(written) == 2:
            raise OperationalError("INSERT", None, ConnectionRefusedError("database away"))
        written.append(e)

    with pytest.raises(OperationalError):
        await spool.replay(fail_at_third)
    assert written == [entry(1), close]
    spool.append([entry(4)])  # arrives while the database is away: behind the others

    async def write(e: CallLogEntry) -> None:
        written.append(e)

    restarted = CallLogSpool(
        tmp_path / "spool.jsonl", 1 << 20
    )  # the next process finds what is left
    await restarted.replay(write)
    assert written == [entry(1), close, entry(2), entry(3), entry(4)]  # in order, each once
    assert not restarted.path.exists() and restarted.size == 0


def test_full_spool_drops_counts_and_logs_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    one = entry(1)
    spool = CallLogSpool(tmp_path / "spool.jsonl", 4096)
    with caplog.at_level(logging.ERROR, logger="ivr.calllog"):
        spool.append([one] * 100)
    assert 0 < spool.size <= 4096 and spool.dropped > 0
    assert f"{spool.dropped} record(s) dropped" in caplog.text
    assert len(spool.path.read_bytes().splitlines()) == 100 - spool.dropped


def test_a_line_torn_by_a_crash_is_dropped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "spool.jsonl"
    CallLogSpool(path, 1 << 20).append([entry(1)])
    with path.open("ab") as f:
        f.write(b'{"kind":"rows","rows":[{"uniq')  # the process died mid-write
    spool = CallLogSpool(path, 1 << 20)
    assert (
        spool.dropped == 1
        and path.read_bytes().endswith(b"\n")
        and spool.size == path.stat().st_size
    )
