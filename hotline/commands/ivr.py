"""`hotline ivr` runs the AMI controller alone, with what hangs on it: call-backs (回访 and missed calls, rung by
one process on the database), voice messages filed as tickets, and the console feed (screen pops and the live
queue, which reach the console workers through the PostgreSQL hub)."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from functools import partial

from config import Settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "ivr", help="AMI 控制器：溢出到语音机器人、领导接听日、通话记录 (AMI controller)"
    )
    p.set_defaults(handler=_run)


def _run(settings: Settings, _args: argparse.Namespace) -> int:
    return asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> int:
    from agent_console.softphone import AgentInterfaces
    from hotline.runtime import database, until_signalled
    from hotline.wiring import (
        ConsoleFeed,
        Telephony,
        blocklist_agi,
        build_hub,
        callback_schedulers,
        message_filer,
        start_jobs,
        start_telephony,
        stop_telephony,
        subscribe,
        telephony_jobs,
    )
    from ivr.controller import build_controller, resolve_ami_credentials

    resolve_ami_credentials(
        settings
    )  # fail now, with a clear message, when there is nothing to log in with
    async with database(settings) as sessionmaker:
        controller = build_controller(settings, sessionmaker)
        filer = message_filer(
            controller, sessionmaker, settings
        )  # voice messages (留言) become tickets
        hub = build_hub(settings, sessionmaker)
        telephony = Telephony(
            controller,
            callback_schedulers(settings, sessionmaker, controller),
            ConsoleFeed(
                controller,
                hub,
                sessionmaker,
                AgentInterfaces(settings).username,
                partial(datetime.now, UTC),
            ),
            messages=filer,
            blocklist=blocklist_agi(settings, sessionmaker),
        )
        subscribe(telephony)
        await start_telephony(telephony)
        await hub.start()
        jobs = start_jobs(settings, telephony_jobs(telephony))
        try:
            await until_signalled()
        finally:
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)
            await stop_telephony(telephony)
            await hub.close()
    return 0
