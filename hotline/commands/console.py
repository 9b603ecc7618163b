"""`hotline console [--host H] [--port P]` and `hotline console install-assets`: the web console. Several
console workers may share one PostgreSQL (live events through its hub, the cockpit's panels in its tables; the
warning scans, the pruning of the citizens' API records and the cockpit warmer run in one of them at a time)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import TYPE_CHECKING

from config import Settings

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("console", help="坐席控制台 (web console)")
    p.add_argument("--host", help="listen address (default: console.host)")
    p.add_argument("--port", type=int, help="listen port (default: console.port)")
    p.set_defaults(handler=_serve)
    cmds = p.add_subparsers(dest="console_command")
    assets = cmds.add_parser(
        "install-assets", help="npm install the browser libraries into static/vendor/"
    )
    assets.set_defaults(handler=_install_assets)


async def _app(settings: Settings) -> web.Application:
    from agent_console.app import create_app
    from hotline.console_knowledge import ConsoleKnowledge
    from hotline.db import make_engine, make_sessionmaker
    from hotline.runtime import ensure_schema
    from hotline.wiring import (
        build_hub,
        cockpit_cache,
        console_desk,
        console_jobs,
        remote_switchboard,
        start_jobs,
    )

    engine = make_engine(
        settings.database.url, echo=settings.database.echo, pool_size=settings.database.pool_size
    )
    await ensure_schema(engine)

    sessionmaker = make_sessionmaker(engine)
    hub = build_hub(settings, sessionmaker)  # PostgreSQL: every process's events on this /ws
    # PostgreSQL: transfers, supervision, the board, agent status and call-backs run on a `hotline ivr`
    switchboard = remote_switchboard(settings, sessionmaker)
    knowledge = ConsoleKnowledge(settings, sessionmaker)  # no bot here to lend its index
    stop, jobs = asyncio.Event(), []  # warning scans and pruning: one console worker runs each

    async def start(_app: web.Application) -> None:
        await hub.start()
        if switchboard is not None:
            await switchboard.start()
        knowledge.start()
        jobs.extend(start_jobs(settings, console_jobs(settings, sessionmaker, stop)))

    async def dispose(_app: web.Application) -> None:
        stop.set()
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        await knowledge.close()
        if switchboard is not None:
            await switchboard.close()
        await hub.close()
        await engine.dispose()

    app = create_app(
        settings,
        sessionmaker,
        hub=hub,
        on_knowledge_change=knowledge.refresh,
        switchboard=switchboard,
        desk=console_desk(settings, switchboard, knowledge.ask),
        cockpit_cache=cockpit_cache(settings, sessionmaker),  # PostgreSQL: one warmer, same figures
    )
    app.on_startup.append(start)
    app.on_cleanup.append(dispose)
    return app


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from aiohttp import web

    from agent_console.access_log import PathAccessLogger
    from agent_console.security import warn_if_plain_http

    host, port = args.host or settings.console.host, args.port or settings.console.port
    log.info("console on http://%s:%d/", host, port)
    warn_if_plain_http(host, settings.console)
    web.run_app(
        _app(settings),
        host=host,
        port=port,
        print=None,
        access_log=log,
        access_log_class=PathAccessLogger,
    )
    return 0


def _install_assets(_settings: Settings, _args: argparse.Namespace) -> int:
    from agent_console.assets import AssetsError, install_assets

    try:
        install_assets()
    except AssetsError as exc:
        print(f"错误: {exc}", file=sys.stderr)
        return 1
    return 0
