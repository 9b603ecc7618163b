"""`hotline db upgrade` builds exactly the schema the models declare, on SQLite and PostgreSQL."""

import asyncio
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hotline.db import all_metadata, make_engine
from hotline.migrate import current_revision, head_revision, upgrade, upgrade_engine


async def test_upgrade_from_empty_matches_the_models(engine: AsyncEngine) -> None:
    async with (
        engine.begin() as conn
    ):  # the fixture created tables with create_all: start from empty
        for md in reversed(all_metadata()):
            await conn.run_sync(md.drop_all)
        await conn.execute(text("DROP TABLE alembic_version"))
    await upgrade_engine(engine)

    def diff(sync_conn):  # type: ignore[no-untyped-def]
        ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return compare_metadata(ctx, all_metadata())

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []


def test_cli_upgrade_is_idempotent_and_reports_head(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'h.db'}"
    assert upgrade(url) == 0
    assert upgrade(url) == 0
    assert current_revision(url) == head_revision()


async def test_upgrade_engine_on_fresh_file_creates_tables(tmp_path: Path) -> None:
    eng = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        await upgrade_engine(eng)
        async with eng.connect() as conn:
            names = await conn.run_sync(lambda c: c.dialect.get_table_names(c))
        assert {"tickets", "ticket_events", "kb_entries", "console_users"} <= set(names)
    finally:
        await eng.dispose()


def test_missed_questions_stored_before_masking_are_masked_by_the_upgrade(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    assert upgrade(url, "0006") == 0

    async def stored(sql: str, **params: object) -> list[str]:
        engine = make_engine(url)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(text(sql), params)
                return [r[0] for r in result] if result.returns_rows else []
        finally:
            await engine.dispose()

    asyncio.run(
        stored(
            "INSERT INTO kb_misses (question_text, reason, at) VALUES (:q, 'unanswered', '2026-12-01')",
            q="我的电话13912345678，问一下社保卡",
        )
    )
    assert upgrade(url) == 0
    assert asyncio.run(stored("SELECT question_text FROM kb_misses")) == [
        "我的电话139****5678，问一下社保卡"
    ]


def test_leader_windows_scheduled_before_pbx_names_stay_on_the_default_pbx(tmp_path: Path) -> None:
    """0020: a window of a single-PBX install keeps working after the upgrade (its controller serves PBX "")."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'l.db'}"
    assert upgrade(url, "0019") == 0

    async def stored(sql: str) -> list[tuple[object, ...]]:
        engine = make_engine(url)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(text(sql))
                return [tuple(r) for r in result] if result.returns_rows else []
        finally:
            await engine.dispose()

    asyncio.run(
        stored(
            'INSERT INTO ivr_leader_shift (day, start, "end", leader_name, account, title, department,'
            " interface, created_at) VALUES ('2026-12-21', '09:00:00', '11:00:00', '李明', '', '区长', '',"
            " 'PJSIP/6009', '2026-12-20 01:00:00+00:00')"
        )
    )
    assert upgrade(url) == 0
    assert asyncio.run(stored("SELECT interface, pbx FROM ivr_leader_shift")) == [
        ("PJSIP/6009", "")
    ]
