"""Typed keys of what the app factory puts on the application and what a request carries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console.auth import Accounts
from agent_console.hub import Hub
from agent_console.metrics import ConsoleMetrics
from agent_console.models import UserSession
from config import Settings

SETTINGS = web.AppKey("settings", Settings)
SESSIONMAKER = web.AppKey("sessionmaker", async_sessionmaker[AsyncSession])
CLOCK = web.AppKey[Callable[[], datetime]]("clock")
ACCOUNTS = web.AppKey("accounts", Accounts)
HUB = web.AppKey("hub", Hub)
METRICS = web.AppKey("metrics", ConsoleMetrics)
# The session of the request's cookie once looked up (None: no valid session).
SESSION = web.RequestKey[UserSession | None]("console_session")
OPENAPI = web.AppKey[dict[str, Any]]("openapi")
# Awaited after a knowledge-base entry changed in the console, so the bot refreshes its index.
KNOWLEDGE_CHANGED = web.AppKey[Callable[[], Awaitable[None]]]("knowledge_changed")
