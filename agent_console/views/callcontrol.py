"""Call control in the console: an agent transfers the current call from the workspace, beside the softphone
(转接: to another agent, to a department's hotline from the dispatch catalogue, one-key to an emergency number;
blind, attended 咨询转接 or three-way 三方通话), the ticket page lists a ticket's transfers, and supervisors
(班长, leaders, administrators) watch the live agent board and listen (监听), whisper (密语) or barge in (强插).

Every action is role-checked by its route, goes through :mod:`agent_console.switchboard` to
:mod:`ivr.callcontrol`, and is recorded there (``call_transfers``; the immutable ``supervision_actions`` audit).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agent_console import keys
from agent_console.desk.services import services_of, settings_of
from agent_console.errors import NotFound
from agent_console.hub import Hub
from agent_console.models import User
from agent_console.roles import Role
from agent_console.routing import Call, RouteTable
from agent_console.schemas import Model
from agent_console.switchboard import switchboard_of
from ivr.callcontrol import (
    OUTCOME_LABELS,
    SPY_LABELS,
    Mode,
    SpyAction,
    Target,
    TargetKind,
    agent_target,
    emergency_target,
    outside_target,
    transfers_of,
)
from ivr.models import CallTransfer
from tickets.dispatch_catalogue import load_catalogue

routes = RouteTable("callcontrol")
AGENTS = frozenset({Role.AGENT, Role.ADMIN})
SUPERVISORS = frozenset({Role.SUPERVISOR, Role.LEADER, Role.ADMIN})
TRANSFER_READERS = frozenset(
    {Role.AGENT, Role.DISPATCHER, Role.SUPERVISOR, Role.LEADER, Role.ADMIN}
)
TRANSFER_TO = frozenset(
    {Role.AGENT, Role.SUPERVISOR}
)  # whom a call goes to: another agent, the 班长
MODE_LABELS = {"blind": "直接转接", "attended": "咨询转接", "three_way": "三方通话"}
KIND_LABELS = {"agent": "坐席", "department": "承办单位", "emergency": "应急联动"}
TICKET_NO = r"^12345-\d{8}-\d{5}$"


class TransferIn(Model):
    mode: Mode = Field(
        description="blind 直接转接 / attended 咨询转接（来电人听等待音乐，坐席挂机即完成）/ three_way 三方通话"
    )
    target_kind: TargetKind = Field(
        description="agent 坐席 / department 承办单位 / emergency 应急号码"
    )
    target: str = Field(
        min_length=1, max_length=128, description="坐席账号、承办单位名称或应急号码"
    )
    ticket_no: str | None = Field(default=None, pattern=TICKET_NO, description="本次来电的工单号")


class TransferOut(Model):
    id: int
    uniqueid: str
    ticket_no: str | None
    mode: str
    mode_label: str
    target_kind: str
    target: str
    target_label: str
    by_user: str
    at: datetime
    outcome: str
    outcome_label: str


class TransferList(Model):
    transfers: list[TransferOut]


class TransferQuery(Model):
    ticket_no: str = Field(pattern=TICKET_NO)


class DepartmentLine(Model):
    department: str
    phone: str


class EmergencyLine(Model):
    number: str
    label: str


class TransferTargets(Model):
    departments: list[DepartmentLine]
    emergency: list[EmergencyLine]


class AgentBoardOut(Model):
    agent: str | None = Field(description="坐席的控制台账号（监听时使用）；非本系统账号为空")
    interface: str
    name: str
    state: str
    state_label: str
    uniqueid: str | None
    talk_s: float | None
    calls_today: int


class Board(Model):
    connected: bool = Field(description="false：本进程未接入电话系统（AMI），无实时状态")
    agents: list[AgentBoardOut]


class SpyIn(Model):
    action: SpyAction = Field(
        description="listen 监听 / whisper 密语（仅坐席听到） / barge 强插（三方）"
    )
    agent: str = Field(min_length=1, max_length=64, description="被监听坐席的账号")


class SpyOut(Model):
    action: str
    label: str
    agent: str
    uniqueid: str
    agent_notified: bool


def transfer_out(row: CallTransfer) -> TransferOut:
    return TransferOut(
        id=row.id,
        uniqueid=row.uniqueid,
        ticket_no=row.ticket_no,
        mode=row.mode,
        mode_label=MODE_LABELS.get(row.mode, row.mode),
        target_kind=row.target_kind,
        target=row.target,
        target_label=row.target_label,
        by_user=row.by_user,
        at=row.at,
        outcome=row.outcome,
        outcome_label=OUTCOME_LABELS.get(row.outcome, row.outcome),
    )


def publish_transfer_outcome(hub: Hub, row: CallTransfer) -> int:
    """Tell the agent who made transfer ``row`` how it ended (``user:<agent>``, kind ``transfer``): the
    workspace takes the 完成转接 / 取消转接 buttons of an attended transfer away and shows it as a notice."""
    out = transfer_out(row)
    message = f"{out.mode_label}至 {out.target_label}：{out.outcome_label}"
    return hub.publish(
        f"user:{row.by_user}",
        out.model_dump(mode="json") | {"kind": "transfer", "message": message},
    )


async def ticket_transfers(db: AsyncSession, ticket_no: str) -> list[TransferOut]:
    """The transfers of a ticket's calls, oldest first (the API and the ticket page)."""
    return [transfer_out(r) for r in await transfers_of(db, ticket_no)]


async def _user(call: Call[Any], username: str, roles: frozenset[Role]) -> User:
    async with call.db() as db:
        user = await db.scalar(select(User).where(User.username == username, User.active))
    if user is None or Role(user.role) not in roles:
        raise NotFound("找不到该坐席")
    return user


async def target_of(call: Call[TransferIn]) -> Target:
    """The transfer target the agent chose: an active agent, a catalogue department with a phone, or one of the
    configured emergency numbers."""
    settings = settings_of(call.app).callcontrol
    body = call.body
    if body.target_kind == "emergency":
        return emergency_target(settings, body.target)
    if body.target_kind == "department":
        phone = load_catalogue(settings_of(call.app)).phone_of(body.target)
        if not phone:
            raise NotFound("派单目录中没有该承办单位的转接电话")
        return outside_target(settings, "department", phone, body.target)
    user = await _user(call, body.target, TRANSFER_TO)
    phone = services_of(call.app).agent_interface(user.username)
    return agent_target(user.username, user.display_name, phone)


# --- agents: transfers ------------------------------------------------------------------------------------


@routes.api(
    "GET",
    "/api/v1/console/transfer-targets",
    summary="转接目标：承办单位电话（派单目录）与应急联动号码",
    roles=AGENTS | SUPERVISORS,
    response=TransferTargets,
)
async def transfer_targets_api(call: Call[None]) -> TransferTargets:
    settings = settings_of(call.app)
    phones: dict[str, str] = {}
    for entry in load_catalogue(settings).entries:
        if entry.phone:
            phones.setdefault(entry.department, entry.phone)
    return TransferTargets(
        departments=[DepartmentLine(department=d, phone=p) for d, p in phones.items()],
        emergency=[
            EmergencyLine(number=n, label=label)
            for n, label in settings.callcontrol.emergency.items()
        ],
    )


@routes.api(
    "POST",
    "/api/v1/console/calls/transfer",
    summary="转接当前通话（直接转接、咨询转接或三方通话），记入工单",
    roles=AGENTS,
    request=TransferIn,
    response=TransferOut,
    status=201,
    errors=(404, 409, 422, 503, 504),
)
async def transfer_api(call: Call[TransferIn]) -> TransferOut:
    target = await target_of(call)
    interface = services_of(call.app).agent_interface(call.user.username)
    row = await switchboard_of(call.app).transfer(
        interface, target, call.body.mode, by=call.user.username, ticket_no=call.body.ticket_no
    )
    return transfer_out(row)


@routes.api(
    "GET",
    "/api/v1/console/transfers",
    summary="工单的转接记录（谁、转给谁、何时、结果）",
    roles=TRANSFER_READERS,
    query=TransferQuery,
    response=TransferList,
)
async def transfers_api(call: Call[None]) -> TransferList:
    async with call.db() as db:
        return TransferList(transfers=await ticket_transfers(db, call.query.ticket_no))


# --- supervisors: the live board, listen / whisper / barge ------------------------------------------------


@routes.api(
    "GET",
    "/api/v1/console/supervision/board",
    summary="班长席：坐席实时状态（状态、当前通话时长、今日接听量）",
    roles=SUPERVISORS,
    response=Board,
    errors=(504,),
)
async def board_api(call: Call[None]) -> Board:
    tz = ZoneInfo(settings_of(call.app).timezone)
    agents = await switchboard_of(call.app).board(tz)
    accounts = await _agent_accounts(call)
    return Board(
        connected=agents is not None,
        agents=[
            AgentBoardOut.model_validate(
                vars(a) | {"agent": accounts.get(a.interface)}, from_attributes=False
            )
            for a in agents or []
        ],
    )


async def _agent_accounts(call: Call[Any]) -> dict[str, str]:
    """Queue member interface → the agent's console account."""
    interface = services_of(call.app).agent_interface
    async with call.db() as db:
        names = await db.scalars(
            select(User.username).where(User.active, User.role.in_([r.value for r in AGENTS]))
        )
        return {interface(name): name for name in names}


@routes.api(
    "POST",
    "/api/v1/console/supervision",
    summary="班长监听 / 密语 / 强插坐席的当前通话（留痕）",
    roles=SUPERVISORS,
    request=SpyIn,
    response=SpyOut,
    status=201,
    errors=(404, 409, 422, 503, 504),
)
async def supervision_api(call: Call[SpyIn]) -> SpyOut:
    agent = await _user(call, call.body.agent, AGENTS)
    phones = services_of(
        call.app
    ).agent_interface  # console user → their phone (queue member interface)
    spy = await switchboard_of(call.app).spy(
        phones(agent.username),
        call.body.action,
        agent=agent.username,
        supervisor=call.user.username,
        role=call.user.role,
        phone=phones(call.user.username),
    )
    label = SPY_LABELS[spy.action]
    if spy.notified:
        call.app[keys.HUB].publish(
            f"user:{agent.username}",
            {"kind": "monitored", "action": spy.action, "message": f"班长正在{label}您的通话"},
        )
    return SpyOut(
        action=spy.action,
        label=label,
        agent=agent.username,
        uniqueid=spy.uniqueid,
        agent_notified=spy.notified,
    )


# --- pages ----------------------------------------------------------------------------------------------


@routes.page(
    "GET",
    "/supervision",
    title="班长席",
    roles=SUPERVISORS,
    nav="班长席",
    template="supervision.html",
    name="supervision_page",
)
async def supervision_page(call: Call[None]) -> dict[str, Any]:
    return {
        "actions": list(SPY_LABELS.items()),  # in this order (a mapping's JSON would sort them)
        # the supervisor's browser softphone ([softphone.extensions]): the spy rings it
        "softphone_extension": settings_of(call.app).softphone.extensions.get(call.user.username),
    }
