"""Reports: the weekly public disclosure per department (公示: XLSX and a printable page), the ticket-list
export to XLSX and the call service levels (话务服务水平, :mod:`ivr.service_levels`) to XLSX.

Disclosure figures are :mod:`tickets.metrics` by lead department for the tickets received in the week
(Monday 00:00 to the next Monday 00:00, local time), ranked like the cockpit (mean of 响应率, 办结率, 满意率).

The export takes the list page's filters (a handler only ever gets their department's tickets), masks phone
numbers as the role sees them, and escapes cells that a spreadsheet would run as a formula (text starting with
``= + - @``, tab or carriage return gets a leading apostrophe). It reads the list page by page (keyset
pagination), writes rows with openpyxl's write-only workbook off the event loop into a temporary file that
spills to disk, then streams the file, so memory stays flat however many rows are exported.

Every download (export and disclosure) is written to the console audit trail before it is sent: who, from
where, the filters applied and how many rows.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import date, datetime, time, timedelta
from io import BytesIO
from typing import IO, Any, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo

from aiohttp import web
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, WriteOnlyCell
from openpyxl.styles import Font
from pydantic import Field

from agent_console import keys
from agent_console.auth import record_audit
from agent_console.desk.schemas import TicketQuery
from agent_console.desk.view_models import (
    TICKET_READERS,
    confidential_filter,
    field_errors,
    scope_filters,
)
from agent_console.masking import caller_of
from agent_console.roles import Role
from agent_console.routing import Call, RouteTable
from agent_console.schemas import Model
from agent_console.security import SECURITY_HEADERS
from config import pii
from ivr import service_levels as sl
from tickets.metrics import day_range, metrics
from tickets.queries import MAX_LIMIT, list_tickets
from tickets.ranking import rank_departments
from tickets.supervision import department_names

routes = RouteTable("reports")
DISCLOSURE_ROLES = frozenset({Role.LEADER, Role.ADMIN, Role.DISPATCHER})
EXPORT_ROLES = TICKET_READERS
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CHUNK = 256 * 1024
SPOOL_BYTES = (
    8 * 1024 * 1024
)  # the workbook stays in memory up to this size, then goes to a temporary file
URGENCY_LABELS = {"normal": "一般", "urgent": "紧急", "very_urgent": "特急"}
WARNING_LABELS = {"red": "红牌", "yellow": "黄牌"}
CHANNEL_LABELS = {
    "phone": "电话",
    "bot": "智能机器人",
    "web": "网站",
    "wechat": "微信",
    "grid": "网格",
    "leader-line": "领导专线",
    "message": "留言",
}


def safe_cell(value: Any) -> Any:
    """A value a spreadsheet shows as it is: text that would start a formula gets a leading apostrophe, and
    control characters that XLSX cannot hold are dropped."""
    if not isinstance(value, str):
        return value
    value = ILLEGAL_CHARACTERS_RE.sub("", value)
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


# --- weekly disclosure ----------------------------------------------------------------------------------------


class WeekQuery(Model):
    week: date | None = Field(
        None,
        ge=date(2000, 1, 1),
        le=date(2100, 12, 31),
        description="该周内任一天；默认为上一个完整的周",
    )


class DisclosureRow(Model):
    rank: int
    code: str
    department: str
    received: int = Field(description="受理量")
    closed: int = Field(description="办结量")
    closure_rate: float | None = Field(description="办结率")
    on_time_rate: float | None = Field(description="按期办结率")
    satisfaction_rate: float | None = Field(description="满意率")
    response_rate: float | None = Field(description="响应率")
    composite: float | None = Field(description="综合得分")


class Disclosure(Model):
    week_start: date
    week_end: date = Field(description="周日（含）")
    generated_at: datetime
    rows: list[DisclosureRow]


def week_of(day: date) -> tuple[date, date]:
    monday = day - timedelta(days=day.weekday())
    return monday, monday + timedelta(days=6)


async def disclosure(call: Call[Any], week: date | None) -> Disclosure:
    tz = ZoneInfo(call.app[keys.SETTINGS].timezone)
    today = call.now.astimezone(tz).date()
    first, last = week_of(week or today - timedelta(days=7))
    start, end = (
        datetime.combine(first, time(), tz),
        datetime.combine(last + timedelta(days=1), time(), tz),
    )
    async with call.db() as db:
        m = await metrics(
            db, start, end, by="department", now=call.now, settings=call.app[keys.SETTINGS]
        )
    return Disclosure(
        week_start=first,
        week_end=last,
        generated_at=call.now,
        rows=[
            DisclosureRow(
                rank=i,
                code=g["key"],
                department=g["label"],
                received=g["received"],
                closed=g["closed"],
                closure_rate=g["closure_rate"],
                on_time_rate=g["on_time_rate"],
                satisfaction_rate=g["satisfaction_rate"],
                response_rate=g["response_rate"],
                composite=score,
            )
            for i, (score, g) in enumerate(rank_departments(m["groups"]), start=1)
        ],
    )


DISCLOSURE_HEADER = [
    "排名",
    "承办单位",
    "受理量",
    "办结量",
    "办结率",
    "按期办结率",
    "满意率",
    "响应率",
    "综合得分",
]


def disclosure_xlsx(report: Disclosure) -> bytes:
    wb = Workbook()
    ws = wb.active
    ws.title = "承办单位公示"
    ws.append([f"12345 热线承办单位办理情况公示（{report.week_start} 至 {report.week_end}）"])
    ws["A1"].font = Font(bold=True, size=14)
    ws.append(DISCLOSURE_HEADER)
    for cell in ws[2]:
        cell.font = Font(bold=True)
    for r in report.rows:
        ws.append(
            [
                r.rank,
                safe_cell(r.department),
                r.received,
                r.closed,
                r.closure_rate,
                r.on_time_rate,
                r.satisfaction_rate,
                r.response_rate,
                r.composite,
            ]
        )
        for cell in ws[ws.max_row][4:]:
            cell.number_format = "0.0%"
    for col, width in zip("ABCDEFGHI", (6, 28, 10, 10, 10, 12, 10, 10, 10), strict=True):
        ws.column_dimensions[col].width = width
    out = BytesIO()
    wb.save(out)
    return out.getvalue()


def _filename_header(name: str) -> str:
    return f"attachment; filename*=UTF-8''{quote(name)}"


async def audit_export(call: Call[Any], action: str, name: str, rows: int, **detail: Any) -> None:
    """One console audit row per download: who, from where, which file, how many rows and ``detail``."""
    async with call.db() as db:
        await record_audit(
            db, call.origin, action, name[:128], call.now, role=call.user.role, rows=rows, **detail
        )
        await db.commit()


@routes.api(
    "GET",
    "/api/v1/reports/disclosure",
    summary="承办单位周公示数据",
    roles=DISCLOSURE_ROLES,
    query=WeekQuery,
    response=Disclosure,
)
async def disclosure_api(call: Call[None]) -> Disclosure:
    return await disclosure(call, call.query.week)


@routes.page(
    "GET",
    "/reports",
    title="统计报表",
    roles=EXPORT_ROLES,
    nav="报表",
    template="reports.html",
    name="reports_page",
)
async def reports_page(call: Call[None]) -> dict[str, Any]:
    tz = ZoneInfo(call.app[keys.SETTINGS].timezone)
    last_week = call.now.astimezone(tz).date() - timedelta(days=7)
    return {
        "can_disclose": call.role in DISCLOSURE_ROLES,
        "last_week": week_of(last_week)[0],
        "department_fixed": call.scope.department,
    }


@routes.page(
    "GET",
    "/reports/disclosure",
    title="承办单位办理情况公示",
    roles=DISCLOSURE_ROLES,
    query=WeekQuery,
    template="report_disclosure.html",
    name="disclosure_page",
)
async def disclosure_page(call: Call[None]) -> dict[str, Any]:
    report = await disclosure(call, call.query.week)
    return {"report": report, "rate": _rate, "week": report.week_start.isoformat()}


@routes.page(
    "GET",
    "/reports/disclosure.xlsx",
    title="承办单位办理情况公示（Excel）",
    roles=DISCLOSURE_ROLES,
    query=WeekQuery,
    name="disclosure_xlsx",
)
async def disclosure_xlsx_download(call: Call[None]) -> web.Response:
    report = await disclosure(call, call.query.week)
    body = await asyncio.to_thread(disclosure_xlsx, report)
    name = f"承办单位公示-{report.week_start:%Y%m%d}-{report.week_end:%Y%m%d}.xlsx"
    await audit_export(
        call, "export.disclosure", name, len(report.rows), week=report.week_start.isoformat()
    )
    return web.Response(
        body=body, headers={"Content-Type": XLSX, "Content-Disposition": _filename_header(name)}
    )


# --- ticket export --------------------------------------------------------------------------------------------

EXPORT_HEADER = [
    "工单号",
    "受理时间",
    "状态",
    "渠道",
    "类型",
    "紧急程度",
    "诉求分类",
    "区县",
    "来电号码",
    "来电人",
    "诉求摘要",
    "主办单位",
    "办理时限",
    "重复件",
    "预警",
]


class TicketExport:
    """A write-only workbook of ticket rows, built off the event loop into a spooled temporary file."""

    def __init__(self, role: Role, tz: ZoneInfo, names: dict[str, str]) -> None:
        self.role, self.tz, self.names = role, tz, names
        self.wb = Workbook(write_only=True)
        self.ws = self.wb.create_sheet("工单")
        self.ws.append(EXPORT_HEADER)
        self.rows = 0

    def _local(self, at: datetime | None) -> str:
        return at.astimezone(self.tz).strftime("%Y-%m-%d %H:%M") if at else ""

    def add(self, items: list[Any]) -> None:
        for t in items:
            dept = self.names.get(t.lead_department or "", t.lead_department or "")
            caller = caller_of(
                t.caller_phone, t.caller_name, self.role, confidential=t.confidential
            )
            self.ws.append(
                [
                    safe_cell(v)
                    for v in (
                        t.ticket_no,
                        self._local(t.created_at),
                        t.state_label,
                        CHANNEL_LABELS.get(t.channel, t.channel),
                        t.kind,
                        URGENCY_LABELS.get(t.urgency, t.urgency),
                        t.category or "",
                        t.district or "",
                        caller.phone,
                        caller.name or "",
                        t.summary,
                        dept,
                        self._local(t.due_at),
                        "是" if t.is_repeat else "",
                        WARNING_LABELS.get(t.warning or "", ""),
                    )
                ]
            )
        self.rows += len(items)

    def discard(self) -> None:
        """Close the sheet's writer of an export that will not be saved (a refused query)."""
        self.ws.close()

    def save(self) -> IO[bytes]:
        out = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # closed by the caller
        self.wb.save(out)
        out.seek(0)
        return out


EARLIEST, LATEST = date(1900, 1, 1), date(9998, 12, 31)  # dates beyond these mean "no bound"


def _export_filters(call: Call[Any], q: TicketQuery) -> dict[str, Any]:
    """The filters an export ran with, as the audit keeps them: the department and grid actually applied, and
    a searched phone number masked."""
    asked = q.model_dump(mode="json", exclude_none=True, exclude={"limit", "cursor"})
    if "phone" in asked:
        asked["phone"] = pii.mask_phone(asked["phone"])
    return asked | {k: v for k, v in scope_filters(call, q.department).items() if v is not None}


def _created_range(q: TicketQuery, tz: ZoneInfo) -> tuple[datetime | None, datetime | None]:
    """``[created_from 00:00, the day after created_to 00:00)`` in local time."""
    start = end = None
    if q.created_from and q.created_from > EARLIEST:
        start = datetime.combine(q.created_from, time(), tz)
    if q.created_to and q.created_to < LATEST:
        end = datetime.combine(q.created_to + timedelta(days=1), time(), tz)
    return start, end


async def _fill(
    call: Call[Any],
    q: TicketQuery,
    export: TicketExport,
    created_from: datetime | None,
    created_to: datetime | None,
) -> bool:
    """Add the tickets the query selects, page by page, up to the export limit; True when it cut the list."""
    settings = call.app[keys.SETTINGS]
    cursor, truncated = None, False
    while not call.scope.nothing:
        limit = min(MAX_LIMIT, settings.cockpit.export_max_rows - export.rows)
        async with call.db() as db:
            with field_errors():
                page = await list_tickets(
                    db,
                    state=q.state.value if q.state else None,
                    **scope_filters(call, q.department),
                    caller_phone=q.phone or None,
                    confidential=confidential_filter(call, q.phone),
                    text=q.text,
                    ticket_no=q.ticket_no,
                    district=q.district,
                    category=q.category,
                    warning=q.warning,
                    created_from=created_from,
                    created_to=created_to,
                    limit=limit,
                    cursor=cursor,
                )
        await asyncio.to_thread(export.add, page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
        if export.rows >= settings.cockpit.export_max_rows:
            truncated = True
            break
    return truncated


@routes.page(
    "GET",
    "/reports/tickets.xlsx",
    title="工单导出（Excel）",
    roles=EXPORT_ROLES,
    query=TicketQuery,
    name="tickets_xlsx",
    errors=(422,),
)
async def tickets_xlsx(call: Call[None]) -> web.StreamResponse:
    q: TicketQuery = call.query
    settings = call.app[keys.SETTINGS]
    tz = ZoneInfo(settings.timezone)
    created_from, created_to = _created_range(q, tz)
    async with call.db() as db:
        names = await department_names(db)
    export = TicketExport(call.role, tz, names)
    try:
        truncated = await _fill(call, q, export, created_from, created_to)
    except BaseException:
        export.discard()
        raise
    file = await asyncio.to_thread(export.save)
    try:
        name = f"工单导出-{call.now.astimezone(tz):%Y%m%d-%H%M}.xlsx"
        await audit_export(
            call,
            "export.tickets",
            name,
            export.rows,
            truncated=truncated,
            filters=_export_filters(call, q),
        )
        response = web.StreamResponse(
            headers={
                **SECURITY_HEADERS,
                "Content-Type": XLSX,
                "Content-Disposition": _filename_header(name),
                "X-Export-Rows": str(export.rows),
                "X-Export-Truncated": "true" if truncated else "false",
            }
        )
        await response.prepare(call.request)
        while chunk := await asyncio.to_thread(file.read, CHUNK):
            await response.write(chunk)
        await response.write_eof()
    finally:
        file.close()
    return response


# --- call service levels --------------------------------------------------------------------------------------


class CallsReportQuery(Model):
    date_from: date | None = Field(
        None, ge=date(2000, 1, 1), le=date(2100, 12, 31), description="开始日期（含）；默认本月1日"
    )
    date_to: date | None = Field(
        None, ge=date(2000, 1, 1), le=date(2100, 12, 31), description="结束日期（含）；默认今天"
    )
    by: Literal["hour", "day", "queue", "agent"] | None = Field(
        None, description="分组：小时、日、队列、坐席"
    )


def calls_xlsx(result: dict[str, Any], first: date, last: date) -> bytes:
    """The figures as one sheet: a title, the column titles, the total, then one row per group."""
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("话务服务水平")
    ws.append(
        [
            f"12345 热线话务服务水平（{first} 至 {last}，及时接通：等待不超过 {result['service_level_s']:g} 秒）"
        ]
    )
    ws.append(["分组", *(label for _, label in sl.COLUMNS)])
    for label, figures in [
        ("合计", result["total"]),
        *((g["label"], g) for g in result.get("groups", [])),
    ]:
        ws.append(
            [safe_cell(label), *(_figure_cell(ws, key, figures[key]) for key, _ in sl.COLUMNS)]
        )
    out = BytesIO()
    wb.save(out)
    return out.getvalue()


def _figure_cell(ws: Any, key: str, value: Any) -> Any:
    if value is None or not key.endswith("_rate"):
        return value
    cell = WriteOnlyCell(ws, value=value)
    cell.number_format = "0.0%"
    return cell


@routes.page(
    "GET",
    "/reports/calls.xlsx",
    title="话务服务水平（Excel）",
    roles=DISCLOSURE_ROLES,
    query=CallsReportQuery,
    name="calls_xlsx",
    errors=(422,),
)
async def calls_xlsx_download(call: Call[None]) -> web.Response:
    q: CallsReportQuery = call.query
    settings = call.app[keys.SETTINGS]
    tz = ZoneInfo(settings.timezone)
    today = call.now.astimezone(tz).date()
    first, last = q.date_from or today.replace(day=1), q.date_to or today
    async with call.db() as db:
        with field_errors():
            start, end = day_range(first, last, tz)
            result = await sl.service_levels(db, start, end, settings=settings, by=q.by)
    body = await asyncio.to_thread(calls_xlsx, result, first, last)
    name = f"话务服务水平-{first:%Y%m%d}-{last:%Y%m%d}.xlsx"
    await audit_export(
        call,
        "export.calls",
        name,
        1 + len(result.get("groups", [])),
        filters={"from": first.isoformat(), "to": last.isoformat(), "by": q.by},
    )
    return web.Response(
        body=body, headers={"Content-Type": XLSX, "Content-Disposition": _filename_header(name)}
    )
