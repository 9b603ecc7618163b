"""`hotline db upgrade|current`: Alembic migrations on SQLite and PostgreSQL."""

from __future__ import annotations

import argparse

from config import Settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("db", help="数据库迁移 (database migrations)")
    cmds = p.add_subparsers(dest="db_command", required=True)
    up = cmds.add_parser("upgrade", help="apply migrations up to a revision (default: head)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(handler=_upgrade)
    cur = cmds.add_parser("current", help="print the applied revision")
    cur.set_defaults(handler=_current)


def _upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from hotline.migrate import current_revision, upgrade

    upgrade(settings.database.url, args.revision)
    print(f"数据库结构版本：{current_revision(settings.database.url)}")
    return 0


def _current(settings: Settings, _args: argparse.Namespace) -> int:
    from hotline.migrate import current_revision

    print(current_revision(settings.database.url) or "(empty database)")
    return 0
