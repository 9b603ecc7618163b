"""`hotline bot` runs the speech bot (AudioSocket server) alone; `--with-ivr` runs the AMI controller beside it.

The bot needs the controller for two things: the caller's number (the dialplan hands the bot only a UUID) and
``BOT_NEXT=hangup`` after a settled call (else the dialplan requeues the caller). :func:`controller_hooks`
wires them; a bot started without a controller asks callers to key in their number and every call goes back
to the queue afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

from asr.bot import build_bot
from asr.dialogue import BotOutcome
from asr.prompts import PromptsError
from asr.recognizer import AsrError
from asr.tts import TtsError
from config import Settings
from hotline.db import create_schema, make_engine, make_sessionmaker
from ivr.controller import HotlineController, build_controller

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("bot", help="语音机器人：AudioSocket 服务 (speech bot)")
    p.add_argument("--host", help="listen address (default asr.audiosocket_host)")
    p.add_argument("--port", type=int, help="listen port (default asr.audiosocket_port)")
    p.add_argument("--with-ivr", action="store_true",
                   help="also run the AMI controller in this process (caller numbers, BOT_NEXT)")
    p.set_defaults(handler=_run)


def controller_hooks(controller: HotlineController) -> dict[str, Any]:
    """``on_outcome`` / ``caller_for`` / ``recording_for`` for :func:`asr.bot.build_bot`, from the controller."""

    async def on_outcome(call_uuid: str, outcome: BotOutcome) -> None:
        # hangup: settled, the dialplan hangs up; queue: BOT_NEXT stays unset and the dialplan requeues.
        if outcome.next == "hangup" and not await controller.set_bot_next(call_uuid, "hangup"):
            log.info("bot call %s: the channel is gone, BOT_NEXT not set", call_uuid)

    async def caller_for(call_uuid: str) -> str | None:
        call = controller.state.find_by_bot(call_uuid)
        return call.caller_number if call else None

    async def recording_for(call_uuid: str) -> str | None:
        call = controller.state.find_by_bot(call_uuid)
        return call.recording if call else None

    return {"on_outcome": on_outcome, "caller_for": caller_for, "recording_for": recording_for}


def _run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_serve(settings, args))
    except (AsrError, PromptsError, TtsError) as exc:
        print(f"错误 [{exc.code}]: {exc.message}", file=sys.stderr)
        return 2


async def _serve(settings: Settings, args: argparse.Namespace) -> int:
    engine = make_engine(settings.database.url, echo=settings.database.echo, pool_size=settings.database.pool_size)
    controller: HotlineController | None = None
    try:
        if engine.dialect.name == "sqlite":
            await create_schema(engine)  # the embedded default; PostgreSQL uses `hotline db upgrade`
        sessionmaker = make_sessionmaker(engine)
        hooks: dict[str, Any] = {}
        if args.with_ivr:
            controller = build_controller(settings, sessionmaker)
            hooks = controller_hooks(controller)
        bot = await build_bot(settings, sessionmaker, host=args.host, port=args.port, **hooks)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        if controller:
            await controller.start()
        await bot.start()
        print(f"speech bot listening on {bot.server.host}:{bot.port}", file=sys.stderr)
        await stop.wait()
        await bot.close()
    finally:
        if controller:
            await controller.stop()
        await engine.dispose()
    return 0
