"""The agent workspace (话务员工作台): status buttons, the screen pop, the ticket form with the knowledge-base
panel and dispatch suggestions, and 即办 (closed on the spot).

The screen pop arrives on the hub topic ``screenpop:<username>`` (see :mod:`agent_console.calls`); the page's
script fills the form from it. Without script the form, the status buttons and the knowledge search still
work as plain forms.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import Field, ValidationError

from agent_console.calls import (
    AGENT_STATE_LABELS,
    AgentState,
    pause_reason,
    screenpop_topic,
    state_label,
)
from agent_console.desk.schemas import TicketCreate, TicketOut
from agent_console.desk.services import services_of, settings_of
from agent_console.desk.view_models import actor_of, field_errors, ticket_out
from agent_console.errors import ConsoleError, Unavailable, invalid_input
from agent_console.roles import Role
from agent_console.routing import Call, RouteTable, render_page
from agent_console.schemas import Model
from agent_console.views.callcontrol import MODE_LABELS
from agent_console.views.session import see_other
from agent_console.views.tickets import status_of
from tickets import models as m
from tickets.categories import load_categories
from tickets.errors import TicketError
from tickets.schemas import TicketDraft
from tickets.services import close_instant, create_ticket

routes = RouteTable("workspace")
AGENTS = frozenset({Role.AGENT, Role.ADMIN})
INTAKE = frozenset(
    {Role.AGENT, Role.GRID, Role.LEADER, Role.ADMIN}
)  # who files tickets in the console
ADVISED = frozenset(
    {Role.AGENT, Role.DISPATCHER, Role.ADMIN}
)  # who sees knowledge answers and suggestions
CHANNELS = {
    "phone": "电话",
    "web": "网站",
    "wechat": "微信",
    "grid": "网格",
    "leader-line": "领导专线",
    "bot": "智能机器人",
}
KINDS = ("咨询", "求助", "投诉", "举报", "建议", "表扬")
URGENCIES = {"normal": "一般", "urgent": "紧急", "very_urgent": "特急"}


PAUSE_REASON = Field(
    default="", max_length=16, description="示忙原因（console.pause_reasons 之一；仅示忙）"
)


class AgentStateIn(Model):
    state: AgentState = Field(description="ready 示闲 / paused 示忙 / wrap_up 话后整理")
    reason: str = PAUSE_REASON


class AgentStateOut(Model):
    state: AgentState
    reason: str = Field(description="示忙原因；其他状态为空")
    label: str
    interface: str


class KnowledgeQuery(Model):
    q: str = Field(min_length=1, max_length=500, description="来电人的问题")


class KnowledgeOut(Model):
    answer_id: int | None
    question: str
    answer: str
    department: str
    score: float
    confident: bool


class SuggestionQuery(Model):
    text: str = Field(min_length=1, max_length=m.CONTENT_MAX)
    district: str | None = Field(default=None, max_length=m.PLACE_MAX)


class SuggestionOut(Model):
    department: str
    label: str
    score: float
    why: str


class SuggestionList(Model):
    suggestions: list[SuggestionOut]


async def set_state(call: Call[Any], state: AgentState, reason: str) -> AgentStateOut:
    """The agent's status to the queue: 示忙 with one of the centre's reasons (422 otherwise)."""
    reason = pause_reason(state, reason, settings_of(call.app).console.pause_reasons)
    services = services_of(call.app)
    interface = services.agent_interface(call.user.username)
    await services.call_control.set_agent_state(interface, state, reason)
    return AgentStateOut(
        state=state, reason=reason, label=state_label(state, reason), interface=interface
    )


async def file_ticket(call: Call[Any], body: TicketCreate) -> Any:
    """受理 the ticket, or create and close it at once (即办) when an answer was given on the spot. A grid
    worker's ticket records its grid (网格), so the worker can follow it."""
    fields = body.model_dump(exclude={"answer"})
    if call.role == Role.GRID:
        fields["grid"] = call.user.grid
    settings = settings_of(call.app)
    async with call.db() as db:
        with field_errors():
            draft = TicketDraft(**fields)
            if body.answer:
                return await close_instant(
                    db, draft, body.answer, actor_of(call), now=call.now, settings=settings
                )
            return await create_ticket(db, draft, actor_of(call), now=call.now, settings=settings)


async def suggestions(call: Call[Any], text: str, district: str | None) -> SuggestionList:
    found = await services_of(call.app).suggest(text, district=district or None)
    return SuggestionList(
        suggestions=[
            SuggestionOut(
                department=s.department, label=s.label, score=round(s.score, 4), why=s.why
            )
            for s in found
        ]
    )


# --- JSON API ---------------------------------------------------------------------------------------------


@routes.api(
    "POST",
    "/api/v1/console/workspace/state",
    summary="坐席状态：示闲 / 示忙 / 话后整理（队列暂停）",
    roles=AGENTS,
    request=AgentStateIn,
    response=AgentStateOut,
    errors=(422, 503),
)
async def workspace_api_state(call: Call[AgentStateIn]) -> AgentStateOut:
    return await set_state(call, call.body.state, call.body.reason)


@routes.api(
    "POST",
    "/api/v1/console/tickets",
    summary="受理工单（填写 answer 即当场办结：即办）",
    roles=INTAKE,
    request=TicketCreate,
    response=TicketOut,
    status=201,
)
async def tickets_api_create(call: Call[TicketCreate]) -> TicketOut:
    ticket = await file_ticket(call, call.body)
    async with call.db() as db:
        return await ticket_out(call, db, ticket)


@routes.api(
    "GET",
    "/api/v1/console/knowledge",
    summary="知识库检索（话务员答复参考）",
    roles=ADVISED,
    query=KnowledgeQuery,
    response=KnowledgeOut,
    errors=(503,),
)
async def workspace_knowledge_api(call: Call[None]) -> KnowledgeOut:
    a = await services_of(call.app).ask(call.query.q)
    return KnowledgeOut(
        answer_id=a.answer_id,
        question=a.question,
        answer=a.answer_text or a.answer,
        department=a.department,
        score=round(a.score, 4),
        confident=a.confident,
    )


@routes.api(
    "GET",
    "/api/v1/console/dispatch-suggestions",
    summary="智能派单建议（承办单位及依据）",
    roles=ADVISED,
    query=SuggestionQuery,
    response=SuggestionList,
    errors=(503,),
)
async def suggestions_api(call: Call[None]) -> SuggestionList:
    return await suggestions(call, call.query.text, call.query.district)


# --- page -------------------------------------------------------------------------------------------------


class StateForm(Model):
    state: AgentState
    reason: str = PAUSE_REASON


class IntakeForm(Model):
    """The ticket form as posted (empty optional fields are "not given")."""

    channel: str = Field(default="phone", max_length=16)
    caller_phone: str = Field(default="", max_length=200)
    content: str = Field(default="", max_length=200_000)
    caller_name: str = Field(default="", max_length=2000)
    address: str = Field(default="", max_length=2000)
    district: str = Field(default="", max_length=2000)
    street: str = Field(default="", max_length=2000)
    category: str = Field(default="", max_length=2000)
    kind: str = Field(default="咨询", max_length=16)
    urgency: str = Field(default="normal", max_length=16)
    transcript: str = Field(default="", max_length=200_000)
    call_id: str = Field(default="", max_length=2000)
    answer: str = Field(default="", max_length=200_000)
    confidential: str = Field(default="", max_length=8)  # a checkbox: "on" when ticked (保密)

    def as_create(self) -> TicketCreate:
        data = {k: v for k, v in self.model_dump().items() if v != ""}
        data["confidential"] = bool(self.confidential)
        try:
            return TicketCreate.model_validate(data)
        except ValidationError as exc:
            raise invalid_input(exc) from None


def current_state(call: Call[Any]) -> tuple[str, str]:
    """The status the last status form set (the redirect's query): its value and label; empty if none."""
    query = call.request.query
    try:
        form = StateForm.model_validate(
            {"state": query.get("state"), "reason": query.get("reason", "")}
        )
        reason = pause_reason(form.state, form.reason, settings_of(call.app).console.pause_reasons)
    except (ValidationError, ConsoleError):
        return "", ""
    return form.state, state_label(form.state, reason)


async def _workspace(
    call: Call[Any], *, error: str | None = None, invalid: set[str] | None = None, status: int = 200
) -> web.Response:
    q = call.request.query.get("q", "").strip()[:500]
    answer, knowledge_error = None, None
    if q:
        try:
            answer = await services_of(call.app).ask(q)
        except Unavailable as exc:
            knowledge_error = exc.message
    state, label = current_state(call)
    context = {
        "channels": CHANNELS,
        "kinds": KINDS,
        "urgencies": URGENCIES,
        "categories": load_categories().paths(),
        "states": AGENT_STATE_LABELS,
        "pause_reasons": settings_of(call.app).console.pause_reasons,
        "current_state": state,
        "current_label": label,
        "topic": screenpop_topic(call.user.username),
        "form": call.form,
        "error": error,
        "invalid_fields": invalid or set(),
        "q": q,
        "answer": answer,
        "knowledge_error": knowledge_error,
        "state_error": call.request.query.get("state_error", ""),
        "tz": ZoneInfo(settings_of(call.app).timezone),
        # the browser softphone, for agents given a WebRTC extension ([softphone.extensions])
        "softphone_extension": settings_of(call.app).softphone.extensions.get(call.user.username),
        "transfer_modes": MODE_LABELS,  # the transfer buttons beside the softphone (_transfer.html)
    }
    return render_page(call, "workspace.html", context, status=status)


@routes.page(
    "GET", "/workspace", title="话务员工作台", roles=AGENTS, nav="工作台", name="workspace_page"
)
async def workspace_page(call: Call[None]) -> web.Response:
    return await _workspace(call)


@routes.page(
    "POST",
    "/workspace/state",
    title="坐席状态",
    roles=AGENTS,
    form=StateForm,
    name="workspace_state",
    errors=(422, 503),
)
async def workspace_state(call: Call[StateForm]) -> web.Response:
    if call.invalid is not None:
        return await _workspace(call, error=call.invalid.message, status=call.invalid.status)
    try:
        out = await set_state(call, call.body.state, call.body.reason)
    except ConsoleError as exc:
        return await _workspace(call, error=exc.message, status=exc.status)
    shown = {"state": out.state} | ({"reason": out.reason} if out.reason else {})
    return see_other(f"/workspace?{urlencode(shown)}")


@routes.page(
    "POST",
    "/workspace/tickets",
    title="受理工单",
    roles=AGENTS,
    form=IntakeForm,
    name="workspace_create",
    errors=(422,),
)
async def workspace_create(call: Call[IntakeForm]) -> web.Response:
    try:
        if call.invalid is not None:
            raise call.invalid
        ticket = await file_ticket(call, call.body.as_create())
    except (ConsoleError, TicketError) as exc:
        fields = {d["field"] for d in getattr(exc, "details", [])} | {
            getattr(exc, "field", None) or ""
        }
        return await _workspace(
            call, error=exc.message, invalid=fields, status=status_of(call, exc)
        )
    return see_other(f"/tickets/{ticket.ticket_no}?created=1")
