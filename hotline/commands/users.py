"""`hotline users add NAME --role R [...]` and `hotline users list`: console accounts."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from agent_console.roles import ROLE_LABELS, Role
from config import Settings

if TYPE_CHECKING:
    from agent_console.errors import ConsoleError

T = TypeVar("T")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("users", help="控制台账号 (console accounts)")
    cmds = p.add_subparsers(dest="users_command", required=True)
    add = cmds.add_parser("add", help="create an account (asks for the password twice)")
    add.add_argument("name", help="login name")
    add.add_argument(
        "--role",
        required=True,
        choices=[r.value for r in Role],
        help="; ".join(f"{r.value} {r.label}" for r in Role),
    )
    add.add_argument("--display-name", help="姓名 shown in the console (default: the login name)")
    add.add_argument("--department", help="承办单位 (required for handler)")
    add.add_argument("--grid", help="网格 (required for grid)")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin",
    )
    add.set_defaults(handler=_add)
    ls = cmds.add_parser("list", help="list accounts")
    ls.set_defaults(handler=_list)


def _read_password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("密码: ")
    if getpass.getpass("再输入一次: ") != first:
        print("错误: 两次输入的密码不一致", file=sys.stderr)
        return None
    return first


def _add(settings: Settings, args: argparse.Namespace) -> int:
    from pydantic import ValidationError
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from agent_console.auth import Accounts, Origin
    from agent_console.errors import ConsoleError, invalid_input
    from agent_console.schemas import UserCreate
    from hotline.runtime import with_session

    password = _read_password(args)
    if password is None:
        return 1
    accounts = Accounts(settings.console)
    try:
        new = UserCreate(
            username=args.name,
            display_name=args.display_name or args.name,
            role=args.role,
            department=args.department,
            grid=args.grid,
            password=password,
        )
        user = with_session(
            settings, lambda db: accounts.create_user(db, new, Origin(), datetime.now(UTC))
        )
    except ValidationError as exc:
        return _fail(invalid_input(exc))
    except ConsoleError as exc:
        return _fail(exc)
    except (OperationalError, ProgrammingError) as exc:
        print(
            f"错误: 数据库不可用或尚未初始化（先运行 hotline db upgrade）：{exc.orig}",
            file=sys.stderr,
        )
        return 1
    print(f"已创建 {ROLE_LABELS[Role(user.role)]} {user.username}（{user.display_name}）")
    return 0


def _list(settings: Settings, _args: argparse.Namespace) -> int:
    from agent_console.auth import list_users
    from hotline.runtime import with_session

    users = with_session(settings, list_users)
    for u in users:
        place = u.department or u.grid or ""
        state = "" if u.active else "（停用）"
        print(f"{u.username}\t{u.display_name}\t{ROLE_LABELS[Role(u.role)]}\t{place}{state}")
    return 0


def _fail(exc: ConsoleError) -> int:
    print(f"错误 [{exc.code}]: {exc.message}", file=sys.stderr)
    return 1
