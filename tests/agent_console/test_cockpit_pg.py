"""The cockpit's panels shared by several console workers on PostgreSQL (``agent_console.cockpit_cache_pg``):
two :class:`Cockpit` on one database stand for two workers. One warms (the job lock ``cockpit-warmer``), both
show what is stored; the other takes over when the warmer's connection dies. A stale value is served at once
while recomputed; keys name the day; with the database away the last value is served. On SQLite each process
keeps its own caches (``test_cockpit.py``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, timedelta

import pytest
from aiohttp import web
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agent_console.cockpit_cache_pg import SharedPanels
from agent_console.cockpit_panels import (
    ALL_PERIODS,
    PANELS,
    Cockpit,
    Compute,
    Job,
    PanelKey,
    PanelSource,
    TodayOut,
)
from agent_console.geo import layout_from_settings
from agent_console.models import CockpitCacheEntry
from config import Settings
from hotline.db import make_engine, make_sessionmaker
from hotline.leadership import RunOnce
from hotline.wiring import cockpit_cache
from tests.agent_console.harness import console_settings, start_console, stop_console
from tests.agent_console.seed_cockpit import AGENT, NOW, draft, move_console_to, seed_cockpit
from tests.pg_support import Dialer, kill_connections
from tickets.services import create_ticket

PG_ONLY = pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
DAY = NOW.date()


def shared(settings: Settings, **cockpit: float) -> Settings:
    """Every read goes to the table (no read-through), long TTLs unless given."""
    cfg = {"live_ttl_s": 60, "cache_ttl_s": 60, "shared_read_s": 0, "warm_up": True} | cockpit
    return settings.model_copy(update={"cockpit": settings.cockpit.model_copy(update=cfg)})


def worker(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], dialer: Dialer
) -> Cockpit:
    """One console worker's cockpit at NOW, its warmer under the job lock on ``dialer``'s connections."""
    panels = SharedPanels(
        sessionmaker, settings.cockpit, RunOnce(dialer, retry_s=0.05, check_s=0.5).run
    )
    source = PanelSource(sessionmaker, settings, layout_from_settings(settings))
    return Cockpit(source, lambda: NOW, cache=panels)


@asynccontextmanager
async def warming(cockpit: Cockpit) -> AsyncIterator[None]:
    """The worker running (its aiohttp cleanup context)."""
    async with asynccontextmanager(cockpit.keep_warm)(web.Application()):
        yield


async def expire_all(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE cockpit_cache SET expires_at = now() - interval '1 second'")
        )


async def new_ticket_today(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as db:
        await create_ticket(
            db,
            draft("东岗街道路灯不亮", "13900001111", kind="求助"),
            AGENT,
            now=NOW,
            settings=settings,
        )


@PG_ONLY
async def test_two_workers_show_the_stored_figures_one_warms_and_the_other_takes_over(
    settings: Settings, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await seed_cockpit(sessionmaker)
    cfg = shared(settings)
    dial_a, dial_b = Dialer(engine, "cockpit-a"), Dialer(engine, "cockpit-b")
    a, b = worker(cfg, sessionmaker, dial_a), worker(cfg, sessionmaker, dial_b)
    async with warming(a):
        async with asyncio.timeout(30):
            await a.next_round()
        async with warming(b):
            for _ in range(
                3
            ):  # B's warmer tried three times while A held the lock, and computed nothing
                await asyncio.wait_for(dial_b.made.get(), 10)
            assert b.rounds == 0
            # a new open ticket: today's stored figures are not yet recomputed
            await new_ticket_today(settings, sessionmaker)
            for name, panel in PANELS.items():
                for period in panel.periods:
                    assert await b.get(name, NOW, period) == await a.get(name, NOW, period)
            assert (await b.get("today", NOW)).open == 4  # A's stored figures, not B's own (5)

            await expire_all(engine)
            dial_a.hold()  # A, back before B, could take the lock again: let B try first
            assert await kill_connections(engine, "cockpit-a") == 1
            async with asyncio.timeout(30):
                await b.next_round()  # B took over: it recomputed every expired panel
            assert (await a.get("today", NOW)).open == 5
            assert (await b.get("today", NOW)).open == 5
            dial_a.release()


PANEL_ROUTES = [
    *(
        f"/api/v1/cockpit/{p}"
        for p in ("today", "calls", "trend", "hot-topics", "frequent-problems")
    ),
    "/api/v1/cockpit/warnings",
    *(
        f"/api/v1/cockpit/{p}?period={period}"
        for p in ("categories", "departments", "heatmap")
        for period in ALL_PERIODS
    ),
]


@PG_ONLY
async def test_the_api_answers_the_same_figures_from_the_shared_cache(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Worker A computes and stores each panel, worker B rebuilds it from the table and answers exactly what A
    answered; both answer the figures of a console with its own cache."""
    await seed_cockpit(sessionmaker)
    cfg = console_settings(shared(settings, warm_up=False))
    consoles = [
        await start_console(cfg, sessionmaker),
        *[
            await start_console(
                cfg,
                sessionmaker,
                seed=False,  # the accounts are in the database already
                cockpit_cache=SharedPanels(sessionmaker, cfg.cockpit, unused),
            )
            for _ in "ab"
        ],
    ]
    try:
        for console in consoles:
            move_console_to(console, NOW)
        own, a, b = [await c.logged_in("leader") for c in consoles]
        for path in PANEL_ROUTES:
            answers = []
            for leader in (own, a, b):  # A computes and stores, B reads what A stored
                resp = await leader.request("GET", path)
                assert resp.status == 200, await resp.text()
                answers.append(await resp.json())
            own_figures, a_figures = (
                {k: v for k, v in x.items() if k != "span"} for x in answers[:2]
            )
            assert a_figures == own_figures, (
                path
            )  # the spans of "the last 7 days" end at each one's now
            assert answers[2] == answers[1], path
    finally:
        for console in consoles:
            await stop_console(console)


def today(received: int, day: date = DAY) -> TodayOut:
    return TodayOut(
        day=day, received=received, instant=0, closed=0, instant_rate=None, open=0, overdue=0
    )


def returns(value: TodayOut) -> Compute:
    async def compute() -> TodayOut:
        return value

    return compute


async def never() -> TodayOut:
    raise AssertionError("computed although a value is stored")


async def unused(_name: str, _job: Job) -> None:
    raise AssertionError("no warmer in this test")


@PG_ONLY
async def test_a_stale_value_is_served_at_once_while_one_worker_recomputes_it(
    settings: Settings, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    cfg = shared(settings).cockpit
    a, b = SharedPanels(sessionmaker, cfg, unused), SharedPanels(sessionmaker, cfg, unused)
    key = PanelKey("today", None, DAY)
    assert await a.get(key, returns(today(1))) == today(1)  # missing: computed by the asker, stored
    assert await b.get(key, never) == today(1)  # and read by the other worker
    await expire_all(engine)
    gate, computing = asyncio.Event(), asyncio.Event()

    async def slow() -> TodayOut:
        computing.set()
        await gate.wait()
        return today(2)

    async with asyncio.timeout(10):
        assert await a.get(key, slow) == today(1)  # stale: served at once
        await computing.wait()  # and recomputed behind, after A claimed it
        assert await b.get(key, never) == today(1)  # B serves it too, without recomputing
        gate.set()
        await asyncio.gather(*a._refreshing.values())
    assert await b.get(key, never) == today(2)
    assert await a.get(key, never) == today(2)
    await a.close()
    await b.close()


@PG_ONLY
async def test_a_new_day_is_computed_afresh_and_past_days_are_pruned(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    cache = SharedPanels(sessionmaker, shared(settings).cockpit, unused)
    yesterday, tomorrow = DAY - timedelta(days=1), DAY + timedelta(days=1)
    await cache.get(PanelKey("today", None, yesterday), returns(today(7, yesterday)))
    await cache.get(PanelKey("trend", None, DAY), returns(today(1)))
    assert await cache.get(PanelKey("today", None, DAY), returns(today(1))) == today(1)
    async with sessionmaker() as db:
        assert set(await db.scalars(select(CockpitCacheEntry.day))) == {DAY}
    other = SharedPanels(
        sessionmaker, shared(settings).cockpit, unused
    )  # another worker, a day later
    await other.get(PanelKey("today", None, tomorrow), returns(today(0, tomorrow)))
    async with sessionmaker() as db:
        assert list(await db.scalars(select(CockpitCacheEntry.key))) == ["today::2025-03-20"]


@PG_ONLY
async def test_with_the_database_away_the_last_value_is_served_and_logged_once(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = [0.0]
    cache = SharedPanels(
        sessionmaker, shared(settings, shared_read_s=1).cockpit, unused, monotonic=lambda: clock[0]
    )
    key = PanelKey("today", None, DAY)
    assert await cache.get(key, returns(today(1))) == today(1)
    away = make_engine("postgresql+asyncpg://hotline@127.0.0.1:9/hotline")  # nothing listens there
    cache.sessionmaker = make_sessionmaker(away)
    try:
        with caplog.at_level(logging.INFO, logger="agent_console.cockpit_cache_pg"):
            for _ in range(3):
                clock[0] += 5  # past the read-through: each ask tries the table
                assert await cache.get(key, never) == today(1)
            # a panel this worker never had: computed and served, not stored
            assert await cache.get(PanelKey("warnings", None, DAY), returns(today(3))) == today(3)
            cache.sessionmaker = sessionmaker
            clock[0] += 5
            assert await cache.get(key, never) == today(1)
    finally:
        await away.dispose()
    said = [r.getMessage() for r in caplog.records]
    assert sum("暂不可用" in m for m in said) == 1 and sum("已恢复" in m for m in said) == 1


def test_the_console_shares_its_cockpit_cache_on_postgresql_only(settings: Settings) -> None:
    sessionmaker = make_sessionmaker(make_engine("sqlite+aiosqlite://"))
    pg = settings.database.model_copy(update={"url": "postgresql+asyncpg://hotline@db/hotline"})
    assert isinstance(
        cockpit_cache(settings.model_copy(update={"database": pg}), sessionmaker), SharedPanels
    )
    assert cockpit_cache(settings, sessionmaker) is None
