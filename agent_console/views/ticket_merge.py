"""并单 and 保密 on a ticket: merge duplicates into it (dispatchers, admins), with the candidates repeat detection
linked to it; mark or lift its confidentiality (JSON and the ticket page's forms).

The refusals are the domain's (``ticket.merge_*``, 409; ``ticket.role_forbidden``, 403); nothing is written then.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from agent_console.desk.schemas import (
    ConfidentialIn,
    MergeCandidates,
    MergeIn,
    TicketOut,
    TicketSummary,
)
from agent_console.desk.services import settings_of
from agent_console.desk.view_models import (
    actor_of,
    field_errors,
    summary_out,
    ticket_out,
    visible_ticket,
)
from agent_console.errors import ConsoleError, NotFound, invalid_input
from agent_console.roles import Role
from agent_console.routing import Call, RouteTable
from agent_console.schemas import Model
from agent_console.views.session import see_other
from agent_console.views.tickets import MERGERS, render_detail, status_of
from tickets import errors as ticket_errors
from tickets import models as m
from tickets.errors import TicketError
from tickets.queries import SUMMARY_CHARS, summarise
from tickets.queries import TicketSummary as SummaryRow
from tickets.services import (
    CONFIDENTIAL_SETTERS,
    merge_candidates,
    merge_tickets,
    set_confidential,
)
from tickets.text import Text

routes = RouteTable("ticket_merge")
CONFIDENTIAL_EDITORS = frozenset(Role(r) for r in CONFIDENTIAL_SETTERS)
_TICKET_NOS = re.compile(r"[\s,，、]+")


async def merge(call: Call[Any], ticket_no: str, body: MergeIn) -> None:
    async with call.db() as db:
        try:
            with field_errors():
                await merge_tickets(
                    db,
                    ticket_no,
                    list(body.tickets),
                    actor_of(call),
                    expected_version=body.expected_version,
                    note=body.note,
                    now=call.now,
                    settings=settings_of(call.app),
                )
        except ticket_errors.NotFound as exc:
            raise NotFound(exc.message) from None


async def confide(call: Call[Any], ticket_no: str, body: ConfidentialIn) -> None:
    async with call.db() as db:
        await visible_ticket(call, db, ticket_no)
        with field_errors():
            await set_confidential(
                db,
                ticket_no,
                body.confidential,
                actor_of(call),
                expected_version=body.expected_version,
                note=body.note,
                now=call.now,
                settings=settings_of(call.app),
            )


async def candidates(call: Call[Any], db: AsyncSession, ticket_no: str) -> list[TicketSummary]:
    """The tickets repeat detection linked to this one that could be merged into it."""
    ticket = await visible_ticket(call, db, ticket_no)
    rows = await merge_candidates(db, ticket)
    return [summary_out(_summary(t), call.user.role) for t in rows]


def _summary(t: m.Ticket) -> SummaryRow:
    return SummaryRow(
        ticket_no=t.ticket_no,
        created_at=t.created_at,
        state=t.state,
        channel=t.channel,
        kind=t.kind,
        urgency=t.urgency,
        category=t.category,
        district=t.district,
        caller_phone=t.caller_phone,
        caller_name=t.caller_name,
        summary=summarise(t.content, SUMMARY_CHARS),
        lead_department=t.lead_department,
        due_at=t.due_at,
        is_repeat=t.is_repeat,
        warning=None,
        version=t.version,
        confidential=t.confidential,
    )


async def _answer(call: Call[Any], ticket_no: str) -> TicketOut:
    async with call.db() as db:
        return await ticket_out(call, db, await visible_ticket(call, db, ticket_no))


# --- JSON API ---------------------------------------------------------------------------------------------


@routes.api(
    "GET",
    "/api/v1/console/tickets/{ticket_no}/merge-candidates",
    summary="并单候选（重复件检测关联、未办结的工单）",
    roles=MERGERS,
    response=MergeCandidates,
)
async def tickets_api_merge_candidates(call: Call[None]) -> MergeCandidates:
    async with call.db() as db:
        found = await candidates(call, db, call.request.match_info["ticket_no"])
    return MergeCandidates(tickets=found)


@routes.api(
    "POST",
    "/api/v1/console/tickets/{ticket_no}/merge",
    summary="并单（把重复工单并入本工单；主单办结后每位来电人都收到结果并进入回访）",
    roles=MERGERS,
    request=MergeIn,
    response=TicketOut,
    errors=(404, 409),
)
async def tickets_api_merge(call: Call[MergeIn]) -> TicketOut:
    ticket_no = call.request.match_info["ticket_no"]
    await merge(call, ticket_no, call.body)
    return await _answer(call, ticket_no)


@routes.api(
    "POST",
    "/api/v1/console/tickets/{ticket_no}/confidential",
    summary="保密设置（话务员、派单员、管理员设置；仅管理员可取消）",
    roles=CONFIDENTIAL_EDITORS,
    request=ConfidentialIn,
    response=TicketOut,
    errors=(409,),
)
async def tickets_api_confidential(call: Call[ConfidentialIn]) -> TicketOut:
    ticket_no = call.request.match_info["ticket_no"]
    await confide(call, ticket_no, call.body)
    return await _answer(call, ticket_no)


# --- the ticket page's forms -------------------------------------------------------------------------------


class MergeForm(Model):
    """并单 as posted: the duplicates' numbers (ticked candidates and/or typed, separated by spaces or commas)."""

    tickets: str = Field(default="", max_length=2000)
    expected_version: int = Field(ge=1)
    note: Text = Field(default="", max_length=m.NOTE_MAX)

    def as_request(self) -> MergeIn:
        numbers = [n for n in _TICKET_NOS.split(self.tickets) if n]
        try:
            return MergeIn(tickets=numbers, expected_version=self.expected_version, note=self.note)
        except ValidationError as exc:
            raise invalid_input(exc) from None


@routes.page(
    "POST",
    "/tickets/{ticket_no}/merge",
    title="并单",
    roles=MERGERS,
    form=MergeForm,
    name="ticket_merge",
    errors=(404, 409, 422),
)
async def ticket_merge(call: Call[MergeForm]) -> web.Response:
    ticket_no = call.request.match_info["ticket_no"]
    try:
        if call.invalid is not None:
            raise call.invalid
        await merge(call, ticket_no, call.body.as_request())
    except (ConsoleError, TicketError) as exc:
        return await render_detail(call, ticket_no, error=exc.message, status=status_of(call, exc))
    return see_other(f"/tickets/{ticket_no}?merged=1")


class ConfidentialForm(Model):
    confidential: str = Field(default="", max_length=8)  # "on": set; empty: lift
    expected_version: int = Field(ge=1)
    note: Text = Field(default="", max_length=m.NOTE_MAX)  # checked as the JSON route checks it


@routes.page(
    "POST",
    "/tickets/{ticket_no}/confidential",
    title="保密设置",
    roles=CONFIDENTIAL_EDITORS,
    form=ConfidentialForm,
    name="ticket_confidential",
    errors=(403, 404, 409, 422),
)
async def ticket_confidential(call: Call[ConfidentialForm]) -> web.Response:
    ticket_no = call.request.match_info["ticket_no"]
    try:
        if call.invalid is not None:
            raise call.invalid
        form = call.body
        body = ConfidentialIn(
            confidential=bool(form.confidential),
            expected_version=form.expected_version,
            note=form.note,
        )
        await confide(call, ticket_no, body)
    except (ConsoleError, TicketError) as exc:
        return await render_detail(call, ticket_no, error=exc.message, status=status_of(call, exc))
    return see_other(f"/tickets/{ticket_no}")
