"""Tickets for every role: search, the detail page with its audit trail, the loop's actions (JSON and forms).

The staff API lives under ``/api/v1/console/tickets`` (``/api/v1/tickets`` is the citizens' API, see
``agent_console.views.public``). An action names the version it was read at; a stale one is a 409 and
changes nothing.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from agent_console.desk.files import attachments_dir, file_response
from agent_console.desk.schemas import ActionRequest, TicketList, TicketOut, TicketQuery
from agent_console.desk.services import services_of, settings_of, setup_ticket_services
from agent_console.desk.view_models import (
    TICKET_READERS,
    actor_of,
    audit_view,
    confidential_filter,
    field_errors,
    local,
    may_see,
    page_out,
    scope_filters,
    ticket_out,
    visible_ticket,
)
from agent_console.errors import ConsoleError, InvalidInput, NotFound, console_error, invalid_input
from agent_console.roles import Role
from agent_console.routing import Call, RouteTable, render_page
from agent_console.schemas import Model
from agent_console.ticket_feed import setup_ticket_feed
from agent_console.views.callcontrol import TRANSFER_READERS, ticket_transfers
from agent_console.views.session import next_page, see_other
from config.errors import HotlineError
from ivr.messages import messages_folder
from tickets import errors as ticket_errors
from tickets import models as m
from tickets.attachments import get_attachment
from tickets.errors import TicketError
from tickets.queries import list_tickets
from tickets.services import CONFIDENTIAL_LIFTERS, CONFIDENTIAL_SETTERS, apply, merge_candidates
from tickets.states import STATE_LABELS, State
from tickets.supervision import department_names
from tickets.voice_messages import NO_SPEECH, TRANSCRIPTIONS, message_of

routes = RouteTable("tickets")
routes.on_setup(setup_ticket_services)
routes.on_setup(setup_ticket_feed)  # live state changes on the list and the ticket page

ACTION_FIELDS: dict[str, tuple[str, ...]] = {
    "dispatch": ("lead_department", "co_departments", "mode"),
    "reply": ("reply",),
    "request_extension": ("until",),
    "approve_extension": ("until",),
}
DISPATCH_MODES = {"direct": "直派", "joint": "双派", "first_receiver": "首接负责"}
MERGERS = frozenset({Role.DISPATCHER, Role.ADMIN})  # 并单 (agent_console.views.ticket_merge)
# the states of a ticket that may take duplicates (并单 main ticket)
MAIN_STATES = frozenset(State) - {State.CLOSED, State.WITHDRAWN, State.MERGED}


def _day_start(value: Any, tz: ZoneInfo) -> datetime | None:
    return None if value is None else datetime.combine(value, time(), tz)


async def search(call: Call[Any], q: TicketQuery) -> TicketList:
    if (
        call.scope.nothing
    ):  # a handler without a department (a grid worker without a grid) sees no ticket
        return TicketList(tickets=[], next_cursor=None)
    tz = ZoneInfo(settings_of(call.app).timezone)
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
                created_from=_day_start(q.created_from, tz),
                created_to=_day_start(q.created_to + timedelta(days=1), tz)
                if q.created_to
                else None,
                limit=q.limit,
                cursor=q.cursor,
            )
    return page_out(page, call.user.role)


async def perform(
    call: Call[Any], db: AsyncSession, ticket_no: str, req: ActionRequest
) -> m.Ticket:
    """Apply one action for the logged-in user on a ticket they may see (404 otherwise). Only a restricted
    user's ticket is read first: for the others ``apply``'s own read is the check."""
    fields = {
        k: getattr(req, k) for k in ACTION_FIELDS.get(req.action, ()) if getattr(req, k) is not None
    }
    if not call.scope.unrestricted:
        await visible_ticket(call, db, ticket_no)
    try:
        with field_errors():
            return await apply(
                db,
                ticket_no,
                req.action,
                actor_of(call),
                expected_version=req.expected_version,
                note=req.note,
                now=call.now,
                settings=settings_of(call.app),
                **fields,
            )
    except ticket_errors.NotFound:
        raise NotFound(f"工单 {ticket_no} 不存在") from None


# --- JSON API ---------------------------------------------------------------------------------------------


@routes.api(
    "GET",
    "/api/v1/console/tickets",
    summary="工单查询（按状态、单位、号码、内容、时间、预警筛选）",
    roles=TICKET_READERS,
    query=TicketQuery,
    response=TicketList,
)
async def tickets_api_list(call: Call[None]) -> TicketList:
    return await search(call, call.query)


@routes.api(
    "GET",
    "/api/v1/console/tickets/{ticket_no}",
    summary="工单详情（含审计记录；查看留痕）",
    roles=TICKET_READERS,
    response=TicketOut,
)
async def tickets_api_get(call: Call[None]) -> TicketOut:
    ticket_no = call.request.match_info["ticket_no"]
    async with call.db() as db:
        out = await ticket_out(call, db, await visible_ticket(call, db, ticket_no))
        await audit_view(call, db, ticket_no)
    return out


@routes.api(
    "POST",
    "/api/v1/console/tickets/{ticket_no}/actions",
    summary="工单操作（审核、派单、签收、反馈、核验、延期、退回…）",
    roles=TICKET_READERS,
    request=ActionRequest,
    response=TicketOut,
    errors=(409,),
)
async def tickets_api_act(call: Call[ActionRequest]) -> TicketOut:
    ticket_no = call.request.match_info["ticket_no"]
    async with call.db() as db:
        ticket = await perform(
            call, db, ticket_no, call.body
        )  # shown even if it just left the user's scope (退回)
        return await ticket_out(call, db, ticket)


@routes.api(
    "GET",
    "/api/v1/console/tickets/{ticket_no}/attachments/{attachment_id}",
    summary="下载反馈附件",
    roles=TICKET_READERS,
)
async def tickets_api_attachment(call: Call[None]) -> web.StreamResponse:
    ticket_no = call.request.match_info["ticket_no"]
    async with call.db() as db:
        await visible_ticket(call, db, ticket_no)
        attachment_id = call.request.match_info["attachment_id"]
        if not attachment_id.isdigit():
            raise NotFound("找不到该附件")
        row = await get_attachment(db, ticket_no, int(attachment_id))
    return file_response(
        attachments_dir(settings_of(call.app)), row.sha256, row.file_name, row.content_type
    )


@routes.api(
    "GET",
    "/api/v1/console/tickets/{ticket_no}/message",
    summary="收听语音留言（留言工单的录音）",
    roles=TICKET_READERS,
)
async def tickets_api_message(call: Call[None]) -> web.StreamResponse:
    ticket_no = call.request.match_info["ticket_no"]
    async with call.db() as db:
        ticket = await visible_ticket(call, db, ticket_no)
        message = await message_of(db, ticket.id)
    if message is None:
        raise NotFound("该工单没有语音留言")
    path = messages_folder(settings_of(call.app)) / Path(message.file).name
    if not path.is_file():
        raise NotFound("语音留言的录音文件不存在")
    return web.FileResponse(
        path,
        headers={  # the file name holds the caller's number: never shown
            "Content-Type": "audio/wav",
            "Content-Disposition": f"inline; filename=message-{ticket_no}.wav",
            "Cache-Control": "private, no-store",
        },
    )


# --- pages ------------------------------------------------------------------------------------------------


@routes.page(
    "GET",
    "/tickets",
    title="工单查询",
    roles=TICKET_READERS,
    nav="工单查询",
    query=TicketQuery,
    template="tickets_list.html",
    name="tickets_page",
)
async def tickets_page(call: Call[None]) -> dict[str, Any]:
    result = await search(call, call.query)
    return {
        "result": result,
        "q": call.query,
        "states": STATE_LABELS,
        "tz": ZoneInfo(settings_of(call.app).timezone),
        "local": local,
        "query_string": urlencode([(k, v) for k, v in call.request.query.items() if k != "cursor"]),
    }


class ActionForm(Model):
    """An action posted from a page; ``until`` is a local date (YYYY-MM-DD), co-handlers comma-separated."""

    action: str = Field(max_length=32)
    expected_version: int = Field(ge=1)
    note: str = Field(default="", max_length=m.NOTE_MAX)
    lead_department: str = Field(default="", max_length=m.DEPT_CODE_MAX)
    co_departments: str = Field(default="", max_length=400)
    mode: str = Field(default="", max_length=16)
    reply: str = Field(default="", max_length=m.ANSWER_MAX)
    until: str = Field(default="", max_length=32)
    next: str = Field(default="", max_length=300)

    def as_request(self, tz: ZoneInfo) -> ActionRequest:
        until = None
        if self.until:
            try:
                parsed = datetime.fromisoformat(self.until)
            except ValueError:
                raise InvalidInput(
                    "延期日期格式不正确（应为 YYYY-MM-DD）",
                    details=[{"field": "until", "code": "invalid", "message": "格式不正确"}],
                ) from None
            until = parsed.replace(tzinfo=tz) if parsed.tzinfo is None else parsed
            if len(self.until) <= 10:  # a bare date means the end of that working day
                until = until.replace(hour=18)
        co = [c.strip() for c in self.co_departments.replace("、", ",").split(",") if c.strip()]
        data = {
            "action": self.action,
            "expected_version": self.expected_version,
            "note": self.note,
            "lead_department": self.lead_department or None,
            "co_departments": co or None,
            "mode": self.mode or None,
            "reply": self.reply or None,
            "until": until,
        }
        try:
            return ActionRequest.model_validate(data)
        except ValidationError as exc:
            raise invalid_input(exc) from None


async def detail_context(call: Call[Any], ticket_no: str) -> dict[str, Any]:
    settings = settings_of(call.app)
    async with call.db() as db:
        ticket = await visible_ticket(call, db, ticket_no)
        out = await ticket_out(call, db, ticket)
        departments = await department_names(db)
        message = await message_of(db, ticket.id) if ticket.channel == "message" else None
        may_merge = call.role in MERGERS and State(ticket.state) in MAIN_STATES
        candidates = await merge_candidates(db, ticket) if may_merge else []
        transfers = await ticket_transfers(db, ticket_no) if call.role in TRANSFER_READERS else []
        await audit_view(call, db, ticket_no)
    suggestions = []
    if any(a.action == "dispatch" for a in out.actions):
        services = services_of(call.app)
        if services.suggester is not None:
            suggestions = await services.suggest(ticket.content, district=ticket.district)
    return {
        "t": out,
        "tz": ZoneInfo(settings.timezone),
        "local": local,
        "departments": departments,
        "state_names": {s.value: label for s, label in STATE_LABELS.items()},
        "suggestions": suggestions,
        "modes": DISPATCH_MODES,
        "error": None,
        "voice_message": None
        if message is None
        else {
            "url": f"/api/v1/console/tickets/{ticket_no}/message",
            "no_speech": message.transcription == NO_SPEECH,
            "transcription": TRANSCRIPTIONS.get(message.transcription, message.transcription),
        },
        "may_supervise": call.role in {Role.DISPATCHER, Role.LEADER, Role.ADMIN}
        and State(ticket.state) not in (State.CLOSED, State.WITHDRAWN),
        "may_upload": call.role == Role.HANDLER and any(a.action == "reply" for a in out.actions),
        "may_merge": may_merge,
        "merge_candidates": candidates,
        "transfers": transfers,
        "may_confide": call.role in CONFIDENTIAL_SETTERS and not out.confidential,
        "may_lift_confidential": call.role in CONFIDENTIAL_LIFTERS and out.confidential,
    }


def status_of(_call: Call[Any], exc: ConsoleError | HotlineError) -> int:
    """The HTTP status the API would answer for ``exc`` (:func:`agent_console.errors.console_error`)."""
    return console_error(exc).status


async def render_detail(
    call: Call[Any], ticket_no: str, *, error: str | None = None, status: int = 200
) -> web.Response:
    context = await detail_context(call, ticket_no) | {"error": error}
    return render_page(call, "ticket_detail.html", context, status=status)


@routes.page(
    "GET", "/tickets/{ticket_no}", title="工单详情", roles=TICKET_READERS, name="ticket_page"
)
async def ticket_page(call: Call[None]) -> web.Response:
    return await render_detail(call, call.request.match_info["ticket_no"])


@routes.page(
    "POST",
    "/tickets/{ticket_no}/act",
    title="工单操作",
    roles=TICKET_READERS,
    form=ActionForm,
    name="ticket_act",
    errors=(404, 409, 422),
)
async def ticket_act(call: Call[ActionForm]) -> web.Response:
    ticket_no = call.request.match_info["ticket_no"]
    try:
        if call.invalid is not None:
            raise call.invalid
        req = call.body.as_request(ZoneInfo(settings_of(call.app).timezone))
        async with call.db() as db:
            ticket = await perform(call, db, ticket_no, req)
    except (ConsoleError, TicketError) as exc:
        async with call.db() as db:
            await visible_ticket(call, db, ticket_no)  # never tell an outsider more than 404
        return await render_detail(call, ticket_no, error=exc.message, status=status_of(call, exc))
    if not may_see(call, ticket):  # e.g. returned (退回): no longer this department's
        return see_other("/department" if call.role == Role.HANDLER else "/")
    return see_other(next_page(call, call.body.next) if call.body.next else f"/tickets/{ticket_no}")
