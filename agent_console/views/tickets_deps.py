"""What the ticket screens need from outside the console.

``create_app`` runs :func:`setup_ticket_services` (a setup of the tickets feature): it puts a
:class:`TicketServices` on the app, with the dispatch suggester loaded from the settings, and adds the hub's
``screenpop`` topic rule. The composition root then fills in the rest before serving::

    services = services_of(app)
    services.call_control = <adapter of the AMI controller>   # QueuePause, Originate of call-backs
    services.knowledge_ask = knowledge_index.ask

Left unwired, the telephony buttons answer 503 and the knowledge panel says it is not available.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from agent_console import keys
from agent_console.calls import SCREENPOP_RULE, CallControl, UnwiredCallControl, default_interface
from agent_console.errors import Unavailable
from config import Settings
from knowledge.retrieval import Answer
from tickets.dispatch_suggest import DispatchSuggester, Suggestion

KnowledgeAsk = Callable[[str], Answer]  # e.g. knowledge.retrieval.KnowledgeIndex.ask


@dataclass
class TicketServices:
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


TICKET_SERVICES = web.AppKey("ticket_services", TicketServices)


def setup_ticket_services(app: web.Application) -> None:
    """Put the (mutable) services on the app and let agents subscribe to their screen pops."""
    app[TICKET_SERVICES] = TicketServices(suggester=DispatchSuggester.from_settings(app[keys.SETTINGS]))
    app[keys.HUB].rules.setdefault(SCREENPOP_RULE.name, SCREENPOP_RULE)


def services_of(app: web.Application) -> TicketServices:
    return app[TICKET_SERVICES]


def attachments_dir(settings: Settings) -> Path:
    """Where reply attachments are kept: ``<data_dir>/attachments``."""
    return Path(settings.data_dir) / "attachments"


def settings_of(app: web.Application) -> Settings:
    return app[keys.SETTINGS]
