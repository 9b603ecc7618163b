"""`hotline leaders add|list|remove`: leader answering days (领导接听日), put into the queue by the controller."""

from __future__ import annotations

import argparse
from datetime import date, time

from config import Settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    leaders = sub.add_parser("leaders", help="领导接听日安排 (leader answering days)")
    cmds = leaders.add_subparsers(dest="leaders_command", required=True)
    add = cmds.add_parser("add", help="schedule a leader's answering window")
    add.add_argument("--date", type=date.fromisoformat, required=True, help="YYYY-MM-DD")
    add.add_argument("--start", type=time.fromisoformat, required=True, help="HH:MM (local time)")
    add.add_argument("--end", type=time.fromisoformat, required=True, help="HH:MM (local time)")
    add.add_argument("--name", required=True, help="leader's name, e.g. 李明")
    add.add_argument("--title", default="", help="title, e.g. 区长")
    add.add_argument("--department", default="", help="department, e.g. 区政府")
    add.add_argument(
        "--interface", required=True, help="endpoint, e.g. PJSIP/6009 or Local/6009@test-agent/n"
    )
    add.add_argument(
        "--account", default="", help="the leader's console username (their 领导接听 page)"
    )
    add.add_argument(
        "--pbx",
        default=None,
        help="the PBX whose controller adds the leader (callcontrol.pbx); default: this host's callcontrol.pbx",
    )
    add.set_defaults(handler=_add)
    ls = cmds.add_parser("list", help="list scheduled windows")
    ls.add_argument("--from", dest="day_from", type=date.fromisoformat, default=None)
    ls.add_argument("--to", dest="day_to", type=date.fromisoformat, default=None)
    ls.set_defaults(handler=_list)
    rm = cmds.add_parser("remove", help="remove a window by its number")
    rm.add_argument("id", type=int)
    rm.set_defaults(handler=_remove)


def _add(settings: Settings, args: argparse.Namespace) -> int:
    from hotline.runtime import with_session
    from ivr.leaders import ShiftInput, add_shift

    shift = ShiftInput(
        args.date,
        args.start,
        args.end,
        args.name,
        args.interface,
        args.title,
        args.department,
        args.account,
        settings.callcontrol.pbx if args.pbx is None else args.pbx,
    )
    row = with_session(settings, lambda s: add_shift(s, shift))
    print(
        f"#{row.id} {row.day} {row.start:%H:%M}–{row.end:%H:%M} {row.leader_name} {row.title} {row.interface}"
        + (f" PBX {row.pbx}" if row.pbx else "")
    )
    return 0


def _list(settings: Settings, args: argparse.Namespace) -> int:
    from hotline.runtime import with_session
    from ivr.leaders import list_shifts

    rows = with_session(
        settings, lambda s: list_shifts(s, day_from=args.day_from, day_to=args.day_to)
    )
    for row in rows:
        print(
            f"#{row.id}\t{row.day}\t{row.start:%H:%M}–{row.end:%H:%M}\t{row.leader_name}\t{row.title}\t"
            f"{row.department}\t{row.interface}\t{row.pbx}"
        )
    return 0


def _remove(settings: Settings, args: argparse.Namespace) -> int:
    from hotline.runtime import with_session
    from ivr.leaders import remove_shift

    row = with_session(settings, lambda s: remove_shift(s, args.id))
    print(f"removed #{row.id} {row.day} {row.leader_name}")
    return 0
