"""Jobs that run once: two runners on one PostgreSQL never run a job at the same time, and when the holder's
connection is killed its job stops and the other runner takes over; on SQLite the job simply runs."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from config import Settings
from hotline.db import make_engine, make_sessionmaker
from hotline.leadership import RunOnce, lock_key
from hotline.wiring import (
    Telephony,
    callback_schedulers,
    console_jobs,
    message_filer,
    telephony_jobs,
)
from ivr.controller import build_controller
from tests.pg_support import Dialer, kill_connections

PG_ONLY = pytest.mark.parametrize("engine", ["postgresql"], indirect=True)


class Job:
    """A job that runs until cancelled, telling when it started and stopped."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()

    async def __call__(self) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.stopped.set()


@PG_ONLY
async def test_only_one_runner_runs_the_job_and_the_other_takes_over_when_its_connection_dies(
    engine: AsyncEngine,
) -> None:
    tries_a, tries_b = Dialer(engine, "runner-a"), Dialer(engine, "runner-b")
    job_a, job_b = Job(), Job()
    a = asyncio.create_task(RunOnce(tries_a, retry_s=0.05, check_s=0.5).run("warnings", job_a))
    await asyncio.wait_for(job_a.started.wait(), 10)
    b = asyncio.create_task(RunOnce(tries_b, retry_s=0.05, check_s=0.5).run("warnings", job_b))
    try:
        for _ in range(3):  # B tried three times while A held the lock
            await asyncio.wait_for(tries_b.made.get(), 10)
        assert not job_b.started.is_set()
        tries_a.hold()  # A, back before B, could take the lock again: let B try first
        assert await kill_connections(engine, "runner-a") == 1
        await asyncio.wait_for(job_a.stopped.wait(), 10)  # lost the lock: stopped
        await asyncio.wait_for(job_b.started.wait(), 10)  # and B took over
        job_a.started.clear()
        while not tries_a.made.empty():
            tries_a.made.get_nowait()
        tries_a.release()
        for _ in range(3):  # A tries again, and stays out while B holds the lock
            await asyncio.wait_for(tries_a.made.get(), 10)
        assert not job_a.started.is_set() and not job_b.stopped.is_set()
    finally:
        for task in (a, b):
            task.cancel()
        await asyncio.gather(a, b, return_exceptions=True)


@PG_ONLY
async def test_a_job_that_ends_gives_its_lock_back(engine: AsyncEngine) -> None:
    runs: list[str] = []

    async def once() -> None:
        runs.append("ran")

    runner = RunOnce(Dialer(engine, "runner-c"))
    await runner.run("public-pruning", once)
    await runner.run("public-pruning", once)  # the lock was freed: it runs again
    assert runs == ["ran", "ran"]


async def test_on_sqlite_the_job_simply_runs() -> None:
    runs: list[str] = []

    async def once() -> None:
        runs.append("ran")

    await RunOnce(None).run("warnings", once)
    assert runs == ["ran"]
    assert lock_key("warnings") == lock_key("warnings") != lock_key("callbacks-回访")
    assert -(2**63) <= lock_key("warnings") < 2**63


def test_every_job_that_must_run_once_has_its_lock(settings: Settings) -> None:
    """What `hotline run` (both lists), `hotline ivr` and `hotline console` start under :class:`RunOnce`."""
    sessionmaker = make_sessionmaker(make_engine("sqlite+aiosqlite://"))
    controller = build_controller(settings, sessionmaker)
    filer = message_filer(controller, sessionmaker, settings)
    telephony = Telephony(
        controller, callback_schedulers(settings, sessionmaker, controller), messages=filer
    )
    names = set(telephony_jobs(telephony)) | set(
        console_jobs(settings, sessionmaker, asyncio.Event())
    )
    assert names == {
        "callbacks-survey",
        "callbacks-missed",
        f"message-sweep::{filer.folder.resolve()}",  # the default PBX ("")
        "warnings",
        "public-pruning",
    }


def test_the_controllers_of_two_pbxes_sweep_their_message_folders_at_one_path_each(
    settings: Settings,
) -> None:
    """Two machines, one controller each, their PBXs' messages folders mounted at one path: one lock per PBX."""
    sessionmaker = make_sessionmaker(make_engine("sqlite+aiosqlite://"))
    folder = settings.message.model_copy(update={"folder": "/srv/asterisk/messages"})

    def sweep_lock(pbx: str) -> str:
        named = settings.model_copy(
            update={
                "callcontrol": settings.callcontrol.model_copy(update={"pbx": pbx}),
                "message": folder,
            }
        )
        controller = build_controller(named, sessionmaker)
        telephony = Telephony(
            controller, (), messages=message_filer(controller, sessionmaker, named)
        )
        [name] = [n for n in telephony_jobs(telephony) if n.startswith("message-sweep")]
        return name

    a, b = sweep_lock("a"), sweep_lock("b")
    assert a != b and lock_key(a) != lock_key(b)
    assert "a" in a.split(":") and "b" in b.split(":")
    assert sweep_lock("a") == a  # the same PBX and folder: the same lock, one sweeper
