"""`hotline bot` runs the speech bot (AudioSocket server) alone; `--with-ivr` runs the AMI controller beside it.

The bot needs the controller for two things: the caller's number (the dialplan hands the bot only a UUID) and
``BOT_NEXT=hangup`` after a settled call (else the dialplan requeues the caller). :func:`hotline.wiring.bot_hooks`
wires them; a bot started without a controller asks callers to key in their number and every call goes back
to the queue afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from config import Settings

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("bot", help="语音机器人：AudioSocket 服务 (speech bot)")
    p.add_argument("--host", help="listen address (default asr.audiosocket.host)")
    p.add_argument("--port", type=int, help="listen port (default asr.audiosocket.port)")
    p.add_argument(
        "--with-ivr",
        action="store_true",
        help="also run the AMI controller in this process (caller numbers, BOT_NEXT)",
    )
    p.set_defaults(handler=_run)


def _run(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_serve(settings, args))


async def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from asr.bot import build_bot
    from hotline.runtime import database, until_signalled
    from hotline.wiring import (
        Telephony,
        bot_hooks,
        load_reports,
        message_filer,
        message_transcriber,
        subscribe,
        ticket_linker,
    )
    from ivr.controller import build_controller

    async with database(settings) as sessionmaker:
        controller = build_controller(settings, sessionmaker) if args.with_ivr else None
        hooks = bot_hooks(controller) if controller else ticket_linker(sessionmaker)
        bot = await build_bot(settings, sessionmaker, host=args.host, port=args.port, **hooks)
        background = [
            message_transcriber(settings, sessionmaker, bot).run()
        ]  # voice messages (留言)
        if controller:
            filer = message_filer(controller, sessionmaker, settings)
            subscribe(Telephony(controller, messages=filer))
            background.append(filer.run())
            await controller.start()
        await bot.start()
        tasks = [asyncio.create_task(work) for work in background]
        print(f"speech bot listening on {bot.server.host}:{bot.port}", file=sys.stderr)
        try:
            async with load_reports(settings, sessionmaker, bot):
                await until_signalled()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await bot.close()
            if controller:
                await controller.stop()
    return 0
