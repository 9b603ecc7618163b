"""The knowledge panel of a `hotline console` worker (no bot in its process): its own index, 503 until built,
rebuilt after the console's knowledge edits."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console.errors import Unavailable
from config import Settings
from hotline.console_knowledge import ConsoleKnowledge
from hotline.wiring import console_desk
from knowledge import services as kb
from tests.agent_console.harness import console_settings, start_console, stop_console
from tests.agent_console.tickets_support import json_of
from tests.asr.test_bot import NEW_ENTRY

QUERY = "/api/v1/console/knowledge?q=我的社保卡丢了怎么补办"


async def test_a_console_workers_knowledge_panel_answers_from_its_own_index(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    own = console_settings(settings)
    knowledge = ConsoleKnowledge(own, sessionmaker)
    with pytest.raises(Unavailable):
        knowledge.ask("社保卡丢了怎么补办")  # not built yet: 503
    console = await start_console(
        own,
        sessionmaker,
        desk=console_desk(own, None, knowledge.ask),
        on_knowledge_change=knowledge.refresh,
    )
    knowledge.start()
    try:
        await asyncio.wait_for(knowledge.ready.wait(), 60)
        agent = await console.logged_in("agent")
        assert (await json_of(agent, "GET", QUERY))["answer_id"] is None  # an empty knowledge base
        editor = await console.logged_in("admin")
        async with sessionmaker() as session:
            entry = await kb.create_entry(
                session,
                NEW_ENTRY,
                "编辑",
            )
        path = f"/api/v1/knowledge/entries/{entry.id}/publish"
        await json_of(
            editor, "POST", path, {"expected_version": entry.version}
        )  # on_knowledge_change
        found = await json_of(agent, "GET", QUERY)
        assert (found["answer_id"], found["answer"]) == (
            entry.id,
            "请携带身份证到社保服务大厅补办。",
        )
    finally:
        await knowledge.close()
        await stop_console(console)
