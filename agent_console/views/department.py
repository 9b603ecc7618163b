"""The department handler's inbox (承办单位工作台): its tickets with the sign-for countdown (签收倒计时), signing,
and reply attachments. Replying, returning and asking for an extension happen on the ticket's page.

A handler sees only its own department's tickets: the list is filtered by the department, and every ticket
route answers 404 for another department's ticket.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from agent_console.desk.files import (
    ALLOWED_ENDINGS,
    MAX_ATTACHMENT_BYTES,
    attachments_dir,
    receive_upload,
)
from agent_console.desk.schemas import AttachmentOut
from agent_console.desk.services import settings_of
from agent_console.desk.view_models import (
    actor_of,
    field_errors,
    local,
    summary_out,
    visible_ticket,
)
from agent_console.roles import Role
from agent_console.routing import Call, RouteTable
from tickets.attachments import ATTACHABLE_STATES, add_attachment
from tickets.errors import Forbidden, IllegalTransition
from tickets.queries import list_tickets
from tickets.states import State

routes = RouteTable("department")
HANDLERS = frozenset({Role.HANDLER})
INBOX_LIMIT = 100
INBOX_STATES = (State.DISPATCHED, State.SIGNED, State.IN_PROGRESS, State.REPLIED)


@routes.api(
    "POST",
    "/api/v1/console/tickets/{ticket_no}/attachments",
    summary=f"上传反馈附件（multipart 字段 file；{'、'.join(ALLOWED_ENDINGS)}，不超过 "
    f"{MAX_ATTACHMENT_BYTES // (1024 * 1024)} MB）",
    roles=HANDLERS,
    response=AttachmentOut,
    status=201,
    errors=(409,),
)
async def tickets_api_upload(call: Call[None]) -> AttachmentOut:
    ticket_no = call.request.match_info["ticket_no"]
    async with call.db() as db:
        ticket = await visible_ticket(call, db, ticket_no)
    if ticket.lead_department != call.user.department:
        raise Forbidden("只能为本单位主办的工单上传附件", code="ticket.not_own_department")
    if State(ticket.state) not in ATTACHABLE_STATES:
        raise IllegalTransition("工单签收后、反馈前才能上传附件", code="ticket.attachment_state")
    stored = await receive_upload(call.request, attachments_dir(settings_of(call.app)))
    async with call.db() as db:
        with field_errors():
            row = await add_attachment(
                db,
                ticket_no,
                actor_of(call),
                file_name=stored.file_name,
                content_type=stored.content_type,
                size=stored.size,
                sha256=stored.sha256,
                now=call.now,
            )
    return AttachmentOut(
        id=row.id,
        file_name=row.file_name,
        content_type=row.content_type,
        size=row.size,
        actor=row.actor,
        at=row.at,
        url=f"/api/v1/console/tickets/{ticket_no}/attachments/{row.id}",
    )


@routes.page(
    "GET",
    "/department",
    title="本单位工单",
    roles=HANDLERS,
    nav="本单位工单",
    template="department.html",
    name="department_page",
)
async def department_page(call: Call[None]) -> dict[str, Any]:
    role = call.user.role
    department = call.scope.department
    rows: dict[str, list[Any]] = {s.value: [] for s in INBOX_STATES}
    if department is not None:
        async with call.db() as db:
            page = await list_tickets(
                db, department=department, states=[s.value for s in INBOX_STATES], limit=INBOX_LIMIT
            )
        for r in page.items:
            rows[r.state].append(
                {
                    "s": summary_out(r, role),
                    "version": r.version,
                    "sign_for_due": r.sign_for_due,
                    "lead": r.lead_department == department,
                    "extension": r.extension_requested_until,
                }
            )
    return {
        "rows": rows,
        "department": department,
        "tz": ZoneInfo(settings_of(call.app).timezone),
        "local": local,
    }
