"""Recorded AMI streams replayed through the state into the call log, as the controller writes it."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivr.calllog import upsert_calls
from ivr.state import HotlineState
from tests.ivr.amitools import Replayer, attach, fixture_bytes, new_client

WRITTEN_AT = datetime(2025, 3, 4, 2, 0, tzinfo=UTC)


async def replay_into_log(
    sessionmaker: async_sessionmaker[AsyncSession], name: str, state: HotlineState
) -> None:
    """Replay ``tests/ivr/fixtures/<name>`` through ``state`` and upsert every update's calls, in order."""
    replayer = Replayer(client := new_client(), state)
    protocol, _ = attach(client)
    protocol.data_received(fixture_bytes(name))
    async with sessionmaker() as session:
        for update in replayer.updates:
            await upsert_calls(session, update.calls, now=WRITTEN_AT)
