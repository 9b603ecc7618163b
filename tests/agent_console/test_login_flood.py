"""Login floods: attempts counted in the database before the password is checked, limits per account and
address, per address and per account that an attacker cannot turn against the owner, and password checks on a
few threads of their own while no database connection is held."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Literal

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agent_console.auth import Origin
from agent_console.models import LoginFailure
from config import Settings
from tests.agent_console.harness import (
    FAST_ARGON2,
    Console,
    console_settings,
    start_console,
    stop_console,
)


class GatedHasher(PasswordHasher):
    """The tests' cheap Argon2, whose password checks wait at a gate; it notes which threads ran them and how
    many ran at once."""

    def __init__(self) -> None:
        super().__init__(
            time_cost=FAST_ARGON2["argon2_time_cost"],
            memory_cost=FAST_ARGON2["argon2_memory_kib"],
            parallelism=FAST_ARGON2["argon2_parallelism"],
        )
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.running = self.most = 0
        self.threads: set[str] = set()
        self.started: asyncio.Queue[str] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.threads.add(threading.current_thread().name)
        self.loop.call_soon_threadsafe(self.started.put_nowait, threading.current_thread().name)
        try:
            assert self.gate.wait(10), "the test never opened the gate"
            return super().verify(hash, password)
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture
async def gated(console: Console) -> AsyncIterator[GatedHasher]:
    hasher = GatedHasher()
    console.accounts.hasher = hasher
    yield hasher
    hasher.gate.set()


async def attempts_of(sessionmaker: async_sessionmaker[AsyncSession], username: str) -> int:
    async with sessionmaker() as db:
        stmt = (
            select(func.count()).select_from(LoginFailure).where(LoginFailure.username == username)
        )
        return (await db.execute(stmt)).scalar_one()


async def test_an_address_guessing_cannot_lock_the_owner_out(console: Console) -> None:
    attacker = console.browser("127.0.0.7")
    statuses = [(await attacker.login("agent", f"guess-{n}")).status for n in range(40)]
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
    assert (await attacker.login("agent")).status == 429  # the attacker's address stays locked out
    assert (
        await console.browser().login("agent")
    ).status == 303  # the owner, from their own address


async def test_the_account_ceiling_refuses_only_addresses_that_failed(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    c = await start_console(
        console_settings(settings, login_attempts_per_account_per_minute=3), sessionmaker
    )
    try:
        guessers = [c.browser(f"127.0.0.{n}") for n in (11, 12, 13)]
        for b in guessers:
            assert (await b.login("agent", "wrong-password")).status == 401
        assert (
            await guessers[0].login("agent")
        ).status == 429  # failed here once: past the account's ceiling
        assert (
            await c.browser("127.0.0.14").login("agent", "typo-password")
        ).status == 401  # may still try
        assert (await c.browser("127.0.0.15").login("agent")).status == 303
        c.clock.advance(61)
        assert (await guessers[0].login("agent")).status == 303
    finally:
        await stop_console(c)


async def test_console_workers_sharing_the_database_count_the_same_attempts(
    console: Console, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    other_worker = await start_console(console_settings(settings), sessionmaker, seed=False)
    try:
        for n in range(5):
            assert (await console.browser().login("handler", f"guess-{n}")).status == 401
        assert (await other_worker.browser().login("handler")).status == 429
    finally:
        await stop_console(other_worker)


async def gated_console(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], *, workers: int, queue: int
) -> tuple[Console, GatedHasher]:
    c = await start_console(
        console_settings(settings, login_hash_workers=workers, login_hash_queue=queue), sessionmaker
    )
    c.accounts.hasher = hasher = GatedHasher()
    return c, hasher


async def test_logins_use_only_their_hashing_threads_and_beyond_the_queue_are_refused_at_once(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    c, hasher = await gated_console(settings, sessionmaker, workers=2, queue=1)
    try:
        logins = [
            asyncio.create_task(c.browser().login(name))
            for name in ("agent", "dispatcher", "handler", "leader")
        ]
        await hasher.started.get()
        await hasher.started.get()
        done, _ = await asyncio.wait(logins, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        assert [t.result().status for t in done] == [
            503
        ]  # two checked, one waiting, the fourth refused at once
        hasher.gate.set()
        assert sorted([(await t).status for t in logins]) == [303, 303, 303, 503]
        assert hasher.most == 2 and all(
            name.startswith("console-argon2") for name in hasher.threads
        )
    finally:
        hasher.gate.set()
        await stop_console(c)


async def test_no_database_connection_is_held_while_passwords_are_checked(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    c, hasher = await gated_console(settings, sessionmaker, workers=2, queue=0)
    try:
        logins = [asyncio.create_task(c.browser().login(name)) for name in ("agent", "dispatcher")]
        await hasher.started.get()
        await hasher.started.get()
        assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        hasher.gate.set()
        assert [(await t).status for t in logins] == [303, 303]
    finally:
        hasher.gate.set()
        await stop_console(c)


async def test_attempt_counts_even_when_its_password_check_is_cancelled(
    console: Console, gated: GatedHasher
) -> None:
    async def log_in() -> Any:
        async with console.sessionmaker() as db:
            return await console.accounts.login(
                db, "agent", "a-guess-password", Origin(ip="10.0.0.9"), datetime.now(UTC)
            )

    login = asyncio.create_task(log_in())
    await gated.started.get()
    login.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await login
    assert await attempts_of(console.sessionmaker, "agent") == 1
    gated.gate.set()
    assert (await console.browser().login("agent")).status == 303
    assert (
        await attempts_of(console.sessionmaker, "agent") == 1
    )  # a login that succeeds is not kept


async def test_behind_a_trusted_proxy_logins_are_throttled_per_forwarded_client(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Every login arrives from the proxy: the attacker's guesses must not lock out a colleague behind it."""
    c = await start_console(
        console_settings(settings, trusted_proxies=("127.0.0.1",)), sessionmaker
    )
    try:
        attacker = c.browser(forwarded_for="203.0.113.9")
        assert [(await attacker.login("agent", f"guess-{n}")).status for n in range(6)] == [
            401
        ] * 5 + [429]
        assert (await c.browser(forwarded_for="198.51.100.4").login("agent")).status == 303
        spoofed = c.browser(
            "127.0.0.9", forwarded_for="198.51.100.4"
        )  # not a trusted proxy: header ignored
        assert [(await spoofed.login("agent", f"guess-{n}")).status for n in range(6)][-1] == 429
        assert (await c.browser(forwarded_for="198.51.100.4").login("agent")).status == 303
    finally:
        await stop_console(c)
