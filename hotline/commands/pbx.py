"""`hotline pbx start|stop|status|restart|call`: the local Asterisk for development, tests and small sites."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from config import Settings
from ivr.pbx import LocalPbx, PbxError, PbxInfo
from ivr.pbx.testcall import CALL_CONTEXTS, CallReport


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("pbx", help="本地 Asterisk 电话交换机 (local Asterisk PBX)")
    cmds = p.add_subparsers(dest="pbx_command", required=True)
    which = argparse.ArgumentParser(add_help=False)
    which.add_argument(
        "--instance",
        default="",
        help="a named instance of pbx.instances beside the default one (own folders, shifted ports)",
    )
    start = cmds.add_parser(
        "start", parents=[which], help="build once, start and print connection details as JSON"
    )
    start.add_argument(
        "--audiosocket-port", type=int, default=None, help="port of the bot's AudioSocket server"
    )
    start.set_defaults(handler=_guard(_start))
    cmds.add_parser("stop", parents=[which], help="stop the local PBX").set_defaults(
        handler=_guard(_stop)
    )
    cmds.add_parser(
        "status", parents=[which], help="print connection details; exit 1 when not running"
    ).set_defaults(handler=_guard(_status))
    cmds.add_parser("restart", parents=[which], help="stop and start again").set_defaults(
        handler=_guard(_restart)
    )
    call = cmds.add_parser(
        "call", parents=[which], help="place an emulated call (plays a WAV file as the caller)"
    )
    call.add_argument(
        "--audio", type=Path, default=None, help="WAV (or any sox-readable) file the caller says"
    )
    call.add_argument("--caller", default="13800138000", help="caller number (CallerID)")
    call.add_argument(
        "--dtmf", default="", help="digits the caller presses after the answer, e.g. 2"
    )
    call.add_argument("--context", default="hotline-inbound", choices=sorted(CALL_CONTEXTS))
    call.add_argument(
        "--audio-at",
        default="bot",
        choices=["bot", "start"],
        help="play the audio once the bot answers (default) or right away",
    )
    call.add_argument(
        "--caller-wait", type=int, default=30, help="seconds the caller stays after the audio"
    )
    call.add_argument(
        "--wait",
        action="store_true",
        help="follow the call until it hangs up; print answered_by (agent|leader|bot|abandoned), "
        "wait_s, bot_uuid, ticket_no, transcript, duration_s as JSON",
    )
    call.add_argument(
        "--ticket-wait",
        type=float,
        default=10.0,
        help="with --wait: seconds to wait for the bot's ticket after the call ends",
    )
    call.set_defaults(handler=_guard(_call))


def _guard(handler):  # type: ignore[no-untyped-def]
    def run(settings: Settings, args: argparse.Namespace) -> int:
        try:
            return int(handler(settings, args))
        except PbxError as exc:
            print(
                json.dumps(
                    {"error": exc.code, "message": exc.message, "detail": exc.detail},
                    ensure_ascii=False,
                ),
                file=sys.stderr,
            )
            return 2

    return run


def _print_info(info: PbxInfo) -> None:
    print(json.dumps({"running": True, **info.to_dict()}, ensure_ascii=False, indent=2))


def _local_pbx(settings: Settings, args: argparse.Namespace) -> LocalPbx:
    """The local PBX (``--instance``), its prompts spoken by the bot's voice."""
    from hotline.wiring import prompt_voice  # loads the whole service: only when the PBX starts

    return LocalPbx(settings, instance=args.instance, voice=prompt_voice(settings))


def _start(settings: Settings, args: argparse.Namespace) -> int:
    pbx = _local_pbx(settings, args)
    _print_info(pbx.start(audiosocket_port=args.audiosocket_port))
    return 0


def _stop(settings: Settings, args: argparse.Namespace) -> int:
    LocalPbx(settings, instance=args.instance).stop()
    print(json.dumps({"running": False}))
    return 0


def _status(settings: Settings, args: argparse.Namespace) -> int:
    info = LocalPbx(settings, instance=args.instance).status()
    if info is None:
        print(json.dumps({"running": False}))
        return 1
    _print_info(info)
    return 0


def _restart(settings: Settings, args: argparse.Namespace) -> int:
    _print_info(_local_pbx(settings, args).restart())
    return 0


def _call(settings: Settings, args: argparse.Namespace) -> int:
    info = LocalPbx(settings, instance=args.instance).status()
    if info is None:
        raise PbxError("pbx.not_running", "本地 PBX 未运行，请先执行 hotline pbx start")
    report = asyncio.run(_place(settings, info, args))
    print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    return 0


async def _place(settings: Settings, info: PbxInfo, args: argparse.Namespace) -> CallReport:
    """The call; with --wait the database is opened to report the ticket made from it."""
    from hotline.runtime import database
    from ivr.pbx.testcall import place_call

    options = {
        "caller": args.caller,
        "dtmf": args.dtmf,
        "context": args.context,
        "audio_at": args.audio_at,
        "caller_wait_s": args.caller_wait,
        "wait": args.wait,
    }
    if not args.wait:
        return await place_call(info, args.audio, **options)
    async with database(settings) as sessionmaker:
        return await place_call(
            info,
            args.audio,
            **options,
            sessionmaker=sessionmaker,
            ticket_wait_s=args.ticket_wait,
            timezone=settings.timezone,
        )
