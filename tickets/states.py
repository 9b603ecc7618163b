"""The 接诉即办 loop as a pure, table-driven state machine; ``tickets.services`` applies it.

受理 accepted → 审核 reviewed → 派发 dispatched → 签收 signed → 办理 in_progress → 反馈 replied
→ 核验 verified → 回访 callback → 办结 closed, with 即办 (closed at intake), 退回 (back to 审核),
延期 (request/approve/reject, state unchanged), 二次派单 (back to 派发) and 撤销 withdrawn. 并单: a duplicate
ticket is merged into a main ticket and waits (``merged``) until the main one has its result, then goes to 回访
(``merge_settle``, by the system) so that its own caller is called back too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from tickets.errors import Forbidden, IllegalTransition, InvalidInput


class State(StrEnum):
    ACCEPTED = "accepted"  # 受理
    REVIEWED = "reviewed"  # 审核（待派发；退回件也回到这里）
    DISPATCHED = "dispatched"  # 派发（待签收）
    SIGNED = "signed"  # 签收
    IN_PROGRESS = "in_progress"  # 办理
    REPLIED = "replied"  # 反馈（待核验）
    VERIFIED = "verified"  # 核验通过（待回访）
    CALLBACK = "callback"  # 回访中（已尝试，未接通）
    CLOSED = "closed"  # 办结
    WITHDRAWN = "withdrawn"  # 撤销
    MERGED = "merged"  # 已并单: waits on its main ticket (Ticket.merged_into_id)


STATE_LABELS: dict[State, str] = {
    State.ACCEPTED: "受理",
    State.REVIEWED: "审核",
    State.DISPATCHED: "派发",
    State.SIGNED: "签收",
    State.IN_PROGRESS: "办理",
    State.REPLIED: "反馈",
    State.VERIFIED: "核验",
    State.CALLBACK: "回访",
    State.CLOSED: "办结",
    State.WITHDRAWN: "撤销",
    State.MERGED: "已并单",
}
TERMINAL_STATES = frozenset({State.CLOSED, State.WITHDRAWN})
# Worked on, warned about and counted as backlog; a merged ticket is not: its main ticket carries the matter.
OPEN_STATES = frozenset(State) - TERMINAL_STATES - {State.MERGED}
# The main ticket has its result (核验通过 or 即办): its merged tickets go to 回访 (``merge_settle``).
RESULT_STATES = frozenset({State.VERIFIED, State.CLOSED})


class Role(StrEnum):
    AGENT = "agent"  # 话务员
    DISPATCHER = "dispatcher"  # 派单员
    HANDLER = "handler"  # 承办人
    LEADER = "leader"  # 领导
    SUPERVISOR = "supervisor"  # 班长: reads tickets like a leader, performs no step of the loop
    GRID = "grid"  # 网格员
    ADMIN = "admin"  # 管理员
    SYSTEM = "system"
    BOT = "bot"
    CALLER = "caller"  # 来电人


ROLE_LABELS: dict[str, str] = {
    Role.AGENT: "话务员",
    Role.DISPATCHER: "派单员",
    Role.HANDLER: "承办人",
    Role.LEADER: "领导",
    Role.SUPERVISOR: "班长",
    Role.GRID: "网格员",
    Role.ADMIN: "管理员",
    Role.SYSTEM: "系统",
    Role.BOT: "智能机器人",
    Role.CALLER: "来电人",
}

_INTAKE = frozenset(
    {Role.AGENT, Role.BOT, Role.GRID, Role.LEADER, Role.SYSTEM, Role.ADMIN, Role.CALLER}
)
_INSTANT = frozenset({Role.AGENT, Role.BOT, Role.ADMIN})
_DISPATCH = frozenset({Role.DISPATCHER, Role.ADMIN})
_APPROVE = frozenset({Role.DISPATCHER, Role.LEADER, Role.ADMIN})
_HANDLE = frozenset({Role.HANDLER})
_CALLBACK = frozenset({Role.SYSTEM, Role.BOT, Role.AGENT, Role.ADMIN})
_WITHDRAW = frozenset({Role.CALLER, Role.AGENT, Role.DISPATCHER, Role.ADMIN})
_WORKING = frozenset({State.SIGNED, State.IN_PROGRESS})
_CALLING = frozenset({State.VERIFIED, State.CALLBACK})
_SYSTEM = frozenset({Role.SYSTEM})


@dataclass(frozen=True)
class Transition:
    """One action: the states it starts from, where it leads (None: stays put), who may perform it."""

    action: str
    label: str
    sources: frozenset[State | None]
    target: State | None
    roles: frozenset[Role]
    own_department: bool = False  # a handler only for tickets its department leads (主办单位)

    def leads_to(self, state: State | None) -> State:
        target = self.target if self.target is not None else state
        assert target is not None, "a transition from nothing must name its target"
        return target


TRANSITIONS: dict[str, Transition] = {
    t.action: t
    for t in (
        Transition("create", "受理", frozenset({None}), State.ACCEPTED, _INTAKE),
        Transition("close_instant", "即办", frozenset({State.ACCEPTED}), State.CLOSED, _INSTANT),
        Transition("review", "审核", frozenset({State.ACCEPTED}), State.REVIEWED, _DISPATCH),
        Transition("dispatch", "派单", frozenset({State.REVIEWED}), State.DISPATCHED, _DISPATCH),
        Transition(
            "return",
            "退回",
            frozenset({State.DISPATCHED, State.SIGNED}),
            State.REVIEWED,
            _HANDLE,
            True,
        ),
        Transition("sign", "签收", frozenset({State.DISPATCHED}), State.SIGNED, _HANDLE, True),
        Transition(
            "start", "开始办理", frozenset({State.SIGNED}), State.IN_PROGRESS, _HANDLE, True
        ),
        Transition("request_extension", "申请延期", _WORKING, None, _HANDLE, True),
        Transition("approve_extension", "同意延期", _WORKING, None, _APPROVE),
        Transition("reject_extension", "驳回延期", _WORKING, None, _APPROVE),
        Transition("reply", "反馈", _WORKING, State.REPLIED, _HANDLE, True),
        Transition("verify", "核验通过", frozenset({State.REPLIED}), State.VERIFIED, _DISPATCH),
        Transition(
            "reject_reply",
            "核验不通过（二次派单）",
            frozenset({State.REPLIED}),
            State.DISPATCHED,
            _DISPATCH,
        ),
        Transition("callback_retry", "回访未接通", _CALLING, State.CALLBACK, _CALLBACK),
        Transition("callback_close", "回访办结", _CALLING, State.CLOSED, _CALLBACK),
        Transition(
            "callback_redispatch", "回访不满意（二次派单）", _CALLING, State.DISPATCHED, _CALLBACK
        ),
        Transition("withdraw", "撤销", frozenset(OPEN_STATES), State.WITHDRAWN, _WITHDRAW),
        Transition("merge", "并单", frozenset(OPEN_STATES), State.MERGED, _DISPATCH),
        Transition(
            "merge_settle",
            "主单已办结（转回访）",
            frozenset({State.MERGED}),
            State.VERIFIED,
            _SYSTEM,
        ),
    )
}


def transition(action: str) -> Transition:
    """The table row of ``action``; an unknown action is bad input."""
    try:
        return TRANSITIONS[action]
    except KeyError:
        raise InvalidInput(
            f"未知的操作：{action!r}", code="ticket.unknown_action", field="action"
        ) from None


def _label(state: State | None) -> str:
    return "（新建）" if state is None else STATE_LABELS[state]


def check(
    state: State | None,
    action: str,
    role: str,
    *,
    department: str | None = None,
    lead_department: str | None = None,
) -> Transition:
    """The transition for ``action`` if ``role`` may perform it in ``state``; otherwise a typed error.

    Raises Forbidden (``ticket.role_forbidden`` / ``ticket.not_own_department``) or IllegalTransition.
    """
    t = transition(action)
    if role not in t.roles:
        raise Forbidden(
            f"{ROLE_LABELS.get(role, role)}无权执行“{t.label}”操作", code="ticket.role_forbidden"
        )
    if state not in t.sources:
        raise IllegalTransition(f"工单当前处于“{_label(state)}”状态，不能执行“{t.label}”操作")
    if (
        t.own_department
        and role == Role.HANDLER
        and (department is None or department != lead_department)
    ):
        raise Forbidden(
            f"只能对本单位主办的工单执行“{t.label}”操作", code="ticket.not_own_department"
        )
    return t


def allowed_actions(
    state: State | None,
    role: str,
    *,
    department: str | None = None,
    lead_department: str | None = None,
) -> list[str]:
    """Actions ``role`` may perform now (for the console's buttons)."""
    out = []
    for action in TRANSITIONS:
        try:
            check(state, action, role, department=department, lead_department=lead_department)
        except (Forbidden, IllegalTransition):
            continue
        out.append(action)
    return out


def replay(steps: Iterable[tuple[str, str | None, str]]) -> State | None:
    """Replay ``(action, from_state, to_state)`` audit steps from nothing; the state they lead to.

    Each step must start where the previous one ended, be legal there, and end where the table says;
    otherwise IllegalTransition (``ticket.audit_inconsistent``).
    """
    state: State | None = None
    for n, (action, from_state, to_state) in enumerate(steps, start=1):
        t = TRANSITIONS.get(action)
        recorded_from = None if from_state is None else State(from_state)
        if (
            t is None
            or recorded_from != state
            or state not in t.sources
            or t.leads_to(state) != State(to_state)
        ):
            raise IllegalTransition(
                f"审计记录第 {n} 条（{action}: {from_state} → {to_state}）与状态机不符",
                code="ticket.audit_inconsistent",
            )
        state = t.leads_to(state)
    return state
