"""The blocklist of nuisance callers (恶意骚扰来电) on SQLite and PostgreSQL: add, lift, expiry, audit, refusals,
candidates; and its FastAGI server spoken to as Asterisk does."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from config.settings import BlocklistSettings
from ivr.blocklist import (
    AlreadyBlocked,
    AlreadyLifted,
    BlockNotFound,
    InvalidBlock,
    add_block,
    block_events,
    candidates,
    is_blocked,
    lift_block,
    list_blocks,
)
from ivr.blocklist_agi import BlocklistAgi
from ivr.models import BLOCK_REASON_MAX, BlockedCaller, BlockedCallerEvent, CallRecord
from tests.conftest import SQLITE_ONLY
from tickets.schemas import Actor, TicketDraft
from tickets.services import apply, create_ticket

NOW = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
NUMBER = "13812345678"


async def block(
    db: AsyncSession, phone: str = NUMBER, *, expires_at: datetime | None = None
) -> BlockedCaller:
    return await add_block(
        db,
        phone,
        "一天内无效来电 50 次",
        expires_at=expires_at,
        actor="zhang",
        role="admin",
        now=NOW,
    )


async def test_a_blocked_number_is_blocked_in_any_spelling_until_lifted(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as db:
        entry = await block(db, "+86 138-1234-5678")
        assert entry.phone == NUMBER and entry.created_by == "zhang" and entry.expires_at is None
        assert await is_blocked(db, "8613812345678", NOW)
        assert not await is_blocked(db, "13912345678", NOW)
        assert not await is_blocked(db, "", NOW)  # withheld: never blocked
        await lift_block(db, entry.id, actor="li", role="dispatcher", note="误加", now=NOW)
        assert not await is_blocked(db, NUMBER, NOW + timedelta(seconds=1))
        assert entry.lifted_by == "li"


async def test_an_expired_entry_no_longer_blocks_and_the_number_can_be_added_again(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    until = NOW + timedelta(days=7)
    async with sessionmaker() as db:
        first = await block(db, expires_at=until)
        assert await is_blocked(db, NUMBER, until - timedelta(seconds=1))
        assert not await is_blocked(db, NUMBER, until)
        assert [b.id for b in await list_blocks(db, now=until)] == []
        again = await add_block(
            db, NUMBER, "再次骚扰", expires_at=None, actor="zhang", role="admin", now=until
        )
        await db.refresh(first)
        assert first.lifted_at == until and first.lifted_by == "system"
        assert [b.id for b in await list_blocks(db, now=until)] == [again.id]
        assert [e.action for e in await block_events(db, first.id)] == ["add", "expire"]


async def test_every_change_writes_one_audit_event(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as db:
        entry = await block(db, expires_at=NOW + timedelta(days=1))
        await lift_block(db, entry.id, actor="li", role="leader", note="已核实", now=NOW)
        events = await block_events(db, entry.id)
    assert [(e.action, e.actor, e.role, e.note) for e in events] == [
        ("add", "zhang", "admin", "一天内无效来电 50 次"),
        ("lift", "li", "leader", "已核实"),
    ]
    assert events[0].payload == {"expires_at": (NOW + timedelta(days=1)).isoformat()}
    async with sessionmaker() as db:
        stored = await db.get(BlockedCallerEvent, events[0].id)
        assert stored is not None
        stored.note = "改写"
        with pytest.raises(RuntimeError, match="immutable"):
            await db.commit()


async def test_refusals_write_nothing(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as db:
        entry_id = (await block(db)).id
        with pytest.raises(AlreadyBlocked) as dup:
            await block(db, "138 1234 5678")
        assert dup.value.code == "blocklist.duplicate" and "已在黑名单" in dup.value.message
        await db.rollback()
        cases = [
            ("12345", "原因", None, "ticket.invalid_phone"),
            (NUMBER[:-1] + "9", "x" * (BLOCK_REASON_MAX + 1), None, "太长"),
            (NUMBER[:-1] + "9", "  ", None, "原因"),
            (NUMBER[:-1] + "9", "骚扰\n电话", None, "控制字符"),
            (NUMBER[:-1] + "9", "原因", NOW - timedelta(hours=1), "晚于现在"),
        ]
        for phone, reason, expires, words in cases:
            with pytest.raises(InvalidBlock) as bad:
                await add_block(
                    db, phone, reason, expires_at=expires, actor="z", role="admin", now=NOW
                )
            assert bad.value.code == "blocklist.invalid_input"
            assert words in bad.value.message or phone == "12345"
            await db.rollback()
        with pytest.raises(BlockNotFound):
            await lift_block(db, 999_999, actor="li", role="admin", now=NOW)
        await lift_block(db, entry_id, actor="li", role="admin", now=NOW)
        with pytest.raises(AlreadyLifted):
            await lift_block(db, entry_id, actor="li", role="admin", now=NOW)
        await db.rollback()
        assert await db.scalar(select(func.count(BlockedCaller.id))) == 1
        assert await db.scalar(select(func.count(BlockedCallerEvent.id))) == 2


def _call(n: int, number: str, at: datetime, outcome: str | None = "abandoned") -> CallRecord:
    return CallRecord(
        uniqueid=f"u-{number}-{n}",
        linkedid=f"u-{number}-{n}",
        caller_number=number,
        started_at=at,
        outcome=outcome,
        updated_at=at,
    )


async def test_candidates_are_frequent_callers_and_numbers_with_withdrawn_tickets(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    rule = BlocklistSettings(
        candidate_window_hours=24,
        candidate_min_calls=3,
        candidate_window_days=7,
        candidate_min_withdrawn=2,
    )
    recent, old = NOW - timedelta(hours=2), NOW - timedelta(hours=30)
    async with sessionmaker() as db:
        db.add_all([_call(i, "13900000001", recent) for i in range(3)])  # 3 calls: a candidate
        db.add_all([_call(i, "13900000002", recent) for i in range(2)])  # 2 calls: not
        db.add_all([_call(i, "13900000003", old) for i in range(5)])  # outside the window
        db.add_all([_call(i, "13900000004", recent, "callback") for i in range(5)])  # call-backs
        db.add_all([_call(i, "13900000005", recent) for i in range(4)])  # blocked already
        await db.commit()
        await block(db, "13900000005")
        actor = Actor("agent1", "agent")
        for _ in range(2):
            draft = TicketDraft(channel="phone", caller_phone="13900000006", content="无效来电")
            ticket = await create_ticket(db, draft, actor, now=recent, settings=settings)
            await apply(
                db,
                ticket.ticket_no,
                "withdraw",
                actor,
                expected_version=ticket.version,
                note="无效诉求",
                now=recent,
                settings=settings,
            )
        found = await candidates(db, rule, now=NOW)
    assert [(c.phone, c.calls, c.withdrawn) for c in found] == [
        ("13900000001", 3, 0),
        ("13900000006", 0, 2),
    ]


@SQLITE_ONLY
async def test_the_fastagi_server_answers_as_the_dialplan_expects(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as db:
        await block(db)
    server = BlocklistAgi(
        sessionmaker,
        BlocklistSettings(agi_port=free_port()),
        clock=lambda: NOW + timedelta(minutes=1),
    )
    await server.start()
    try:
        assert await _ask(server.settings.agi_port, "blocklist", "+8613812345678") == (
            "SET VARIABLE HOTLINE_BLOCKED 1"
        )
        assert (
            await _ask(server.settings.agi_port, "blocklist", "13912345678")
            == "SET VARIABLE HOTLINE_BLOCKED 0"
        )
        assert (
            await _ask(server.settings.agi_port, "other", NUMBER) == ""
        )  # unknown script: closed, nothing set
        _, writer = await asyncio.open_connection("127.0.0.1", server.settings.agi_port)
        writer.close()  # closed before its headers: the server goes on serving
        assert (
            await _ask(server.settings.agi_port, "blocklist", NUMBER)
            == "SET VARIABLE HOTLINE_BLOCKED 1"
        )
    finally:
        await server.stop()


@SQLITE_ONLY
async def test_a_failing_lookup_lets_the_call_through(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as db:
        await block(db)

    def broken_clock() -> datetime:
        raise OSError("database gone")

    server = BlocklistAgi(sessionmaker, BlocklistSettings(agi_port=free_port()), clock=broken_clock)
    await server.start()
    try:
        assert (
            await _ask(server.settings.agi_port, "blocklist", NUMBER)
            == "SET VARIABLE HOTLINE_BLOCKED 0"
        )
    finally:
        await server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _ask(port: int, script: str, number: str) -> str:
    """What Asterisk's AGI() sends to a FastAGI server, and the command it gets back (after answering 200)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    headers = {
        "agi_network": "yes",
        "agi_network_script": script,
        "agi_request": f"agi://127.0.0.1:{port}/{script}",
        "agi_channel": "Local/s@test-caller-00000001;1",
        "agi_callerid": number,
        "agi_arg_1": number,
    }
    writer.write("".join(f"{k}: {v}\n" for k, v in headers.items()).encode() + b"\n")
    await writer.drain()
    command = (await asyncio.wait_for(reader.readline(), 5)).decode().strip()
    if command:
        writer.write(b"200 result=1\n")
        await writer.drain()
    await asyncio.wait_for(reader.read(), 5)  # the server closes the connection
    writer.close()
    return command
