"""One fake of the console's switchboard (agent_console.switchboard.Switchboard) for the console, browser and
command-channel tests: it answers like ivr.callcontrol.CallControl and records what it was asked; on a
controller's side of the command channel it also takes the desk's commands (ConsoleCommands)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from agent_console.calls import AgentState
from config.errors import HotlineError
from ivr.callcontrol import AgentOnBoard, Mode, Spy, SpyAction, Target
from ivr.models import CallTransfer

CALL = "1741000000.1"  # the caller's channel of the agent's call
NOW = datetime(2025, 3, 3, 2, 0, tzinfo=UTC)
BOARD = [AgentOnBoard("PJSIP/agent", "王芳", "talking", "通话中", CALL, 12.5, 7)]


class FakeSwitchboard:
    """Records each transfer, spy leg, softphone password, agent status and call-back asked for; the board is
    ``agents``. With ``refusal`` set every call raises it (as CallControl raises its coded errors); with
    ``hold`` set a call waits for it (a controller that is slow to finish)."""

    def __init__(self, agents: list[AgentOnBoard] | None = None) -> None:
        self.agents = BOARD if agents is None else agents
        self.transfers: list[tuple[str, Target, Mode, str, str | None]] = []
        self.spies: list[dict[str, Any]] = []
        self.softphones: dict[str, tuple[str, float]] = {}
        self.states: list[tuple[str, AgentState, str]] = []
        self.callbacks: list[str] = []
        self.refusal: HotlineError | None = None
        self.hold: asyncio.Event | None = None

    async def _answer(self) -> None:
        if self.hold is not None:
            await self.hold.wait()
        if self.refusal is not None:
            raise self.refusal

    async def transfer(
        self, agent_interface: str, target: Target, mode: Mode, *, by: str, ticket_no: str | None
    ) -> CallTransfer:
        await self._answer()
        self.transfers.append((agent_interface, target, mode, by, ticket_no))
        return CallTransfer(
            id=len(self.transfers),
            uniqueid=CALL,
            ticket_no=ticket_no,
            mode=mode,
            target_kind=target.kind,
            target=target.target,
            target_label=target.label,
            by_user=by,
            at=NOW,
            outcome="dialling",
        )

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
        await self._answer()
        self.spies.append(
            {"interface": agent_interface, "action": action, "agent": agent}
            | {"supervisor": supervisor, "role": role, "phone": phone}
        )
        return Spy(action, CALL, "control-1", "PJSIP/agent-01", notified=True)

    async def board(self, tz: ZoneInfo) -> list[AgentOnBoard] | None:
        await self._answer()
        return self.agents

    async def provision_softphone(self, extension: str, password: str, ttl_s: float) -> None:
        await self._answer()
        self.softphones[extension] = (password, ttl_s)

    async def revoke_softphone(self, extension: str) -> None:
        await self._answer()
        self.softphones.pop(extension, None)

    async def set_agent_state(self, interface: str, state: AgentState, reason: str = "") -> None:
        await self._answer()
        self.states.append((interface, state, reason))

    async def start_callback(self, ticket_no: str) -> None:
        await self._answer()
        self.callbacks.append(ticket_no)
