"""Missed-call call-backs (漏接电话回拨): the tasks of the last days with their outcome (``ivr.missed_calls``)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import Field

from agent_console.desk.services import settings_of
from agent_console.masking import mask_phone
from agent_console.roles import Role
from agent_console.routing import Call, RouteTable, render_page
from agent_console.schemas import Model
from ivr.missed_calls import STATES, closing_ticket, list_tasks
from ivr.models import MissedCall
from tickets.queries import tickets_of_calls

routes = RouteTable("missed_calls")
MISSED_CALL_DESK = frozenset({Role.AGENT, Role.DISPATCHER, Role.ADMIN})
DAYS_SHOWN, LIST_LIMIT = 7, 500


class MissedCallOut(Model):
    id: int
    number: str = Field(description="来电号码（按角色脱敏；空：未显示号码）")
    day: date = Field(description="漏接日期（当地）")
    calls: int = Field(description="当日漏接次数")
    first_call_at: datetime
    state: str = Field(
        description="open / ringing / answered / reached_agent / unreachable / closed_by_recall / "
        "closed_by_ticket / withheld"
    )
    state_label: str
    attempts: int = Field(description="已回拨次数")
    next_attempt_at: datetime | None
    outcome: str = Field(description="最近一次回拨的结果")
    ticket_no: str | None = Field(
        description="坐席接通回拨后登记的工单，或关闭任务的来电工单（留言等）"
    )


class MissedCallList(Model):
    tasks: list[MissedCallOut]


async def missed_list(call: Call[Any]) -> MissedCallList:
    since = call.now.astimezone(ZoneInfo(settings_of(call.app).timezone)) - timedelta(
        days=DAYS_SHOWN - 1
    )
    async with call.db() as db:
        rows = await list_tasks(db, since=since, limit=LIST_LIMIT)
        tickets = await tickets_of_calls(db, [r.reached_call for r in rows if r.reached_call])
    return MissedCallList(tasks=[_out(r, tickets, call.role) for r in rows])


def _out(row: MissedCall, tickets: dict[str, str], role: Role) -> MissedCallOut:
    return MissedCallOut(
        id=row.id,
        number=mask_phone(row.number, role),
        day=row.day,
        calls=row.calls,
        first_call_at=row.first_call_at,
        state=row.state,
        state_label=STATES[row.state],
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        outcome=row.outcome,
        ticket_no=tickets.get(row.reached_call or "") or closing_ticket(row),
    )


@routes.api(
    "GET",
    "/api/v1/console/missed-calls",
    summary="漏接电话回拨（近 7 日）",
    roles=MISSED_CALL_DESK,
    response=MissedCallList,
)
async def missed_calls_api(call: Call[None]) -> MissedCallList:
    return await missed_list(call)


@routes.page(
    "GET",
    "/missed-calls",
    title="漏接回拨",
    roles=MISSED_CALL_DESK,
    nav="漏接回拨",
    name="missed_calls_page",
)
async def missed_calls_page(call: Call[None]) -> web.Response:
    tz = ZoneInfo(settings_of(call.app).timezone)
    return render_page(call, "missed_calls.html", {"result": await missed_list(call), "tz": tz})
