"""Leader answering days (领导接听日): the schedule page and API, and the leader's call view.

The schedule (``ivr.leaders``) is edited by administrators and dispatchers (the centre's duty office) and read
by leaders. A window names the PBX whose controller adds the leader; the page offers a choice when more than one
is known (:func:`known_pbxes`), otherwise a window goes to this console's ``callcontrol.pbx`` ("" with one
PBX).

The call view shows a leader the call they are on now — found in the call log by the console
account the answering window names (names are not unique; accounts are) — with the caller's number
masked (leaders never need the full number: a ticket they open takes it from the call log), the caller's
earlier tickets, and a ticket form on channel ``leader-line`` (领导专线).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import Field, field_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agent_console import keys
from agent_console.auth import find_user
from agent_console.errors import NotFound, console_error
from agent_console.masking import mask_phone
from agent_console.models import ConsoleController
from agent_console.roles import Role
from agent_console.routing import Call, RouteTable, render_page
from agent_console.schemas import Model
from agent_console.views.session import see_other
from ivr import leaders as schedule
from ivr.calllog import link_ticket
from ivr.models import CallRecord, LeaderShift
from tickets.errors import TicketError
from tickets.queries import caller_history
from tickets.services import Actor, TicketDraft, create_ticket
from tickets.text import Line

routes = RouteTable("leaders")
VIEWERS = frozenset({Role.LEADER, Role.ADMIN, Role.DISPATCHER})
EDITORS = frozenset({Role.ADMIN, Role.DISPATCHER})
LINE_ROLES = frozenset({Role.LEADER, Role.ADMIN})
HISTORY_SIZE = 10
PAST_DAYS, FUTURE_DAYS = 7, 60  # the page shows this window around today


class ShiftIn(Model):
    day: date = Field(description="接听日期")
    start: time = Field(description="开始时间（当地时间，HH:MM）")
    end: time = Field(description="结束时间（当地时间，HH:MM）")
    leader_name: Line = Field(min_length=1, max_length=64, description="领导姓名")
    title: Line = Field("", max_length=64, description="职务")
    department: Line = Field("", max_length=128, description="所在单位")
    interface: Line = Field(min_length=1, max_length=128, description="接听终端，如 PJSIP/6009")
    account: Line = Field(
        "",
        max_length=64,
        description="领导的控制台账号（用户名）：其「领导接听」页显示本时段的来电",
    )
    pbx: Line | None = Field(
        None,
        max_length=schedule.PBX_MAX,
        description="由哪台PBX的控制器将领导加入队列（callcontrol.pbx）；不填为本控制台所在PBX（单台为空）",
    )

    @field_validator("start", "end")
    @classmethod
    def _wall_clock(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("时间不带时区（按热线所在地的当地时间）")
        return value


class ShiftOut(Model):
    id: int
    day: date
    start: time
    end: time
    leader_name: str
    title: str
    department: str
    interface: str
    account: str
    pbx: str = Field(description="接听所在PBX（单台为空）")
    on_duty: bool = Field(description="此刻是否在接听时段内")


class ShiftList(Model):
    shifts: list[ShiftOut]
    pbxes: list[str] = Field(
        description='可选的PBX：本控制台的、已登记控制器的与所列安排的（单台为 [""]）'
    )


class ShiftQuery(Model):
    day_from: date | None = Field(None, description="起始日期（含）")
    day_to: date | None = Field(None, description="结束日期（含）")


class ShiftForm(Model):
    day: str = ""
    start: str = ""
    end: str = ""
    leader_name: str = ""
    title: str = ""
    department: str = ""
    interface: str = ""
    account: str = ""
    pbx: str | None = None  # the page offers it only when several PBXs are known


def _tz(call: Call[Any]) -> ZoneInfo:
    return ZoneInfo(call.app[keys.SETTINGS].timezone)


def shift_out(row: LeaderShift, now: datetime, tz: ZoneInfo) -> ShiftOut:
    local = now.astimezone(tz)
    on_duty = row.day == local.date() and row.start <= local.time().replace(tzinfo=None) < row.end
    return ShiftOut(
        id=row.id,
        day=row.day,
        start=row.start,
        end=row.end,
        leader_name=row.leader_name,
        title=row.title,
        department=row.department,
        interface=row.interface,
        account=row.account,
        pbx=row.pbx,
        on_duty=on_duty,
    )


async def known_pbxes(db: AsyncSession, own: str, shifts: Iterable[LeaderShift] = ()) -> list[str]:
    """The PBXs a window may name, sorted: this console's own (``own``, its ``callcontrol.pbx``), every PBX whose
    controller has announced itself on the command channel, and those ``shifts`` name."""
    announced = await db.scalars(select(ConsoleController.pbx))
    return sorted({own, *announced, *(s.pbx for s in shifts)})


def _shift_id(call: Call[Any]) -> int:
    raw = call.request.match_info["shift_id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise NotFound("没有该领导接听安排")
    return int(raw)


async def _add(call: Call[Any], body: ShiftIn) -> LeaderShift:
    async with call.db() as db:
        shift = schedule.validate_shift(
            schedule.ShiftInput(
                body.day,
                body.start,
                body.end,
                body.leader_name,
                body.interface,
                body.title,
                body.department,
                body.account,
                call.app[keys.SETTINGS].callcontrol.pbx if body.pbx is None else body.pbx,
            )
        )
        if shift.account:
            user = await find_user(db, shift.account)
            if user is None or not user.active or Role(user.role) not in LINE_ROLES:
                raise schedule.InvalidShift(f"控制台账号 {shift.account!r} 不存在或不是领导账号")
        return await schedule.add_shift(db, shift, now=call.now)


@routes.api(
    "GET",
    "/api/v1/leader-shifts",
    summary="领导接听日安排",
    roles=VIEWERS,
    query=ShiftQuery,
    response=ShiftList,
)
async def shifts_api(call: Call[None]) -> ShiftList:
    async with call.db() as db:
        rows = await schedule.list_shifts(
            db, day_from=call.query.day_from, day_to=call.query.day_to
        )
        pbxes = await known_pbxes(db, call.app[keys.SETTINGS].callcontrol.pbx, rows)
    tz = _tz(call)
    return ShiftList(shifts=[shift_out(r, call.now, tz) for r in rows], pbxes=pbxes)


@routes.api(
    "POST",
    "/api/v1/leader-shifts",
    summary="新增领导接听安排",
    roles=EDITORS,
    request=ShiftIn,
    response=ShiftOut,
    status=201,
    errors=(409,),
)
async def shift_create_api(call: Call[ShiftIn]) -> ShiftOut:
    return shift_out(await _add(call, call.body), call.now, _tz(call))


@routes.api(
    "DELETE",
    "/api/v1/leader-shifts/{shift_id}",
    summary="取消领导接听安排",
    roles=EDITORS,
    response=ShiftOut,
)
async def shift_delete_api(call: Call[None]) -> ShiftOut:
    async with call.db() as db:
        row = await schedule.remove_shift(db, _shift_id(call))
    return shift_out(row, call.now, _tz(call))


async def _schedule_page(
    call: Call[Any], *, error: str | None = None, status: int = 200
) -> web.Response:
    tz = _tz(call)
    today = call.now.astimezone(tz).date()
    async with call.db() as db:
        rows = await schedule.list_shifts(
            db,
            day_from=today - timedelta(days=PAST_DAYS),
            day_to=today + timedelta(days=FUTURE_DAYS),
        )
        own = call.app[keys.SETTINGS].callcontrol.pbx
        pbxes = await known_pbxes(db, own, rows)
    context = {
        "shifts": [shift_out(r, call.now, tz) for r in rows],
        "pbxes": pbxes if len(pbxes) > 1 else [],  # a choice only when there is one to make
        "own_pbx": own,
        "today": today,
        "error": error,
        "form": call.form if error else {},
        "can_edit": call.role in EDITORS,
        "added": call.request.query.get("added"),
    }
    return render_page(call, "leader_schedule.html", context, status=status)


@routes.page(
    "GET", "/leaders", title="领导接听日", roles=VIEWERS, nav="领导接听日", name="leaders_page"
)
async def leaders_page(call: Call[None]) -> web.Response:
    return await _schedule_page(call)


@routes.page(
    "POST",
    "/leaders",
    title="领导接听日",
    roles=EDITORS,
    form=ShiftForm,
    name="leaders_add",
    errors=(409, 422),
)
async def leaders_add(call: Call[ShiftForm]) -> web.Response:
    if call.body is None:
        return await _schedule_page(
            call, error=call.invalid.message if call.invalid else "输入有误", status=422
        )
    try:
        body = ShiftIn.model_validate(call.body.model_dump())
    except ValueError:
        return await _schedule_page(
            call, error="请填写日期、开始与结束时间、领导姓名和接听终端", status=422
        )
    try:
        row = await _add(call, body)
    except schedule.LeaderScheduleError as exc:
        refusal = console_error(exc)
        return await _schedule_page(call, error=refusal.message, status=refusal.status)
    return see_other(f"/leaders?added={row.id}")


@routes.page(
    "POST",
    "/leaders/{shift_id}/delete",
    title="取消领导接听安排",
    roles=EDITORS,
    name="leaders_delete",
    errors=(404,),
)
async def leaders_delete(call: Call[None]) -> web.Response:
    async with call.db() as db:
        await schedule.remove_shift(db, _shift_id(call))
    return see_other("/leaders")


# --- the leader's call view -----------------------------------------------------------------------------------


class LineCall(Model):
    call_id: str = Field(description="通话编号（Asterisk Uniqueid）")
    caller: str = Field(description="来电号码（按角色脱敏）")
    started_at: datetime
    answered_at: datetime | None
    ticket_no: str | None = Field(description="本通电话已建的工单")


class EarlierTicket(Model):
    ticket_no: str
    created_at: datetime
    state_label: str
    kind: str
    category: str | None
    summary: str
    is_repeat: bool


class LineView(Model):
    call: LineCall | None = Field(description="正在接听的来电；为空表示当前没有")
    earlier: list[EarlierTicket]


class LineTicketIn(Model):
    call_id: str = Field(min_length=1, max_length=64, description="正在接听的通话编号")
    content: str = Field(min_length=1, max_length=4000)
    kind: Literal["咨询", "求助", "投诉", "举报", "建议", "表扬"] = "投诉"
    caller_name: str = Field("", max_length=50)
    address: str = Field("", max_length=200)
    district: str = Field("", max_length=50)
    street: str = Field("", max_length=50)
    category: str = Field("", max_length=100)


class LineTicketOut(Model):
    ticket_no: str
    state: str


async def current_call(db: AsyncSession, account: str) -> CallRecord | None:
    """The newest answered, unfinished call the leader with this console account took (the call log written by
    the AMI controller)."""
    return await db.scalar(
        select(CallRecord)
        .where(
            CallRecord.leader_account == account,
            CallRecord.answered_at.is_not(None),
            CallRecord.ended_at.is_(None),
        )
        .order_by(CallRecord.answered_at.desc())
        .limit(1)
    )


async def _line_view(call: Call[Any]) -> LineView:
    async with call.db() as db:
        record = await current_call(db, call.user.username)
        earlier = (
            await caller_history(db, record.caller_number, HISTORY_SIZE)
            if record and record.caller_number
            else []
        )
    if record is None:
        return LineView(call=None, earlier=[])
    return LineView(
        call=LineCall(
            call_id=record.uniqueid,
            caller=mask_phone(record.caller_number, call.role),
            started_at=record.started_at,
            answered_at=record.answered_at,
            ticket_no=record.ticket_no,
        ),
        earlier=[
            EarlierTicket(
                ticket_no=t.ticket_no,
                created_at=t.created_at,
                state_label=t.state_label,
                kind=t.kind,
                category=t.category,
                summary=t.summary,
                is_repeat=t.is_repeat,
            )
            for t in earlier
        ],
    )


@routes.api(
    "GET",
    "/api/v1/leader-line/current",
    summary="领导接听：当前来电与来电人历史工单",
    roles=LINE_ROLES,
    response=LineView,
)
async def line_api(call: Call[None]) -> LineView:
    return await _line_view(call)


async def _line_ticket(call: Call[Any], body: LineTicketIn) -> LineTicketOut:
    async with call.db() as db:
        record = await current_call(db, call.user.username)
        if record is None or record.uniqueid != body.call_id:
            raise NotFound("该来电已结束或不是您正在接听的来电")
        draft = TicketDraft(
            channel="leader-line",
            caller_phone=record.caller_number,
            content=body.content,
            kind=body.kind,
            caller_name=body.caller_name,
            address=body.address,
            district=body.district,
            street=body.street,
            category=body.category,
            call_id=record.uniqueid,
            leader_name=call.user.display_name,
            recording=record.recording or "",
        )
        ticket = await create_ticket(
            db,
            draft,
            Actor(call.user.display_name, call.role.value),
            now=call.now,
            settings=call.app[keys.SETTINGS],
        )
        await link_ticket(db, record.uniqueid, ticket.ticket_no)
    return LineTicketOut(ticket_no=ticket.ticket_no, state=ticket.state)


@routes.api(
    "POST",
    "/api/v1/leader-line/tickets",
    summary="领导接听：为当前来电建工单（领导专线渠道）",
    roles=LINE_ROLES,
    request=LineTicketIn,
    response=LineTicketOut,
    status=201,
)
async def line_ticket_api(call: Call[LineTicketIn]) -> LineTicketOut:
    return await _line_ticket(call, call.body)


class LineForm(Model):
    call_id: str = ""
    content: str = ""
    kind: str = "投诉"
    caller_name: str = ""
    address: str = ""
    district: str = ""
    street: str = ""
    category: str = ""


async def _line_page(
    call: Call[Any], *, error: str | None = None, status: int = 200
) -> web.Response:
    view = await _line_view(call)
    context = {
        "view": view,
        "error": error,
        "form": call.form if error else {},
        "created": call.request.query.get("created"),
        "kinds": ["咨询", "求助", "投诉", "举报", "建议", "表扬"],
    }
    return render_page(call, "leader_line.html", context, status=status)


@routes.page(
    "GET",
    "/leader-line",
    title="领导接听",
    roles=LINE_ROLES,
    nav="领导接听",
    name="leader_line_page",
)
async def leader_line_page(call: Call[None]) -> web.Response:
    return await _line_page(call)


@routes.page(
    "POST",
    "/leader-line",
    title="领导接听",
    roles=LINE_ROLES,
    form=LineForm,
    name="leader_line_ticket",
    errors=(404, 422),
)
async def leader_line_ticket(call: Call[LineForm]) -> web.Response:
    if call.body is None:
        return await _line_page(
            call, error=call.invalid.message if call.invalid else "输入有误", status=422
        )
    try:
        created = await _line_ticket(call, LineTicketIn.model_validate(call.body.model_dump()))
    except ValueError:
        return await _line_page(call, error="请填写诉求内容并选择诉求类型", status=422)
    except (TicketError, NotFound) as exc:
        refusal = console_error(exc)
        return await _line_page(call, error=refusal.message, status=refusal.status)
    return see_other(f"/leader-line?created={created.ticket_no}")
