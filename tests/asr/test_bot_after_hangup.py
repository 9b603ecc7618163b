"""The bot's ticket for a caller who hung up is filed even when the database is slow to take it.

The AudioSocket server cancels a call's dialogue ``audiosocket_handler_grace_s`` after the caller left, while
SQLite may wait up to 30 s for a lock: the ticket write must outlive the dialogue. A real call over loopback
with the real dialogue, TTS and ticket services; the recogniser is scripted (what the caller said is given)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from asr.audiosocket_client import AudioSocketClient
from asr.bot import SpeechBot, build_bot
from config import Settings
from config.settings import replace_settings
from tests.asr.fakes import FakeRecogniser
from tickets.models import Ticket

pytestmark = pytest.mark.serial  # races a lock against the grace period: not beside other tests

WAIT = 10.0  # bound for what should happen promptly; far below SQLite's 30 s wait for a lock
SAID = "幸福小区门口的路灯坏了一个星期"
CALLER = "13800138000"


@dataclass
class ScriptedRecognizers:
    """An engine whose every call hears ``SAID`` in its first frame."""

    name: str = "scripted"

    def __call__(self, sample_rate: int = 8000) -> FakeRecogniser:
        return FakeRecogniser(SAID)

    def close(self) -> None: ...


@pytest.fixture
def write_lock(database_file: Path) -> Iterator[sqlite3.Connection]:
    """Another connection to the database, to hold its write lock (the first statement takes it)."""
    conn = sqlite3.connect(database_file, isolation_level=None)
    yield conn
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    conn.close()


@dataclass
class Call:
    bot: SpeechBot
    marks: set[str] = field(default_factory=set)
    marked: asyncio.Event = field(default_factory=asyncio.Event)

    def mark(self, _call_id: str, name: str, _at: float) -> None:
        self.marks.add(name)
        self.marked.set()

    async def until(self, name: str) -> None:
        async with asyncio.timeout(WAIT * 3):  # TTS of the first prompts included
            while name not in self.marks:
                self.marked.clear()
                await self.marked.wait()


@pytest.fixture
async def start_bot(
    settings: Settings, db: async_sessionmaker[AsyncSession], tmp_path: Path
) -> AsyncIterator[Call]:
    bot_settings = replace_settings(
        settings,
        {
            "asr": {"audiosocket": {"handler_grace_s": 0.2}, "bot": {"kb_poll_s": 3600}},
            "tts": {"cache_dir": str(tmp_path / "tts"), "speed_wpm": 300},
        },
    )

    async def caller_for(_call_id: str) -> str | None:
        return CALLER

    call: Call | None = None
    bot = await build_bot(
        bot_settings,
        db,
        recognizers=ScriptedRecognizers(),
        caller_for=caller_for,
        port=0,
        trace=lambda c, name, at: call.mark(c, name, at) if call else None,
    )
    call = Call(bot)
    await bot.start()
    yield call
    await bot.close()


async def hang_up_when_asked_for_the_matter(call: Call) -> AudioSocketClient:
    """The caller says what is wrong, and hangs up when the bot (knowing no answer) asks for details."""
    client = AudioSocketClient("127.0.0.1", call.bot.port)
    await client.connect()
    await client.send_silence(0.02, realtime=False)  # the scripted recogniser hears SAID in it
    await call.until("ask_matter")  # the knowledge miss is recorded by now; next comes the ticket
    return client


async def filed(db: async_sessionmaker[AsyncSession], call_id: str) -> list[Ticket]:
    async with db() as session:
        return list(
            (await session.execute(select(Ticket).where(Ticket.call_id == call_id))).scalars()
        )


async def test_ticket_of_a_caller_who_hung_up_is_filed_after_a_lock_longer_than_the_grace(
    start_bot: Call,
    db: async_sessionmaker[AsyncSession],
    write_lock: sqlite3.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="asr.bot")
    client = await hang_up_when_asked_for_the_matter(start_bot)
    write_lock.execute("BEGIN IMMEDIATE")  # another writer holds the database
    await client.close(abort=True)
    async with asyncio.timeout(WAIT):
        await start_bot.bot.server.wait_idle()  # the dialogue was cancelled after the grace ...
    assert start_bot.bot.desk.writes.pending == 1  # ... its ticket write was not
    write_lock.execute("COMMIT")
    async with asyncio.timeout(WAIT):
        await start_bot.bot.desk.writes.drain()

    [ticket] = await filed(db, str(client.call_id))
    assert (ticket.content, ticket.caller_phone, ticket.channel) == (SAID, CALLER, "bot")
    assert (
        f"bot call {client.call_id}: ticket {ticket.ticket_no} filed after the call ended"
        in caplog.text
    )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_ticket_write_failing_after_the_call_ended_is_logged_as_an_error_with_the_call_id(
    start_bot: Call,
    db: async_sessionmaker[AsyncSession],
    write_lock: sqlite3.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await hang_up_when_asked_for_the_matter(start_bot)
    write_lock.execute("BEGIN IMMEDIATE")
    write_lock.execute("DROP TABLE tickets")  # the write waits for the lock, then finds no table
    await client.close(abort=True)
    async with asyncio.timeout(WAIT):
        await start_bot.bot.server.wait_idle()
    write_lock.execute("COMMIT")
    async with asyncio.timeout(WAIT):
        await start_bot.bot.desk.writes.drain()

    errors = [
        r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name == "asr.bot"
    ]
    assert errors == [
        f"bot call {client.call_id}: the ticket could not be filed after the call ended "
        "(OperationalError)"
    ]
    assert SAID not in caplog.text and CALLER not in caplog.text
