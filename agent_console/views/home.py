"""The home page of each role (placeholders until the ticket screens arrive)."""

from __future__ import annotations

from typing import Any

from agent_console.roles import ALL_ROLES, Role
from agent_console.routing import Call, RouteTable

routes = RouteTable("home")

# What each role will find here; the ticket screens replace these cards.
ROLE_CARDS: dict[Role, list[tuple[str, str]]] = {
    Role.AGENT: [
        ("来电弹屏", "来电时自动弹出来电人信息与历史工单。"),
        ("新建工单", "受理市民诉求，能即办的当场办结。"),
    ],
    Role.DISPATCHER: [
        ("待审核", "审核话务员提交的工单。"),
        ("待派发", "按派单目录把工单派给承办单位。"),
    ],
    Role.HANDLER: [
        ("待签收", "本单位新派来的工单。"),
        ("办理中", "本单位正在办理、待反馈的工单。"),
    ],
    Role.LEADER: [
        ("驾驶舱", "响应率、办结率、满意率与热点诉求。"),
        ("预警", "临期与超期工单的黄牌、红牌。"),
    ],
    Role.GRID: [("网格工单", "本网格内需要现场核实的工单。")],
    Role.SUPERVISOR: [
        ("班长席", "坐席实时状态、通话时长与今日接听量。"),
        ("监听 / 密语 / 强插", "对坐席的当前通话监听、只对坐席说话或三方通话，全部留痕。"),
    ],
    Role.ADMIN: [
        ("用户管理", "新建账号、分配角色、停用账号。"),
        ("系统状态", "健康检查与运行指标。"),
    ],
}


@routes.page(
    "GET", "/", title="首页", roles=ALL_ROLES, nav="首页", template="home.html", name="home"
)
async def home(call: Call[None]) -> dict[str, Any]:
    return {"cards": ROLE_CARDS[call.role], "scope": call.scope}
