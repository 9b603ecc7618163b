"""`hotline metrics --from DATE --to DATE [--by department|category|area] [--json]`: 考核指标;
`hotline metrics --calls --from DATE --to DATE [--by hour|day|queue|agent] [--json]`: 话务服务水平 from the call
log (ivr.service_levels); `hotline metrics rebuild`: recompute the daily rollup the metrics read
(tickets.metrics_rollup)."""

from __future__ import annotations

import argparse
import json
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from hotline.commands.warnings import parse_when
from hotline.runtime import with_session
from ivr import service_levels as sl
from tickets.errors import TicketError
from tickets.metrics import GROUPINGS, day_range, metrics
from tickets.metrics_rollup import rebuild

_RATES = (
    ("response_rate", "响应率"),
    ("closure_rate", "办结率"),
    ("on_time_rate", "按期办结率"),
    ("satisfaction_rate", "满意率"),
    ("instant_rate", "即答率"),
    ("repeat_rate", "重复率"),
)
_COUNTS = (("received", "受理"), ("closed", "办结"), ("open", "在办"), ("overdue", "超期"))


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("metrics", help="考核指标：响应率、办结率、满意率等 (ticket metrics)")
    p.add_argument(
        "action",
        nargs="?",
        choices=("rebuild",),
        help="rebuild: 重建考核指标日汇总（批量导入、绕过服务写入或修改时区之后）",
    )
    p.add_argument("--from", dest="first", help="开始日期 YYYY-MM-DD（含）")
    p.add_argument("--to", dest="last", help="结束日期 YYYY-MM-DD（含）")
    p.add_argument(
        "--calls",
        action="store_true",
        help="话务服务水平（接通率、15秒接通率、放弃、等待）：来自通话记录",
    )
    p.add_argument(
        "--by",
        choices=(*GROUPINGS, *sl.GROUPINGS),
        help="分组：department 主办单位 / category 一级分类 / area 区县；"
        "--calls 时：hour 小时 / day 日 / queue 队列 / agent 坐席",
    )
    p.add_argument("--now", help="统计时刻 ISO 8601（决定是否超期；默认现在）")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_metrics)


def _date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise TicketError(
            f"{option} 不是有效日期（YYYY-MM-DD）：{value!r}", code="cli.bad_date"
        ) from None


def _metrics(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "rebuild":
        print(
            json.dumps(
                with_session(settings, lambda session: rebuild(session, settings)),
                ensure_ascii=False,
            )
        )
        return 0
    if args.first is None or args.last is None:
        raise TicketError("请用 --from 和 --to 指定统计日期", code="cli.missing_option")
    start, end = day_range(
        _date(args.first, "--from"), _date(args.last, "--to"), ZoneInfo(settings.timezone)
    )
    if args.calls:
        return _calls(settings, args, start, end)
    now = parse_when(args.now, settings)

    async def work(session: AsyncSession) -> dict[str, Any]:
        return await metrics(session, start, end, by=args.by, now=now, settings=settings)

    result = with_session(settings, work)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return 0
    rows = [("合计", result["total"])] + [(g["label"], g) for g in result.get("groups", [])]
    header = [
        "",
        *(label for _, label in _COUNTS),
        *(label for _, label in _RATES),
        "平均办理时长(小时)",
    ]
    print("\t".join(header))
    for label, m in rows:
        rates = ["-" if m[k] is None else f"{m[k]:.1%}" for k, _ in _RATES]
        hours = "-" if m["avg_handling_hours"] is None else f"{m['avg_handling_hours']:.1f}"
        print("\t".join([label, *(str(m[k]) for k, _ in _COUNTS), *rates, hours]))
    return 0


def cell(key: str, value: Any) -> str:
    """A figure as the text table shows it: rates in per cent, seconds with one decimal, "-" for none."""
    if value is None:
        return "-"
    if key.endswith("_rate"):
        return f"{value:.1%}"
    return f"{value:.1f}" if key.endswith("_s") else str(value)


def _calls(settings: Settings, args: argparse.Namespace, start: datetime, end: datetime) -> int:
    if args.by is not None and args.by not in sl.GROUPINGS:
        raise TicketError(
            f"--calls 只能按 {'、'.join(sl.GROUPINGS)} 分组：{args.by!r}", code="cli.bad_group"
        )

    async def work(session: AsyncSession) -> dict[str, Any]:
        return await sl.service_levels(session, start, end, settings=settings, by=args.by)

    result = with_session(settings, work)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return 0
    print(f"服务水平时限 {result['service_level_s']:g} 秒")
    print("\t".join(["", *(label for _, label in sl.COLUMNS)]))
    for label, m in [
        ("合计", result["total"]),
        *((g["label"], g) for g in result.get("groups", [])),
    ]:
        print("\t".join([label, *(cell(k, m[k]) for k, _ in sl.COLUMNS)]))
    return 0
