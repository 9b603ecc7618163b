"""`hotline run`: the whole service in one asyncio process on the embedded defaults (what `make run` starts):
the local Asterisk (unless AMI credentials point at another one), the AMI controller, the speech bot, the web
console, call-backs and the warning scans, on SQLite with the sample knowledge base."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import TYPE_CHECKING

from config import Settings, config_path

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "run",
        help="一体化启动：本地 PBX、AMI 控制器、语音机器人、控制台 (everything in one process)",
    )
    p.add_argument(
        "--no-pbx", action="store_true", help="do not start the local Asterisk (use [ami] settings)"
    )
    p.set_defaults(
        handler=lambda settings, args: asyncio.run(_serve(settings, start_pbx=not args.no_pbx))
    )


async def prepare_data(settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Departments from the dispatch catalogue; the sample knowledge base into an empty one."""
    from knowledge import services as kb
    from knowledge.io import import_file
    from tickets.dispatch_catalogue import load_catalogue
    from tickets.seed import seed_departments

    async with sessionmaker() as session:
        await seed_departments(session, load_catalogue(settings))
        if (await kb.change_stamp(session))[0] == 0:
            report = await import_file(
                session,
                config_path(settings.knowledge.sample),
                "system",
                publish=True,
                max_speech=settings.knowledge.max_speech_chars,
            )
            log.info("sample knowledge base loaded: %d entries", report.created)


async def _serve(settings: Settings, *, start_pbx: bool) -> int:
    from hotline.runtime import database
    from hotline.wiring import prompt_voice
    from ivr.pbx.harness import LocalPbx

    pbx = (
        LocalPbx(settings, voice=prompt_voice(settings))
        if start_pbx and not settings.ami.username
        else None
    )
    ours = pbx is not None and pbx.status() is None  # stop at the end only a PBX this run started
    if pbx is not None:
        info = await asyncio.to_thread(pbx.start, audiosocket_port=settings.asr.audiosocket.port)
        log.info(
            "local Asterisk running (pid %s, AMI %s:%s)", info.pid, info.ami_host, info.ami_port
        )
    try:
        async with database(settings) as sessionmaker:
            await prepare_data(settings, sessionmaker)
            await _run_services(settings, sessionmaker)
    finally:
        if ours:
            await asyncio.to_thread(pbx.stop)  # type: ignore[union-attr]
    return 0


async def _run_services(settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    from aiohttp import web

    from agent_console.security import warn_if_plain_http
    from hotline.runtime import until_signalled
    from hotline.wiring import (
        build_services,
        command_executor,
        console_jobs,
        controller_commands,
        load_reports,
        start_jobs,
        start_telephony,
        stop_telephony,
        subscribe,
        telephony_jobs,
    )

    services = await build_services(settings, sessionmaker)
    subscribe(services.telephony)
    commands = controller_commands(services.telephony)
    # on PostgreSQL, separate `hotline console` workers may send this controller their commands too
    executor = command_executor(settings, sessionmaker, commands) if commands else None
    bot = services.bot

    runner = web.AppRunner(services.app, access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    await start_telephony(services.telephony)  # the controller and the blocklist's FastAGI
    await bot.start()
    await web.TCPSite(runner, settings.console.host, settings.console.port).start()
    await services.hub.start()
    if executor is not None:
        await executor.start()
    background = [
        asyncio.create_task(services.transcriber.run(), name="message-transcription"),
        *start_jobs(
            settings,
            telephony_jobs(services.telephony) | console_jobs(settings, sessionmaker, stop),
        ),
    ]
    log.info(
        "12345 hotline running: console http://%s:%d/, bot on %s:%d",
        settings.console.host,
        settings.console.port,
        settings.asr.audiosocket.host,
        bot.port,
    )
    warn_if_plain_http(settings.console.host, settings.console)
    try:
        async with load_reports(settings, sessionmaker, bot):
            await until_signalled()
    finally:
        stop.set()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if executor is not None:
            await executor.close()
        await runner.cleanup()
        await bot.close()
        await stop_telephony(services.telephony)
        await services.hub.close()
