"""The app factory: everything the console needs is passed in; nothing is global.

To add a feature: write ``agent_console/views/<feature>.py`` with ``routes = RouteTable("<feature>")`` and its
decorated handlers (see ``agent_console.routing``), templates in ``templates/``, and list the table in
``FEATURES``. Its role rules, OpenAPI entries, navigation entries and role-matrix tests follow from the
declarations.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console import keys
from agent_console.auth import Accounts
from agent_console.cockpit_panels import PANEL_CACHE, PanelCache
from agent_console.desk.services import DESK_SERVICES, DeskServices
from agent_console.hub import Hub
from agent_console.masking import mask_phone
from agent_console.metrics import ConsoleMetrics
from agent_console.middleware import deny_unregistered, errors, rate_limits
from agent_console.openapi import build_openapi
from agent_console.routing import REGISTRY, RouteRegistry, RouteTable
from agent_console.security import security_headers
from agent_console.softphone import SOFTPHONES, SoftphoneDirectory, ws_origin
from agent_console.switchboard import SWITCHBOARD, Switchboard
from agent_console.views import (
    blocklist,
    callbacks,
    callcontrol,
    cockpit,
    department,
    dispatch_desk,
    home,
    knowledge,
    leaders,
    live,
    missed_calls,
    ops,
    public,
    reports,
    session,
    softphone,
    ticket_merge,
    tickets,
    users,
    workspace,
)
from config import Settings

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"
MAX_REQUEST_BYTES = 1024 * 1024

FEATURES: tuple[RouteTable, ...] = (
    home.routes,
    session.routes,
    users.routes,
    live.routes,
    ops.routes,
    knowledge.routes,
    cockpit.routes,
    leaders.routes,
    reports.routes,
    tickets.routes,
    ticket_merge.routes,
    workspace.routes,
    dispatch_desk.routes,
    department.routes,
    callbacks.routes,
    public.routes,
    missed_calls.routes,
    blocklist.routes,
    softphone.routes,
    callcontrol.routes,
)


def utc_now() -> datetime:
    return datetime.now(UTC)


async def _nothing() -> None:
    """No knowledge-change listener (no bot in this process)."""


def _version() -> str:
    try:
        return version("hotline12345")
    except PackageNotFoundError:
        return "0.0.0"


def create_app(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    hub: Hub | None = None,
    accounts: Accounts | None = None,
    features: Sequence[RouteTable] = FEATURES,
    clock: Callable[[], datetime] = utc_now,
    on_knowledge_change: Callable[[], Awaitable[None]] | None = None,
    desk: DeskServices | None = None,
    softphones: SoftphoneDirectory | None = None,
    switchboard: Switchboard | None = None,
    cockpit_cache: PanelCache | None = None,
) -> web.Application:
    """The console application. ``hub`` is shared with in-process producers of live events; ``clock`` lets
    tests move time (session expiry, throttling windows). ``on_knowledge_change`` is awaited after every
    knowledge-base edit made in the console (the bot refreshes its index). ``desk``: the ticket screens'
    telephony, knowledge lookup and dispatch suggester (default: unwired, see
    :mod:`agent_console.desk.services`). ``softphones``: the SIP accounts of the browser softphones (default:
    passwords issued through the switchboard, :class:`agent_console.softphone.IssuedSoftphones`).
    ``switchboard``: transfers, supervision and softphone passwords (default: unwired, 503;
    :mod:`agent_console.switchboard`). ``cockpit_cache``: the cockpit's panels shared by several workers
    (default: this process's own, :class:`agent_console.cockpit_panels.LocalPanels`)."""
    registry = RouteRegistry.of(features)
    metrics = ConsoleMetrics()
    headers = security_headers(
        https=settings.console.secure_cookies, connect=(ws_origin(settings),)
    )
    app = web.Application(
        middlewares=[metrics.middleware(), headers, errors, deny_unregistered, rate_limits],
        client_max_size=MAX_REQUEST_BYTES,
    )
    app[keys.SETTINGS] = settings
    app[keys.SESSIONMAKER] = sessionmaker
    app[keys.CLOCK] = clock
    app[keys.ACCOUNTS] = accounts or Accounts(settings.console)
    app[keys.HUB] = hub or Hub(queue_size=settings.console.ws_queue_size)
    app[keys.ACCOUNTS].on_revoke(
        app[keys.HUB].disconnect
    )  # a logout or account change closes its sockets
    app[keys.METRICS] = metrics
    app[REGISTRY] = registry
    app[keys.OPENAPI] = build_openapi(registry, version=_version())
    app[keys.KNOWLEDGE_CHANGED] = on_knowledge_change or _nothing
    if desk is not None:
        app[DESK_SERVICES] = desk
    if softphones is not None:
        app[SOFTPHONES] = softphones
    if switchboard is not None:
        app[SWITCHBOARD] = switchboard
    if cockpit_cache is not None:
        app[PANEL_CACHE] = cockpit_cache
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        filters={"mask_phone": mask_phone},
    )
    registry.install(app)
    for feature in features:
        for setup in feature.setups:
            setup(app)
    app.router.add_static("/static", STATIC_DIR, name="static", append_version=True)
    return app
