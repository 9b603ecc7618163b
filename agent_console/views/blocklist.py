"""The blocklist of nuisance callers (恶意骚扰来电, ``ivr.blocklist``): the page and JSON API.

The centre's duty office — administrators and dispatchers, who see full numbers — adds and lifts entries;
leaders read the list and the candidates with numbers masked (:func:`agent_console.masking.mask_phone`). Every
change is audited by the service (who, role, when, why). The dialplan enforces the list through the
controller's FastAGI lookup (``ivr.blocklist_agi``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from aiohttp import web
from pydantic import AwareDatetime, Field

from agent_console import keys
from agent_console.errors import NotFound, console_error
from agent_console.masking import mask_phone
from agent_console.roles import Role
from agent_console.routing import Call, RouteTable, render_page
from agent_console.schemas import Model
from agent_console.views.session import see_other
from ivr import blocklist
from ivr.models import BLOCK_REASON_MAX, BlockedCaller
from tickets.text import Line

routes = RouteTable("blocklist")
VIEWERS = frozenset({Role.ADMIN, Role.DISPATCHER, Role.LEADER})
EDITORS = frozenset({Role.ADMIN, Role.DISPATCHER})
DURATIONS = {
    "7": 7,
    "30": 30,
    "90": 90,
    "365": 365,
    "permanent": None,
}  # the page's 有效期 choices (days)


class BlockIn(Model):
    phone: str = Field(min_length=1, max_length=32, description="来电号码（手机或带区号的固话）")
    reason: Line = Field(min_length=1, max_length=BLOCK_REASON_MAX, description="原因")
    expires_at: AwareDatetime | None = Field(None, description="到期时间（带时区）；为空表示永久")


class LiftIn(Model):
    note: Line = Field("", max_length=BLOCK_REASON_MAX, description="解除说明")


class BlockOut(Model):
    id: int
    phone: str = Field(description="来电号码（按角色脱敏）")
    reason: str
    expires_at: datetime | None = Field(description="到期时间；为空表示永久")
    created_by: str
    created_at: datetime
    lifted_at: datetime | None
    lifted_by: str | None
    active: bool = Field(description="此刻是否生效（未解除且未到期）")


class BlockList(Model):
    entries: list[BlockOut]


class BlockQuery(Model):
    include_inactive: bool = Field(False, description="也列出已解除、已到期的记录")


class CandidateOut(Model):
    phone: str = Field(description="来电号码（按角色脱敏）")
    calls: int = Field(description="统计窗口内的呼入次数")
    withdrawn: int = Field(description="统计窗口内被撤销（无效）的工单数")


class CandidateList(Model):
    rule: str = Field(description="候选规则")
    candidates: list[CandidateOut]


class BlockForm(Model):
    phone: str = ""
    reason: str = ""
    duration: Literal["7", "30", "90", "365", "permanent"] = "30"


def block_out(row: BlockedCaller, role: Role, now: datetime) -> BlockOut:
    active = row.lifted_at is None and (row.expires_at is None or row.expires_at > now)
    return BlockOut(
        id=row.id,
        phone=mask_phone(row.phone, role),
        reason=row.reason,
        expires_at=row.expires_at,
        created_by=row.created_by,
        created_at=row.created_at,
        lifted_at=row.lifted_at,
        lifted_by=row.lifted_by,
        active=active,
    )


def _block_id(call: Call[Any]) -> int:
    raw = call.request.match_info["block_id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise NotFound("黑名单中没有该记录")
    return int(raw)


def _rule_text(call: Call[Any]) -> str:
    rule = call.app[keys.SETTINGS].blocklist
    return (
        f"{rule.candidate_window_hours} 小时内呼入不少于 {rule.candidate_min_calls} 次，"
        f"或 {rule.candidate_window_days} 天内被撤销（无效）的工单不少于 {rule.candidate_min_withdrawn} 件"
    )


async def _add(
    call: Call[Any], phone: str, reason: str, expires_at: datetime | None
) -> BlockedCaller:
    async with call.db() as db:
        return await blocklist.add_block(
            db,
            phone,
            reason,
            expires_at=expires_at,
            actor=call.user.username,
            role=call.role.value,
            now=call.now,
        )


async def _lift(call: Call[Any], note: str) -> BlockedCaller:
    async with call.db() as db:
        return await blocklist.lift_block(
            db,
            _block_id(call),
            actor=call.user.username,
            role=call.role.value,
            note=note,
            now=call.now,
        )


async def _candidates(call: Call[Any]) -> list[CandidateOut]:
    async with call.db() as db:
        found = await blocklist.candidates(db, call.app[keys.SETTINGS].blocklist, now=call.now)
    return [
        CandidateOut(phone=mask_phone(c.phone, call.role), calls=c.calls, withdrawn=c.withdrawn)
        for c in found
    ]


@routes.api(
    "GET",
    "/api/v1/blocklist",
    summary="来电黑名单",
    roles=VIEWERS,
    query=BlockQuery,
    response=BlockList,
)
async def blocklist_api(call: Call[None]) -> BlockList:
    async with call.db() as db:
        rows = await blocklist.list_blocks(
            db, now=call.now, include_inactive=call.query.include_inactive
        )
    return BlockList(entries=[block_out(r, call.role, call.now) for r in rows])


@routes.api(
    "POST",
    "/api/v1/blocklist",
    summary="加入来电黑名单",
    roles=EDITORS,
    request=BlockIn,
    response=BlockOut,
    status=201,
    errors=(409,),
)
async def block_create_api(call: Call[BlockIn]) -> BlockOut:
    row = await _add(call, call.body.phone, call.body.reason, call.body.expires_at)
    return block_out(row, call.role, call.now)


@routes.api(
    "POST",
    "/api/v1/blocklist/{block_id}/lift",
    summary="解除来电黑名单",
    roles=EDITORS,
    request=LiftIn,
    response=BlockOut,
    errors=(404, 409),
)
async def block_lift_api(call: Call[LiftIn]) -> BlockOut:
    return block_out(await _lift(call, call.body.note), call.role, call.now)


@routes.api(
    "GET",
    "/api/v1/blocklist/candidates",
    summary="建议加入黑名单的号码",
    roles=VIEWERS,
    response=CandidateList,
)
async def candidates_api(call: Call[None]) -> CandidateList:
    return CandidateList(rule=_rule_text(call), candidates=await _candidates(call))


async def _page(call: Call[Any], *, error: str | None = None, status: int = 200) -> web.Response:
    async with call.db() as db:
        rows = await blocklist.list_blocks(db, now=call.now)
    context = {
        "entries": [block_out(r, call.role, call.now) for r in rows],
        "candidates": await _candidates(call),
        "rule": _rule_text(call),
        "error": error,
        "form": call.form if error else {},
        "can_edit": call.role in EDITORS,
        "added": call.request.query.get("added"),
        "reason_max": BLOCK_REASON_MAX,
    }
    return render_page(call, "blocklist.html", context, status=status)


@routes.page(
    "GET", "/blocklist", title="来电黑名单", roles=VIEWERS, nav="黑名单", name="blocklist_page"
)
async def blocklist_page(call: Call[None]) -> web.Response:
    return await _page(call)


@routes.page(
    "POST",
    "/blocklist",
    title="来电黑名单",
    roles=EDITORS,
    form=BlockForm,
    name="blocklist_add",
    errors=(409, 422),
)
async def blocklist_add(call: Call[BlockForm]) -> web.Response:
    if call.body is None:
        return await _page(
            call, error=call.invalid.message if call.invalid else "输入有误", status=422
        )
    days = DURATIONS[call.body.duration]
    expires_at = call.now + timedelta(days=days) if days else None
    try:
        row = await _add(call, call.body.phone, call.body.reason, expires_at)
    except blocklist.BlocklistError as exc:
        refusal = console_error(exc)
        return await _page(call, error=refusal.message, status=refusal.status)
    return see_other(f"/blocklist?added={row.id}")


@routes.page(
    "POST",
    "/blocklist/{block_id}/lift",
    title="解除来电黑名单",
    roles=EDITORS,
    name="blocklist_lift",
    errors=(404, 409),
)
async def blocklist_lift(call: Call[None]) -> web.Response:
    await _lift(call, "")
    return see_other("/blocklist")
