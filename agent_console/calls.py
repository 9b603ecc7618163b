"""The console's interface to the telephony side (the AMI controller), both ways.

Console → telephony: :class:`CallControl` — an agent's status (示闲 / 示忙 / 话后整理, i.e. AMI QueuePause) and
the automatic call-back (回访) of a ticket. The composition root wires the real controller; without one the
console answers 503 for these buttons (:class:`UnwiredCallControl`).

Telephony → console: :func:`publish_screen_pop` — when an agent's phone rings, the controller calls it and every
browser of that agent gets the screen pop (来电弹屏) on the hub topic ``screenpop:<username>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console.errors import InvalidInput as ConsoleInvalidInput
from agent_console.errors import Unavailable
from agent_console.hub import Hub, TopicRule
from agent_console.roles import Role
from tickets.errors import InvalidInput
from tickets.phone import normalise_phone
from tickets.queries import caller_history
from tickets.states import STATE_LABELS, State

AgentState = Literal["ready", "paused", "wrap_up"]  # 示闲 示忙 话后整理
AGENT_STATE_LABELS: dict[str, str] = {"ready": "示闲", "paused": "示忙", "wrap_up": "话后整理"}
SCREENPOP = "screenpop"
HISTORY_LIMIT = 10


class UnknownPauseReason(ConsoleInvalidInput):
    code = "console.unknown_pause_reason"


def pause_reason(state: AgentState, reason: str, reasons: Sequence[str]) -> str:
    """The reason of the queue pause: 示忙 takes one of the centre's ``reasons`` (``console.pause_reasons``);
    示闲 and 话后整理 take none (the wrap-up reason is the telephony side's own)."""
    if state == "paused" and reason in reasons:
        return reason
    if state != "paused" and not reason:
        return ""
    message = "只有示忙需要选择原因"
    if state == "paused":
        message = f"示忙原因只能是：{'、'.join(reasons)}"
    raise UnknownPauseReason(
        message, details=[{"field": "reason", "code": "unknown_pause_reason", "message": message}]
    )


def state_label(state: AgentState, reason: str = "") -> str:
    """示闲, 话后整理, 示忙 or 示忙（培训）."""
    label = AGENT_STATE_LABELS[state]
    return f"{label}（{reason}）" if reason else label


class CallControl(Protocol):
    """What the console asks of the telephony side."""

    async def set_agent_state(self, interface: str, state: AgentState, reason: str = "") -> None:
        """Pause or unpause the agent's queue membership (QueuePause): ``paused`` with the agent's ``reason``
        (:func:`pause_reason`), ``wrap_up`` with the wrap-up reason."""

    async def start_callback(self, ticket_no: str) -> None:
        """Place the automatic 回访 call of ``ticket_no`` (Originate into ``hotline-callback``)."""


class UnwiredCallControl:
    """No telephony wired (e.g. ``hotline console`` alone): the buttons answer 503 with a Chinese reason."""

    async def set_agent_state(self, interface: str, state: AgentState, reason: str = "") -> None:
        raise Unavailable("未接入电话系统（AMI），无法切换坐席状态")

    async def start_callback(self, ticket_no: str) -> None:
        raise Unavailable("未接入电话系统（AMI），无法发起自动回访")


def default_interface(username: str) -> str:
    """The agent's softphone endpoint when nothing else is configured."""
    return f"PJSIP/{username}"


def _own_agent_topic(user: Any, argument: str | None) -> bool:
    return argument is not None and argument == user.username


# Only the agent themself (and never another role) hears their screen pops.
SCREENPOP_RULE = TopicRule(SCREENPOP, {Role.AGENT, Role.ADMIN}, _own_agent_topic)


def screenpop_topic(username: str) -> str:
    return f"{SCREENPOP}:{username}"


async def screen_pop_payload(
    session: AsyncSession,
    caller: str,
    *,
    call_id: str | None = None,
    transcript: Sequence[str] | str | None = None,
    from_bot: bool = False,
    limit: int = HISTORY_LIMIT,
) -> dict[str, Any]:
    """What the agent sees when the call rings through: the number, the caller's earlier tickets (a repeat
    warning when any is still open) and what the bot heard before handing over."""
    try:
        phone = normalise_phone(caller)
    except InvalidInput:  # withheld or odd numbers still pop, without history
        phone = None
    history = await caller_history(session, phone, limit) if phone else []
    earlier = [
        {
            "ticket_no": t.ticket_no,
            "state": t.state,
            "state_label": STATE_LABELS[State(t.state)],
            "created_at": t.created_at.isoformat(),
            "summary": t.summary,
            "category": t.category,
            "warning": t.warning,
        }
        for t in history
    ]
    open_count = sum(1 for t in history if State(t.state) not in (State.CLOSED, State.WITHDRAWN))
    lines = [transcript] if isinstance(transcript, str) else list(transcript or [])
    return {
        "caller": caller,
        "phone": phone,
        "call_id": call_id,
        "from_bot": from_bot,
        "transcript": "\n".join(lines),
        "earlier": earlier,
        "repeat_warning": (
            f"该来电人近期已有 {len(history)} 件工单，其中 {open_count} 件未办结，请核对是否重复诉求"
            if history
            else ""
        ),
    }


async def publish_screen_pop(
    hub: Hub, sessionmaker: async_sessionmaker[AsyncSession], username: str, caller: str, **kw: Any
) -> int:
    """Build the screen pop for ``caller`` and push it to ``username``'s browsers; returns how many got it."""
    async with sessionmaker() as session:
        payload = await screen_pop_payload(session, caller, **kw)
    return hub.publish(screenpop_topic(username), payload)
