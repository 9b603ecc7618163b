"""Call-backs (回访): tickets waiting for the citizen's verdict, the automatic call-back button, manual results."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from agent_console.desk.schemas import Accepted, CallbackResultIn, TicketList, TicketOut
from agent_console.desk.services import services_of, settings_of
from agent_console.desk.view_models import (
    actor_of,
    field_errors,
    local,
    page_out,
    ticket_out,
    visible_ticket,
)
from agent_console.errors import ConsoleError, NotFound
from agent_console.roles import Role
from agent_console.routing import Call, RouteTable, render_page
from agent_console.views.session import see_other
from agent_console.views.tickets import status_of
from tickets.errors import IllegalTransition, TicketError
from tickets.queries import Page, list_tickets
from tickets.services import record_callback
from tickets.states import State

routes = RouteTable("callbacks")
CALLBACK_DESK = frozenset({Role.AGENT, Role.DISPATCHER, Role.ADMIN})
RECORDERS = frozenset({Role.AGENT, Role.ADMIN})  # who may enter a call-back result by hand
WAITING = (State.VERIFIED, State.CALLBACK)
RESULTS = {
    "satisfied": "满意",
    "basically_satisfied": "基本满意",
    "unsatisfied": "不满意",
    "unreachable": "未接通",
}
LIST_LIMIT = 100


async def waiting_page(call: Call[Any]) -> Page:
    async with call.db() as db:
        return await list_tickets(db, states=[s.value for s in WAITING], limit=LIST_LIMIT)


async def waiting(call: Call[Any]) -> TicketList:
    return page_out(await waiting_page(call), call.user.role)


async def start(call: Call[Any], ticket_no: str) -> None:
    async with call.db() as db:
        ticket = await visible_ticket(call, db, ticket_no)
    if State(ticket.state) not in WAITING:
        raise IllegalTransition(
            "只有核验通过、待回访的工单才能发起回访", code="ticket.not_waiting_callback"
        )
    await services_of(call.app).call_control.start_callback(ticket_no)


async def record(call: Call[Any], ticket_no: str, body: CallbackResultIn) -> None:
    """The result entered by hand, on the ticket as the form showed it (a stale form is refused with 409)."""
    async with call.db() as db:
        await visible_ticket(call, db, ticket_no)
        with field_errors():
            await record_callback(
                db,
                ticket_no,
                body.result,
                actor_of(call),
                expected_version=body.expected_version,
                now=call.now,
                settings=settings_of(call.app),
            )


@routes.api(
    "GET",
    "/api/v1/console/callbacks",
    summary="待回访工单",
    roles=CALLBACK_DESK,
    response=TicketList,
)
async def callbacks_api_list(call: Call[None]) -> TicketList:
    return await waiting(call)


@routes.api(
    "POST",
    "/api/v1/console/callbacks/{ticket_no}/start",
    summary="发起自动回访（外呼）",
    roles=CALLBACK_DESK,
    response=Accepted,
    status=202,
    errors=(409, 503),
)
async def callbacks_api_start(call: Call[None]) -> Accepted:
    await start(call, call.request.match_info["ticket_no"])
    return Accepted(status="started", message="已发起自动回访，结果将自动记录")


@routes.api(
    "POST",
    "/api/v1/console/callbacks/{ticket_no}/result",
    summary="录入回访结果",
    roles=RECORDERS,
    request=CallbackResultIn,
    response=TicketOut,
    errors=(409,),
)
async def callbacks_api_result(call: Call[CallbackResultIn]) -> TicketOut:
    ticket_no = call.request.match_info["ticket_no"]
    await record(call, ticket_no, call.body)
    async with call.db() as db:
        return await ticket_out(call, db, await visible_ticket(call, db, ticket_no))


async def _page(call: Call[Any], *, error: str | None = None, status: int = 200) -> web.Response:
    page = await waiting_page(call)
    result, versions = page_out(page, call.user.role), {r.ticket_no: r.version for r in page.items}
    context = {
        "result": result,
        "versions": versions,
        "results": RESULTS,
        "error": error,
        "started": call.request.query.get("started", ""),
        "may_record": call.role in RECORDERS,
        "tz": ZoneInfo(settings_of(call.app).timezone),
        "local": local,
    }
    return render_page(call, "callbacks.html", context, status=status)


@routes.page(
    "GET", "/callbacks", title="回访", roles=CALLBACK_DESK, nav="回访", name="callbacks_page"
)
async def callbacks_page(call: Call[None]) -> web.Response:
    return await _page(call)


@routes.page(
    "POST",
    "/callbacks/{ticket_no}/start",
    title="发起回访",
    roles=CALLBACK_DESK,
    name="callbacks_start",
    errors=(404, 409, 503),
)
async def callbacks_start(call: Call[None]) -> web.Response:
    ticket_no = call.request.match_info["ticket_no"]
    try:
        await start(call, ticket_no)
    except NotFound:
        raise
    except (ConsoleError, TicketError) as exc:
        return await _page(call, error=exc.message, status=status_of(call, exc))
    return see_other(f"/callbacks?started={ticket_no}")


@routes.page(
    "POST",
    "/callbacks/{ticket_no}/result",
    title="录入回访结果",
    roles=RECORDERS,
    form=CallbackResultIn,
    name="callbacks_result",
    errors=(404, 409, 422),
)
async def callbacks_result(call: Call[CallbackResultIn]) -> web.Response:
    ticket_no = call.request.match_info["ticket_no"]
    try:
        if call.invalid is not None:
            async with call.db() as db:
                await visible_ticket(call, db, ticket_no)
            raise call.invalid
        await record(call, ticket_no, call.body)
    except NotFound:
        raise
    except (ConsoleError, TicketError) as exc:
        return await _page(call, error=exc.message, status=status_of(call, exc))
    return see_other("/callbacks")
