"""What the ticket screens need from outside the console: :class:`DeskServices`, given whole to ``create_app``.

The composition root builds them with the telephony and the knowledge lookup of its process::

    desk = DeskServices(call_control=<adapter of the AMI controller>,   # QueuePause, Originate of call-backs
                        knowledge_ask=knowledge_index.ask, suggester=suggester)
    app = create_app(settings, sessionmaker, desk=desk)

Given none, :func:`setup_ticket_services` (a setup of the tickets feature) puts unwired ones on the app, with
the dispatch suggester loaded from the settings: the telephony buttons answer 503 and the knowledge panel says
it is not available. Either way it adds the hub's ``screenpop`` topic rule.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from agent_console import keys
from agent_console.calls import SCREENPOP_RULE, CallControl, UnwiredCallControl, default_interface
from agent_console.errors import Unavailable
from config import Settings
from knowledge.retrieval import Answer
from tickets.dispatch_suggest import DispatchSuggester, Suggestion

KnowledgeAsk = Callable[[str], Answer]  # e.g. knowledge.retrieval.KnowledgeIndex.ask


@dataclass(frozen=True)
class DeskServices:
    """The telephony buttons, the knowledge panel and dispatch suggestions of the ticket screens."""

    call_control: CallControl = field(default_factory=UnwiredCallControl)
    knowledge_ask: KnowledgeAsk | None = None
    suggester: DispatchSuggester | None = None
    agent_interface: Callable[[str], str] = default_interface  # username → queue member interface

    async def ask(self, text: str) -> Answer:
        if self.knowledge_ask is None:
            raise Unavailable("知识库未接入")
        return await asyncio.to_thread(self.knowledge_ask, text)

    async def suggest(self, text: str, *, district: str | None, k: int = 3) -> list[Suggestion]:
        if self.suggester is None:
            raise Unavailable("智能派单未接入")
        return await asyncio.to_thread(self.suggester.suggest, text, k, district=district)


DESK_SERVICES = web.AppKey("desk_services", DeskServices)


def setup_ticket_services(app: web.Application) -> None:
    """Unwired services when ``create_app`` was given none; agents may subscribe to their screen pops."""
    if DESK_SERVICES not in app:
        app[DESK_SERVICES] = DeskServices(
            suggester=DispatchSuggester.from_settings(app[keys.SETTINGS])
        )
    app[keys.HUB].rules.setdefault(SCREENPOP_RULE.name, SCREENPOP_RULE)


def services_of(app: web.Application) -> DeskServices:
    return app[DESK_SERVICES]


def settings_of(app: web.Application) -> Settings:
    return app[keys.SETTINGS]
