"""The `engine` fixture keeps its promise: a fresh database on each backend, with every table, at the head."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from hotline.db import all_metadata
from hotline.migrate import head_revision


async def test_engine_is_an_empty_database_with_every_table_at_head(
    engine: AsyncEngine, request: pytest.FixtureRequest
) -> None:
    assert engine.dialect.name == request.node.callspec.params["engine"]
    tables = [table for md in all_metadata() for table in md.sorted_tables]
    async with engine.connect() as conn:
        present = set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
        assert {t.name for t in tables} <= present
        for table in tables:
            assert (await conn.execute(select(table).limit(1))).first() is None, table.name
        stamped = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
    assert stamped == head_revision()
