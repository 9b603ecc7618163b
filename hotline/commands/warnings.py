"""`hotline warnings scan|deliver`: raise and clear warnings (预警), send queued notifications."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from config import Settings
from tickets.errors import TicketError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("warnings", help="预警：扫描工单、发送通知 (ticket warnings)")
    cmds = p.add_subparsers(dest="warnings_command", required=True)
    scan = cmds.add_parser(
        "scan", help="扫描在办工单，亮黄牌/红牌、消除已解除的预警，并生成通知与督办函"
    )
    scan.add_argument("--now", help="扫描时刻 ISO 8601（默认现在；不带时区按配置时区）")
    scan.add_argument(
        "--deliver", action="store_true", help="扫描后立即发送待发通知（默认发送方式：写日志）"
    )
    scan.set_defaults(handler=_scan)
    deliver = cmds.add_parser("deliver", help="发送待发通知（默认发送方式：写日志）")
    deliver.set_defaults(handler=_deliver)


def parse_when(value: str | None, settings: Settings, option: str = "--now") -> datetime | None:
    """An ISO 8601 instant from the command line; without a zone it is in ``settings.timezone``."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise TicketError(
            f"{option} 不是有效的 ISO 8601 时间：{value!r}", code="cli.bad_time"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=ZoneInfo(settings.timezone))


def _print(data: dict[str, Any]) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def _scan(settings: Settings, args: argparse.Namespace) -> int:
    from hotline.runtime import with_session
    from tickets.warnings import scan_warnings

    now = parse_when(args.now, settings)

    async def work(session: AsyncSession) -> dict[str, Any]:
        report = await scan_warnings(session, now=now, settings=settings)
        out = report.to_json()
        if args.deliver:
            out["delivery"] = (await _drain(session, settings, report.now)).to_json()
        return out

    _print(with_session(settings, work))
    return 0


def _deliver(settings: Settings, _args: argparse.Namespace) -> int:
    from hotline.runtime import with_session

    async def work(session: AsyncSession) -> dict[str, Any]:
        return (
            await _drain(session, settings, datetime.now(ZoneInfo(settings.timezone)))
        ).to_json()

    _print(with_session(settings, work))
    return 0


async def _drain(session: AsyncSession, settings: Settings, now: datetime) -> Any:
    from tickets.outbox import LogSender, deliver_outbox

    return await deliver_outbox(session, LogSender(), now=now, rules=settings.warnings)
