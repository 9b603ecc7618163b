"""The console's call control (转接, 班长监听): what it asks of the telephony side, given to ``create_app``.

The composition root wires :class:`ivr.callcontrol.CallControl` of its controller; without one (``hotline console``
alone) the transfer and supervision buttons answer 503 (:class:`UnwiredSwitchboard`). The agent whose screen shows
a supervisor listening is told on the hub topic ``user:<username>`` (a ``monitored`` event) when the centre's
policy ``callcontrol.notify_agent`` says so.
"""

from __future__ import annotations

from typing import Protocol
from zoneinfo import ZoneInfo

from aiohttp import web

from agent_console.errors import Unavailable
from ivr.callcontrol import AgentOnBoard, Mode, Spy, SpyAction, Target
from ivr.models import CallTransfer


class Switchboard(Protocol):
    """Transfers of an agent's call and supervisors' spying on it."""

    async def transfer(
        self, agent_interface: str, target: Target, mode: Mode, *, by: str, ticket_no: str | None
    ) -> CallTransfer: ...

    async def spy(
        self,
        agent_interface: str,
        action: SpyAction,
        *,
        agent: str,
        supervisor: str,
        role: str,
        phone: str,
    ) -> Spy: ...

    async def board(self, tz: ZoneInfo) -> list[AgentOnBoard] | None:
        """Every queue member now; None when no telephony is wired."""


class UnwiredSwitchboard:
    """No telephony in this process: the buttons answer 503 with a Chinese reason, the board is empty."""

    async def transfer(
        self, agent_interface: str, target: Target, mode: Mode, *, by: str, ticket_no: str | None
    ) -> CallTransfer:
        raise Unavailable("未接入电话系统（AMI），无法转接")

    async def spy(
        self,
        agent_interface: str,
        action: SpyAction,
        *,
        agent: str,
        supervisor: str,
        role: str,
        phone: str,
    ) -> Spy:
        raise Unavailable("未接入电话系统（AMI），无法监听")

    async def board(self, tz: ZoneInfo) -> list[AgentOnBoard] | None:
        return None


SWITCHBOARD = web.AppKey("switchboard", Switchboard)


def switchboard_of(app: web.Application) -> Switchboard:
    return app.get(SWITCHBOARD) or UnwiredSwitchboard()
