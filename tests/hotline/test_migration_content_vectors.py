"""Migration 0010: tickets get a content vector column; tickets stored before keep theirs empty (NULL)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hotline.db import all_metadata
from hotline.migrate import upgrade_engine

OLD_TICKET = """
INSERT INTO tickets (ticket_no, channel, caller_phone, kind, content, content_tokens, urgency,
    deadline_tier, state, callback_attempts, redispatch_count, return_count, extension_count, is_repeat,
    created_at, updated_at, version, rolled_up)
VALUES ('12345-20261201-00001', 'phone', '13900000001', '投诉', '垃圾没人收', '垃圾 没人 收', 'normal',
    'standard', 'accepted', 0, 0, 0, 0, false, '2026-12-01 10:00:00+08:00', '2026-12-01 10:00:00+08:00', 1,
    false)
"""


async def test_upgrade_adds_an_empty_content_vector_to_stored_tickets(engine: AsyncEngine) -> None:
    async with (
        engine.begin() as conn
    ):  # the fixture created tables with create_all: start from empty
        for md in reversed(all_metadata()):
            await conn.run_sync(md.drop_all)
        await conn.execute(text("DROP TABLE alembic_version"))
    await upgrade_engine(engine, "0009")
    async with engine.begin() as conn:
        await conn.execute(text(OLD_TICKET))
    await upgrade_engine(engine, "0010")
    async with engine.begin() as conn:
        assert (await conn.execute(text("SELECT content_vector FROM tickets"))).scalar_one() is None
        await conn.execute(
            text("UPDATE tickets SET content_vector = :v"), {"v": b"\x00\x00\x80\x3f" * 512}
        )
        stored = (await conn.execute(text("SELECT content_vector FROM tickets"))).scalar_one()
    assert bytes(stored) == b"\x00\x00\x80\x3f" * 512
