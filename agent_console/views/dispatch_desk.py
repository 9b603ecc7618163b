"""The dispatch desk (派单台): review queue, tickets to dispatch (returned ones marked), replies to verify,
extension requests to decide, and supervision (督办). Each ticket's actions are on its detail page."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from agent_console.desk.schemas import SuperviseIn, TicketOut
from agent_console.desk.services import settings_of
from agent_console.desk.view_models import (
    actor_of,
    field_errors,
    local,
    summary_out,
    ticket_out,
    visible_ticket,
)
from agent_console.errors import InvalidInput
from agent_console.roles import Role
from agent_console.routing import Call, RouteTable
from agent_console.views.session import see_other
from agent_console.views.tickets import render_detail, status_of
from tickets.errors import TicketError
from tickets.queries import list_tickets
from tickets.states import State
from tickets.supervision import supervise

routes = RouteTable("dispatch")
DESK = frozenset({Role.DISPATCHER, Role.ADMIN})
SUPERVISORS = frozenset({Role.DISPATCHER, Role.LEADER, Role.ADMIN})
QUEUE_LIMIT = 100


async def do_supervise(call: Call[Any], ticket_no: str, note: str) -> None:
    settings = settings_of(call.app)
    async with call.db() as db:
        await visible_ticket(call, db, ticket_no)
        with field_errors():
            await supervise(
                db, ticket_no, actor_of(call), note=note, now=call.now, settings=settings
            )


@routes.api(
    "POST",
    "/api/v1/console/tickets/{ticket_no}/supervise",
    summary="督办（向承办单位分管领导发督办函）",
    roles=SUPERVISORS,
    request=SuperviseIn,
    response=TicketOut,
    errors=(409,),
)
async def tickets_api_supervise(call: Call[SuperviseIn]) -> TicketOut:
    ticket_no = call.request.match_info["ticket_no"]
    await do_supervise(call, ticket_no, call.body.note)
    async with call.db() as db:
        return await ticket_out(call, db, await visible_ticket(call, db, ticket_no))


@routes.page(
    "POST",
    "/tickets/{ticket_no}/supervise",
    title="督办",
    roles=SUPERVISORS,
    form=SuperviseIn,
    name="ticket_supervise",
    errors=(404, 409, 422),
)
async def ticket_supervise(call: Call[SuperviseIn]) -> web.Response:
    ticket_no = call.request.match_info["ticket_no"]
    try:
        if call.invalid is not None:
            raise call.invalid
        await do_supervise(call, ticket_no, call.body.note)
    except (InvalidInput, TicketError) as exc:  # an outsider's 404 passes through untouched
        return await render_detail(call, ticket_no, error=exc.message, status=status_of(call, exc))
    return see_other(f"/tickets/{ticket_no}?supervised=1")


@routes.page(
    "GET",
    "/dispatch",
    title="派单台",
    roles=DESK,
    nav="派单台",
    template="dispatch_desk.html",
    name="dispatch_page",
)
async def dispatch_page(call: Call[None]) -> dict[str, Any]:
    role = call.user.role
    async with call.db() as db:
        review = await list_tickets(db, state=State.ACCEPTED.value, limit=QUEUE_LIMIT)
        to_dispatch = await list_tickets(db, state=State.REVIEWED.value, limit=QUEUE_LIMIT)
        to_verify = await list_tickets(db, state=State.REPLIED.value, limit=QUEUE_LIMIT)
        working = await list_tickets(
            db, states=[State.SIGNED.value, State.IN_PROGRESS.value], limit=QUEUE_LIMIT
        )
    returned = {r.ticket_no for r in to_dispatch.items if r.return_count}
    extensions = [
        (summary_out(r, role), r.extension_requested_until)
        for r in working.items
        if r.extension_requested_until is not None
    ]
    return {
        "review": [summary_out(r, role) for r in review.items],
        "to_dispatch": [summary_out(r, role) for r in to_dispatch.items],
        "returned": returned,
        "to_verify": [summary_out(r, role) for r in to_verify.items],
        "extensions": extensions,
        "tz": ZoneInfo(settings_of(call.app).timezone),
        "local": local,
    }
