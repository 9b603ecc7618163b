"""The citizens' API (no login): file a request from the website, WeChat or a grid worker's app, and follow
its progress with the ticket number and one's phone number.

- No cookies, so no CSRF token; no CORS headers, so other sites' pages cannot read the answers.
- ``public_rate_per_minute`` admitted requests per client address, and per phone number (submissions) or
  ticket number (look-ups), in a sliding minute (:mod:`agent_console.public_limits`, applied by the
  ``rate_limits`` middleware before the handler).
- The same submission again (same ``Idempotency-Key``, or same content lately) from the same phone returns the
  ticket already filed instead of a duplicate (:mod:`tickets.intake`).
- A wrong phone number gets exactly the answer of an unknown ticket number.
- No answer ever carries a caller's name or number (保密 or not): the progress is for whoever proves the ticket's
  number and phone, and a ticket merged into another (并单) shows the main ticket's progress and result under its
  own number, never the main ticket's caller. A submission may ask for confidentiality (``confidential``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from agent_console.desk.services import settings_of
from agent_console.desk.view_models import field_errors
from agent_console.errors import ConsoleError, NotFound
from agent_console.public_limits import RateLimit, add_rate_limits
from agent_console.routing import PUBLIC, Call, RouteTable, json_response, read_json
from agent_console.schemas import Model
from tickets import errors as ticket_errors
from tickets import models as m
from tickets.intake import file_submission
from tickets.phone import normalise_phone
from tickets.schemas import Actor, TicketDraft
from tickets.services import get_ticket
from tickets.states import STATE_LABELS, State
from tickets.text import Line, Text

routes = RouteTable("public")
IDEMPOTENCY_HEADER = "Idempotency-Key"
CITIZEN = Actor("市民自助提交", "caller")
NOT_FOUND = "未找到该工单，请核对工单编号和手机号码"
TICKET_NO_MAX = 20


class PublicTicketIn(Model):
    channel: Literal["web", "wechat", "grid"] = Field(description="提交渠道：网站 / 微信 / 网格")
    caller_phone: Line = Field(min_length=1, max_length=m.PHONE_MAX, description="联系电话")
    content: Text = Field(min_length=1, max_length=m.CONTENT_MAX, description="诉求内容")
    address: Line | None = Field(default=None, max_length=m.ADDRESS_MAX)
    caller_name: Line | None = Field(default=None, max_length=m.NAME_MAX)
    district: Line | None = Field(default=None, max_length=m.PLACE_MAX)
    confidential: bool = Field(default=False, description="保密：姓名、号码仅对回访人员可见")


class PublicTicketCreated(Model):
    ticket_no: str = Field(description="工单编号（查询进度用）")
    duplicate: bool = Field(description="true：重复提交，返回的是此前已受理的工单")
    message: str


class PhoneQuery(Model):
    phone: Line = Field(min_length=1, max_length=m.PHONE_MAX, description="提交时填写的电话号码")


class PublicProgress(Model):
    ticket_no: str
    state_label: str = Field(description="办理进度")
    created_at: datetime
    dispatched_at: datetime | None
    replied_at: datetime | None
    closed_at: datetime | None
    reply: str | None = Field(description="办结后的答复")
    merged: bool = Field(
        default=False,
        description="true：与同一事项的其他工单合并办理（并单），进度为合并后的办理进度",
    )


async def _submitting_phone(request: web.Request) -> str | None:
    """The phone number a submission is for (None when the body is not a valid one: the handler refuses it)."""
    try:
        body = await read_json(request)
        return normalise_phone(body["caller_phone"])
    except (ConsoleError, ticket_errors.InvalidInput, KeyError, TypeError):
        return None


async def _asked_ticket(request: web.Request) -> str:
    return request.match_info["ticket_no"][:TICKET_NO_MAX]


@routes.on_setup
def _limits(app: web.Application) -> None:
    add_rate_limits(
        app,
        {
            "public_create": RateLimit("public.create", _submitting_phone),
            "public_progress": RateLimit("public.lookup", _asked_ticket),
        },
    )


@routes.api(
    "POST",
    "/api/v1/tickets",
    summary="市民提交诉求（无需登录；可带 Idempotency-Key 头防重复）",
    roles=PUBLIC,
    request=PublicTicketIn,
    response=PublicTicketCreated,
    status=201,
    errors=(413, 429),
    csrf="none",
)
async def public_create(call: Call[PublicTicketIn]) -> Any:
    key = call.request.headers.get(IDEMPOTENCY_HEADER, "").strip() or None
    async with call.db() as db:
        with field_errors():
            draft = TicketDraft(**call.body.model_dump())
            filed = await file_submission(
                db, draft, CITIZEN, key=key, now=call.now, settings=settings_of(call.app)
            )
    if filed.duplicate:
        out = PublicTicketCreated(
            ticket_no=filed.ticket_no, duplicate=True, message="该诉求已受理，请勿重复提交"
        )
        return json_response(out.model_dump(), status=200)
    return PublicTicketCreated(
        ticket_no=filed.ticket_no,
        duplicate=False,
        message="您的诉求已受理，请凭工单编号和电话号码查询办理进度",
    )


@routes.api(
    "GET",
    "/api/v1/tickets/{ticket_no}",
    summary="市民查询办理进度（凭工单编号和电话号码）",
    roles=PUBLIC,
    query=PhoneQuery,
    response=PublicProgress,
    errors=(429,),
)
async def public_progress(call: Call[None]) -> PublicProgress:
    ticket_no = await _asked_ticket(call.request)
    async with call.db() as db:
        try:
            phone = normalise_phone(call.query.phone)
            ticket = await get_ticket(db, ticket_no, repeat_links=False)
        except (ticket_errors.InvalidInput, ticket_errors.NotFound):
            raise NotFound(NOT_FOUND) from None
        if ticket.caller_phone != phone:
            raise NotFound(NOT_FOUND)
        main = ticket
        if ticket.state == State.MERGED and ticket.merged_into_id is not None:
            main = await db.get(m.Ticket, ticket.merged_into_id) or ticket
    closed = ticket.state == State.CLOSED
    return PublicProgress(
        ticket_no=ticket.ticket_no,
        state_label=STATE_LABELS[State(main.state)],
        created_at=ticket.created_at,
        dispatched_at=main.dispatched_at,
        replied_at=ticket.replied_at,
        closed_at=ticket.closed_at,
        reply=(ticket.answer or ticket.reply) if closed else None,
        merged=ticket.merged_into_id is not None,
    )
