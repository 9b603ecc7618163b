"""The citizens' API (no login): file a request from the website, WeChat or a grid worker's app, and follow
its progress with the ticket number and one's phone number.

- No cookies, so no CSRF token; no CORS headers, so other sites' pages cannot read the answers.
- ``public_rate_per_minute`` requests per address, and submissions per phone number, in a sliding minute;
  counted in the console audit table, so every console worker sees the same counts.
- The same submission again within ``REPLAY_WINDOW`` (or the same ``Idempotency-Key``) returns the ticket
  already filed instead of a duplicate.
- A wrong phone number gets exactly the answer of an unknown ticket number.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agent_console.auth import Origin, record_audit
from agent_console.errors import InvalidInput, NotFound, TooManyRequests
from agent_console.models import AuditEntry
from agent_console.routing import PUBLIC, Call, RouteTable, json_response
from agent_console.schemas import Model
from agent_console.views.tickets_deps import settings_of
from agent_console.views.tickets_view import field_errors
from tickets import errors as ticket_errors
from tickets import models as m
from tickets.phone import normalise_phone
from tickets.schemas import Actor, TicketDraft
from tickets.services import create_ticket, get_ticket
from tickets.states import STATE_LABELS, State

routes = RouteTable("public")
WINDOW = timedelta(minutes=1)
REPLAY_WINDOW = timedelta(minutes=10)  # an identical submission within this time is the same request
IDEMPOTENCY_TTL = timedelta(hours=24)
IDEMPOTENCY_HEADER = "Idempotency-Key"
CREATE, LOOKUP, KEY = "public.create", "public.lookup", "public.idempotency"
CITIZEN = Actor("市民自助提交", "caller")
NOT_FOUND = "未找到该工单，请核对工单编号和手机号码"
TOO_MANY = "请求过于频繁，请一分钟后再试"


class PublicTicketIn(Model):
    channel: Literal["web", "wechat", "grid"] = Field(description="提交渠道：网站 / 微信 / 网格")
    caller_phone: str = Field(min_length=1, max_length=m.PHONE_MAX, description="联系电话")
    content: str = Field(min_length=1, max_length=m.CONTENT_MAX, description="诉求内容")
    address: str | None = Field(default=None, max_length=m.ADDRESS_MAX)
    caller_name: str | None = Field(default=None, max_length=m.NAME_MAX)
    district: str | None = Field(default=None, max_length=m.PLACE_MAX)


class PublicTicketCreated(Model):
    ticket_no: str = Field(description="工单编号（查询进度用）")
    duplicate: bool = Field(description="true：重复提交，返回的是此前已受理的工单")
    message: str


class PhoneQuery(Model):
    phone: str = Field(min_length=1, max_length=m.PHONE_MAX, description="提交时填写的电话号码")


class PublicProgress(Model):
    ticket_no: str
    state_label: str = Field(description="办理进度")
    created_at: datetime
    dispatched_at: datetime | None
    replied_at: datetime | None
    closed_at: datetime | None
    reply: str | None = Field(description="办结后的答复")


def _ip(call: Call[Any]) -> str:
    return call.request.remote or "unknown"


async def _count(db: AsyncSession, since: datetime, *conds: Any) -> int:
    stmt = select(func.count()).select_from(AuditEntry).where(AuditEntry.at >= since, *conds)
    return (await db.execute(stmt)).scalar_one()


async def _admit(call: Call[Any], db: AsyncSession, action: str, target: str, *, per_target: bool) -> None:
    """Count this request (an audit row) and refuse it past the per-address or per-phone limit."""
    limit = settings_of(call.app).console.public_rate_per_minute
    since = call.now - WINDOW
    await record_audit(db, Origin(None, _ip(call), None), action, target[:128], call.now)
    await db.commit()
    by_ip = await _count(db, since, AuditEntry.action.in_((CREATE, LOOKUP)), AuditEntry.ip == _ip(call))
    by_target = await _count(db, since, AuditEntry.action == action, AuditEntry.target == target) if per_target else 0
    if by_ip > limit or by_target > limit:
        raise TooManyRequests(TOO_MANY)


def _key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def _earlier_by_key(db: AsyncSession, digest: str, now: datetime) -> str | None:
    stmt = (select(AuditEntry.detail).where(AuditEntry.action == KEY, AuditEntry.target == digest,
                                            AuditEntry.at >= now - IDEMPOTENCY_TTL).order_by(AuditEntry.id).limit(1))
    detail = (await db.execute(stmt)).scalar_one_or_none()
    return detail.get("ticket_no") if detail else None


async def _earlier_same(db: AsyncSession, body: PublicTicketIn, phone: str, now: datetime) -> str | None:
    """A ticket of this phone with the same content and channel filed within the replay window."""
    t = m.Ticket
    return await db.scalar(
        select(t.ticket_no).where(
            t.caller_phone == phone, t.created_at >= now - REPLAY_WINDOW, t.channel == body.channel,
            t.content == body.content, t.address.is_not_distinct_from(body.address),
        ).order_by(t.created_at.desc()).limit(1)
    )


@routes.api("POST", "/api/v1/tickets", summary="市民提交诉求（无需登录；可带 Idempotency-Key 头防重复）",
            roles=PUBLIC, request=PublicTicketIn, response=PublicTicketCreated, status=201, errors=(429,),
            csrf="none")
async def public_create(call: Call[PublicTicketIn]) -> Any:
    body = call.body
    key = call.request.headers.get(IDEMPOTENCY_HEADER, "").strip()
    if len(key) > 128:
        raise InvalidInput("Idempotency-Key 过长（最多 128 个字符）",
                           details=[{"field": IDEMPOTENCY_HEADER, "code": "string_too_long", "message": "太长"}])
    with field_errors():
        phone = normalise_phone(body.caller_phone)
    async with call.db() as db:
        await _admit(call, db, CREATE, phone, per_target=True)
        earlier = await _earlier_by_key(db, _key_digest(key), call.now) if key else None
        earlier = earlier or await _earlier_same(db, body, phone, call.now)
        if earlier is not None:
            out = PublicTicketCreated(ticket_no=earlier, duplicate=True, message="该诉求已受理，请勿重复提交")
            return json_response(out.model_dump(), status=200)
        with field_errors():
            draft = TicketDraft(**body.model_dump())
            ticket = await create_ticket(db, draft, CITIZEN, now=call.now, settings=settings_of(call.app))
        if key:
            await record_audit(db, Origin(None, _ip(call), None), KEY, _key_digest(key), call.now,
                               ticket_no=ticket.ticket_no)
            await db.commit()
    return PublicTicketCreated(ticket_no=ticket.ticket_no, duplicate=False,
                               message="您的诉求已受理，请凭工单编号和电话号码查询办理进度")


@routes.api("GET", "/api/v1/tickets/{ticket_no}", summary="市民查询办理进度（凭工单编号和电话号码）", roles=PUBLIC,
            query=PhoneQuery, response=PublicProgress, errors=(429,))
async def public_progress(call: Call[None]) -> PublicProgress:
    ticket_no = call.request.match_info["ticket_no"][:20]
    async with call.db() as db:
        await _admit(call, db, LOOKUP, ticket_no, per_target=True)
        try:
            phone = normalise_phone(call.query.phone)
            ticket = await get_ticket(db, ticket_no, repeat_links=False)
        except (ticket_errors.InvalidInput, ticket_errors.NotFound):
            raise NotFound(NOT_FOUND) from None
    if ticket.caller_phone != phone:
        raise NotFound(NOT_FOUND)
    closed = ticket.state == State.CLOSED
    return PublicProgress(ticket_no=ticket.ticket_no, state_label=STATE_LABELS[State(ticket.state)],
                          created_at=ticket.created_at, dispatched_at=ticket.dispatched_at,
                          replied_at=ticket.replied_at, closed_at=ticket.closed_at,
                          reply=(ticket.answer or ticket.reply) if closed else None)
