"""The live-update hub across processes (PostgreSQL LISTEN/NOTIFY): two hubs on one database stand for two
console workers. An event published on one reaches the other's subscribers exactly once, also after the
listener's connection was killed and came back; the composition root picks the hub by the database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agent_console.hub import Event, Hub, Subscription
from agent_console.hub_pg import PostgresHub
from agent_console.models import LiveEvent
from config import Settings
from hotline.wiring import build_hub
from tests.pg_support import Dialer, kill_connections

PG_ONLY = pytest.mark.parametrize("engine", ["postgresql"], indirect=True)


def worker(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], name: str
) -> PostgresHub:
    return PostgresHub(sessionmaker, Dialer(engine, name), lambda: datetime.now(UTC), keep_s=60)


@pytest.fixture
async def workers(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[tuple[PostgresHub, PostgresHub]]:
    a, b = worker(engine, sessionmaker, "worker-a"), worker(engine, sessionmaker, "worker-b")
    for hub in (a, b):
        await hub.start()
    await asyncio.gather(a.listening.wait(), b.listening.wait())
    yield a, b
    for hub in (a, b):
        await hub.close()


def listener(hub: Hub, *topics: str) -> Subscription:
    sub = hub.subscribe()
    sub.topics.update(topics)
    return sub


async def received(sub: Subscription, count: int) -> list[Event | None]:
    return [await asyncio.wait_for(sub.next(), 10) for _ in range(count)]


def queued(sub: Subscription) -> list[Event | None]:
    return [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]


@PG_ONLY
async def test_an_event_published_on_one_worker_reaches_the_other_once(
    workers: tuple[PostgresHub, PostgresHub],
) -> None:
    a, b = workers
    on_a, on_b = listener(a, "queue", "screenpop:zhang3"), listener(b, "queue", "screenpop:zhang3")
    snapshot = {"waiting": 3, "callers": [{"number": "138****5678", "wait_s": 12}]}
    assert a.publish("queue", snapshot) == 1  # A's own subscriber at once
    assert a.publish("screenpop:zhang3", {"caller": "13812345678"}) == 1
    assert await received(on_b, 2) == [
        Event("queue", snapshot),
        Event("screenpop:zhang3", {"caller": "13812345678"}),
    ]
    b.publish("queue", {"waiting": 0})  # read by A after A's own rows: A must have skipped those
    assert await received(on_a, 3) == [
        Event("queue", snapshot),
        Event("screenpop:zhang3", {"caller": "13812345678"}),
        Event("queue", {"waiting": 0}),
    ]
    await a.flushed()
    a.publish("queue", {"waiting": 1})
    assert await received(on_b, 2) == [
        Event("queue", {"waiting": 0}),
        Event("queue", {"waiting": 1}),
    ]
    assert queued(on_a) == [Event("queue", {"waiting": 1})] and queued(on_b) == []


@PG_ONLY
async def test_after_its_listen_connection_was_killed_a_worker_gets_what_it_missed_once(
    engine: AsyncEngine, workers: tuple[PostgresHub, PostgresHub]
) -> None:
    a, b = workers
    on_b = listener(b, "queue")
    a.publish("queue", {"waiting": 1})
    assert await received(on_b, 1) == [Event("queue", {"waiting": 1})]
    dialer = b.connect
    assert isinstance(dialer, Dialer)
    dialer.hold()
    assert await kill_connections(engine, "worker-b") == 1
    await asyncio.wait_for(dialer.waiting.wait(), 10)  # B lost LISTEN and is reconnecting
    assert not b.listening.is_set()
    a.publish("queue", {"waiting": 2})
    a.publish("queue", {"waiting": 3})
    await a.flushed()  # stored and notified while B could not hear it
    dialer.release()
    assert await received(on_b, 2) == [
        Event("queue", {"waiting": 2}),
        Event("queue", {"waiting": 3}),
    ]
    await asyncio.wait_for(b.listening.wait(), 10)
    a.publish("queue", {"waiting": 4})  # and B hears live again, nothing twice
    assert await received(on_b, 1) == [Event("queue", {"waiting": 4})]
    assert queued(on_b) == []


@PG_ONLY
async def test_a_backlog_longer_than_a_browser_s_queue_is_caught_up_without_dropping_it(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    a = worker(engine, sessionmaker, "worker-a")
    b = PostgresHub(
        sessionmaker, Dialer(engine, "worker-b"), lambda: datetime.now(UTC), queue_size=4
    )
    for hub in (a, b):
        await hub.start()
    try:
        await asyncio.gather(a.listening.wait(), b.listening.wait())
        browser = listener(b, "queue")
        dialer = b.connect
        assert isinstance(dialer, Dialer)
        dialer.hold()
        assert await kill_connections(engine, "worker-b") == 1
        await asyncio.wait_for(dialer.waiting.wait(), 10)
        for n in range(40):  # ten times what the browser's queue holds
            a.publish("queue", {"waiting": n})
        await a.flushed()
        reader = asyncio.create_task(
            received(browser, 40)
        )  # the browser's socket, sending as it reads
        dialer.release()
        assert await reader == [Event("queue", {"waiting": n}) for n in range(40)]
        assert not browser.overflowed
    finally:
        for hub in (a, b):
            await hub.close()


async def test_a_wait_for_room_in_a_browser_s_queue_ends_when_it_takes_an_event_or_leaves() -> None:
    hub = Hub(queue_size=1)
    browser = listener(hub, "queue")
    hub.publish("queue", {"waiting": 1})
    waiting = asyncio.create_task(browser.room())
    await asyncio.sleep(0)  # the waiter runs up to its wait
    assert not waiting.done()
    assert await browser.next() == Event("queue", {"waiting": 1})
    await asyncio.wait_for(waiting, 1)
    hub.publish("queue", {"waiting": 2})
    leaving = asyncio.create_task(browser.room())
    await asyncio.sleep(0)
    assert not leaving.done()
    browser.close()
    await asyncio.wait_for(leaving, 1)


@PG_ONLY
async def test_old_events_are_pruned_and_a_bad_payload_fails_its_publisher(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    now = [datetime(2026, 12, 7, 9, 0, tzinfo=UTC)]
    hub = PostgresHub(sessionmaker, Dialer(engine, "pruner"), lambda: now[0], keep_s=60)
    with pytest.raises(TypeError):
        hub.publish("queue", {"at": now[0]})
    hub.publish("queue", {"waiting": 1})
    await hub.start()
    try:
        await hub.flushed()
        now[0] = datetime(2026, 12, 7, 9, 2, tzinfo=UTC)
        hub.publish("queue", {"waiting": 2})
        await hub.flushed()
        await hub.prune()
        async with sessionmaker() as session:
            kept = (await session.scalars(select(LiveEvent.payload))).all()
        assert kept == [{"waiting": 2}]
    finally:
        await hub.close()


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)
def test_the_hub_follows_the_database(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    url = engine.url.render_as_string(hide_password=False)
    chosen: Any = build_hub(
        settings.model_copy(update={"database": settings.database.model_copy(update={"url": url})}),
        sessionmaker,
    )
    assert type(chosen) is (Hub if engine.dialect.name == "sqlite" else PostgresHub)
    assert chosen.queue_size == settings.console.ws_queue_size


@PG_ONLY
async def test_closing_a_worker_stores_what_it_published_first(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    hub = worker(engine, sessionmaker, "closing")
    await hub.start()
    hub.publish("queue", {"waiting": 5})
    await hub.close()
    async with sessionmaker() as session:
        assert (await session.scalars(select(LiveEvent.payload))).all() == [{"waiting": 5}]


@PG_ONLY
async def test_a_worker_closes_even_when_an_event_wakes_it_at_that_moment(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Python 3.11's ``wait_for`` returned normally when the cancel came as the awaited wake-up did: the
    worker listened on and ``close`` never returned (a CI run's teardown hung on it)."""
    hub = worker(engine, sessionmaker, "closing-when-woken")
    await hub.start()
    await hub.listening.wait()  # from here on it waits to be woken
    hub._wake.set()  # what a notification does, in the same turn of the loop as the close
    try:
        async with asyncio.timeout(5):
            await hub.close()
    finally:
        for task in hub._tasks:  # what a hung close left running
            task.cancel()
