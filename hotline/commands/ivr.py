"""`hotline ivr` runs the AMI controller alone; `hotline leaders add|list|remove` edits 领导接听日."""

from __future__ import annotations

import argparse
import asyncio
from datetime import date, time

from config import Settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("ivr", help="AMI 控制器：溢出到语音机器人、领导接听日、通话记录 (AMI controller)")
    p.set_defaults(handler=_run)

    leaders = sub.add_parser("leaders", help="领导接听日安排 (leader answering days)")
    cmds = leaders.add_subparsers(dest="leaders_command", required=True)
    add = cmds.add_parser("add", help="schedule a leader's answering window")
    add.add_argument("--date", type=date.fromisoformat, required=True, help="YYYY-MM-DD")
    add.add_argument("--start", type=time.fromisoformat, required=True, help="HH:MM (local time)")
    add.add_argument("--end", type=time.fromisoformat, required=True, help="HH:MM (local time)")
    add.add_argument("--name", required=True, help="leader's name, e.g. 李明")
    add.add_argument("--title", default="", help="title, e.g. 区长")
    add.add_argument("--department", default="", help="department, e.g. 区政府")
    add.add_argument("--interface", required=True, help="endpoint, e.g. PJSIP/6009 or Local/6009@test-agent/n")
    add.add_argument("--account", default="", help="the leader's console username (their 领导接听 page)")
    add.set_defaults(handler=_add)
    ls = cmds.add_parser("list", help="list scheduled windows")
    ls.add_argument("--from", dest="day_from", type=date.fromisoformat, default=None)
    ls.add_argument("--to", dest="day_to", type=date.fromisoformat, default=None)
    ls.set_defaults(handler=_list)
    rm = cmds.add_parser("remove", help="remove a window by its number")
    rm.add_argument("id", type=int)
    rm.set_defaults(handler=_remove)


def _run(settings: Settings, _args: argparse.Namespace) -> int:
    return asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> int:
    from hotline.runtime import database, until_signalled
    from ivr.controller import build_controller, resolve_ami_credentials

    resolve_ami_credentials(settings)  # fail now, with a clear message, when there is nothing to log in with
    async with database(settings) as sessionmaker:
        controller = build_controller(settings, sessionmaker)
        await controller.start()
        try:
            await until_signalled()
        finally:
            await controller.stop()
    return 0


def _add(settings: Settings, args: argparse.Namespace) -> int:
    from hotline.runtime import with_session
    from ivr.leaders import ShiftInput, add_shift

    shift = ShiftInput(args.date, args.start, args.end, args.name, args.interface, args.title, args.department,
                       args.account)
    row = with_session(settings, lambda s: add_shift(s, shift))
    print(f"#{row.id} {row.day} {row.start:%H:%M}–{row.end:%H:%M} {row.leader_name} {row.title} {row.interface}")
    return 0


def _list(settings: Settings, args: argparse.Namespace) -> int:
    from hotline.runtime import with_session
    from ivr.leaders import list_shifts

    rows = with_session(settings, lambda s: list_shifts(s, day_from=args.day_from, day_to=args.day_to))
    for row in rows:
        print(f"#{row.id}\t{row.day}\t{row.start:%H:%M}–{row.end:%H:%M}\t{row.leader_name}\t{row.title}\t"
              f"{row.department}\t{row.interface}")
    return 0


def _remove(settings: Settings, args: argparse.Namespace) -> int:
    from hotline.runtime import with_session
    from ivr.leaders import remove_shift

    row = with_session(settings, lambda s: remove_shift(s, args.id))
    print(f"removed #{row.id} {row.day} {row.leader_name}")
    return 0
