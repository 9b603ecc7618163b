"""The knowledge panel (话务员答复参考) of a `hotline console` worker, which has no bot in its process to lend it
an index as `hotline run` does: its own index, the bot's (:class:`asr.bot.HotlineDesk`). It is built in the
background at the start (the panel answers 503 until then), rebuilt after a knowledge edit made in this worker
(``create_app``'s ``on_knowledge_change``) and, for one made elsewhere, every ``asr.bot.kb_poll_s``. The
sentence-embedding model is the one the worker's dispatch suggestions load anyway (one per process); a rebuild
embeds only the phrasings that changed."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console.errors import Unavailable
from asr.bot import HotlineDesk
from config import Settings
from knowledge.retrieval import Answer

log = logging.getLogger(__name__)


class ConsoleKnowledge:
    """A console worker's knowledge index: ``ask`` for the desk, ``refresh`` for the console's edits."""

    def __init__(self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.desk: HotlineDesk | None = None
        self.ready = asyncio.Event()  # set once the first index is built
        self._task: asyncio.Task[None] | None = None

    def ask(self, text: str) -> Answer:
        """The best entry for ``text`` (in a thread: :attr:`DeskServices.knowledge_ask`); 503 while loading."""
        if self.desk is None:
            raise Unavailable("知识库正在加载，请稍后再试")
        return self.desk.index.ask(text)

    async def refresh(self) -> None:
        """Rebuild the index if the knowledge base changed (nothing to do before the first one is built)."""
        if self.desk is not None:
            await self.desk.refresh()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="console-knowledge")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def run(self) -> None:
        """Build the index, then keep it fresh (until cancelled); a failure is logged and tried again at the
        next poll, the current index kept."""
        while True:
            try:
                if self.desk is None:
                    self.desk = await HotlineDesk.load(self.settings, self.sessionmaker)
                    self.ready.set()
                else:
                    await self.desk.refresh()
            except Exception:
                log.exception("console knowledge index not (re)built; trying again later")
            await asyncio.sleep(self.settings.asr.bot.kb_poll_s)
