"""`hotline ivr` runs the AMI controller alone."""

from __future__ import annotations

import argparse
import asyncio

from config import Settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "ivr", help="AMI 控制器：溢出到语音机器人、领导接听日、通话记录 (AMI controller)"
    )
    p.set_defaults(handler=_run)


def _run(settings: Settings, _args: argparse.Namespace) -> int:
    return asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> int:
    from hotline.runtime import database, until_signalled
    from hotline.wiring import Telephony, message_filer, subscribe
    from ivr.controller import build_controller, resolve_ami_credentials

    resolve_ami_credentials(
        settings
    )  # fail now, with a clear message, when there is nothing to log in with
    async with database(settings) as sessionmaker:
        controller = build_controller(settings, sessionmaker)
        filer = message_filer(
            controller, sessionmaker, settings
        )  # voice messages (留言) become tickets
        subscribe(Telephony(controller, messages=filer))
        await controller.start()
        sweep = asyncio.create_task(filer.run(), name="message-sweep")
        try:
            await until_signalled()
        finally:
            sweep.cancel()
            await asyncio.gather(sweep, return_exceptions=True)
            await controller.stop()
    return 0
