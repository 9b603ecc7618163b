"""The console's call control (转接, 班长监听): what it asks of the telephony side, given to ``create_app``.

The composition root wires :class:`ivr.callcontrol.CallControl` of its controller (``hotline run``); a separate
``hotline console`` on PostgreSQL wires :class:`RemoteSwitchboard`, which sends each call to a ``hotline ivr``
through the database (:mod:`agent_console.command_channel`), and :class:`RemoteCallControl` its desk's agent
status and call-back buttons the same way; without either the transfer and supervision buttons
answer 503 (:class:`UnwiredSwitchboard`). The agent whose screen shows
a supervisor listening is told on the hub topic ``user:<username>`` (a ``monitored`` event) when the centre's
policy ``callcontrol.notify_agent`` says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import select

from agent_console import calls
from agent_console.command_channel import CommandClient, NoController
from agent_console.errors import Unavailable
from ivr.callcontrol import AgentOnBoard, Mode, Spy, SpyAction, Target
from ivr.models import CallRecord, CallTransfer

T = TypeVar("T")
# A member on the boards of several PBXs shows once, in the first of these states it has (on a call on one PBX
# it is talking, whatever the other says).
BOARD_STATES = ("talking", "wrap_up", "paused", "ready", "offline")


def merge_boards(boards: Iterable[list[AgentOnBoard]]) -> list[AgentOnBoard]:
    """The PBXs' boards as one, a row per interface (the console knows an agent by interface: one login, one
    phone), in the order first seen."""
    rank = {state: i for i, state in enumerate(BOARD_STATES)}
    merged: dict[str, AgentOnBoard] = {}
    for board in boards:
        for agent in board:
            held = merged.get(agent.interface)
            if held is None or rank.get(agent.state, len(rank)) < rank.get(held.state, len(rank)):
                merged[agent.interface] = agent
    return list(merged.values())


class Switchboard(Protocol):
    """Transfers of an agent's call, supervisors' spying on it, the browser softphones' SIP passwords."""

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

    async def provision_softphone(self, extension: str, password: str, ttl_s: float) -> None:
        """Browser softphone ``extension`` registers with ``password`` for ``ttl_s`` seconds (the previous
        password stops working)."""

    async def revoke_softphone(self, extension: str) -> None:
        """Browser softphone ``extension``'s password stops working now."""


class ConsoleCommands(Switchboard, calls.CallControl, Protocol):
    """Every call a console worker sends a controller through the command channel (its :class:`Codec`): the
    switchboard's, and the desk's agent status (示闲 / 示忙 / 话后整理) and manual call-back (回访)."""


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

    async def provision_softphone(self, extension: str, password: str, ttl_s: float) -> None:
        raise Unavailable("未接入电话系统（AMI），无法开通浏览器软电话")

    async def revoke_softphone(self, extension: str) -> None:
        return None  # nothing was issued through it


class RemoteSwitchboard:
    """A console worker's switchboard through the command channel: each call runs on a controller's call control
    (its coded errors come back as they are). A new :class:`Switchboard` method is one line here.

    Several Asterisks: a transfer or a supervision goes to the controller of the PBX the agent's call is on, as
    the call log says (the newest open call the agent took; the console's ``callcontrol.pbx`` while the log has
    none yet). The call log, not the agent's extension, because one extension number may exist on every PBX and
    the call is where the channels to act on are. The board is asked of every PBX announced on the channel (the
    union of their queue members, one row per interface, :func:`merge_boards`: an agent's live state is its
    controller's AMI view, not a row), and so are
    the softphones' passwords: a browser registers on the PBX of its ``softphone.ws_url``, and a password valid on
    every PBX needs no second map of extensions to PBXs to keep in step with the dialplans. A PBX whose
    controller went away meanwhile (503) is left out; with none announced the console's ``callcontrol.pbx`` is
    asked, as with one PBX."""

    def __init__(self, client: CommandClient) -> None:
        self.client = client

    async def pbx_of_call(self, agent_interface: str) -> str:
        """The PBX of the agent's live call in the call log; the console's default PBX when there is none."""
        async with self.client.sessionmaker() as session:
            pbx = await session.scalar(
                select(CallRecord.pbx)
                .where(CallRecord.agent_interface == agent_interface, CallRecord.ended_at.is_(None))
                .order_by(CallRecord.answered_at.desc().nulls_last(), CallRecord.id.desc())
                .limit(1)
            )
        return self.client.target if pbx is None else pbx

    async def on_every_pbx(self, ask: Callable[[str], Awaitable[T]]) -> list[T]:
        """``ask`` of every PBX announced (or of the default one), at once; the answers of those that took it.
        Raises :class:`NoController` when none did, and the first other error."""
        pbxes = await self.client.live_pbxes() or [self.client.target]
        answers = await asyncio.gather(*(ask(pbx) for pbx in pbxes), return_exceptions=True)
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(answer, NoController):
                raise answer
        taken = [a for a in answers if not isinstance(a, BaseException)]
        if not taken:
            raise NoController()
        return taken

    async def start(self) -> None:
        await self.client.start()

    async def close(self) -> None:
        await self.client.close()

    async def transfer(
        self, agent_interface: str, target: Target, mode: Mode, *, by: str, ticket_no: str | None
    ) -> CallTransfer:
        return await self.client.call_on(
            await self.pbx_of_call(agent_interface),
            "transfer",
            agent_interface=agent_interface,
            target=target,
            mode=mode,
            by=by,
            ticket_no=ticket_no,
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
        return await self.client.call_on(
            await self.pbx_of_call(agent_interface),
            "spy",
            agent_interface=agent_interface,
            action=action,
            agent=agent,
            supervisor=supervisor,
            role=role,
            phone=phone,
        )

    async def board(self, tz: ZoneInfo) -> list[AgentOnBoard] | None:
        """Every PBX's queue members; None (the board says: not connected) while no controller answers."""
        try:
            boards = await self.on_every_pbx(lambda pbx: self.client.call_on(pbx, "board", tz=tz))
        except NoController:
            return None
        known = [b for b in boards if b is not None]
        return merge_boards(known) if known else None

    async def provision_softphone(self, extension: str, password: str, ttl_s: float) -> None:
        await self._everywhere(
            "provision_softphone", extension=extension, password=password, ttl_s=ttl_s
        )

    async def revoke_softphone(self, extension: str) -> None:
        await self._everywhere("revoke_softphone", extension=extension)

    async def _everywhere(self, kind: str, **arguments: Any) -> None:
        await self.on_every_pbx(lambda pbx: self.client.call_on(pbx, kind, **arguments))


class RemoteCallControl:
    """A console worker's desk buttons through the command channel (:class:`calls.CallControl`), routed as the
    :class:`RemoteSwitchboard` routes: an agent's status goes to the PBX of their live call, else to the console's
    ``callcontrol.pbx`` (the PBX its browsers' softphones register on, ``softphone.ws_url``), whose controller
    logs the agent into its queue (QueueAdd) at the first status and pauses them (QueuePause). A call-back rings
    from the console's PBX ("": any controller). Errors as the switchboard's: 503 ``command.no_controller``,
    504 ``command.timeout``, the call control's own codes."""

    def __init__(self, switchboard: RemoteSwitchboard) -> None:
        self.switchboard = switchboard

    async def set_agent_state(
        self, interface: str, state: calls.AgentState, reason: str = ""
    ) -> None:
        await self.switchboard.client.call_on(
            await self.switchboard.pbx_of_call(interface),
            "set_agent_state",
            interface=interface,
            state=state,
            reason=reason,
        )

    async def start_callback(self, ticket_no: str) -> None:
        await self.switchboard.client.call("start_callback", ticket_no=ticket_no)


SWITCHBOARD = web.AppKey("switchboard", Switchboard)


def switchboard_of(app: web.Application) -> Switchboard:
    return app.get(SWITCHBOARD) or UnwiredSwitchboard()
