"""How the parts talk inside one process: the console's telephony buttons drive the AMI controller, the
controller's events feed the console (screen pops, live queue), and the bot reports to the controller."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console.calls import AgentState, publish_screen_pop
from agent_console.hub import Hub
from agent_console.views.cockpit import snapshot_of
from asr.dialogue import BotOutcome
from ivr import events as ev
from ivr.callbacks import CallbackScheduler
from ivr.controller import HotlineController
from ivr.state import WRAP_UP_REASON

log = logging.getLogger(__name__)

PAUSE_REASONS: dict[AgentState, str] = {"paused": "示忙", "wrap_up": WRAP_UP_REASON}  # wrap-up: counted by ivr.state
QUEUE_EVENTS = (ev.CallerJoined, ev.CallerLeft, ev.CallerAbandoned, ev.AgentConnected, ev.AgentCompleted,
                ev.MemberState, ev.BotStarted, ev.ChannelHungUp)
TRANSCRIPTS_KEPT = 500  # bot hand-overs remembered for the agent's screen pop


class ControllerCallControl:
    """The console's :class:`agent_console.calls.CallControl` over the AMI controller and call-back scheduler."""

    def __init__(self, controller: HotlineController, callbacks: CallbackScheduler) -> None:
        self.controller = controller
        self.callbacks = callbacks

    async def set_agent_state(self, interface: str, state: AgentState) -> None:
        await self.controller.pause_agent(interface, paused=state != "ready", reason=PAUSE_REASONS.get(state, ""))

    async def start_callback(self, ticket_no: str) -> None:
        await self.callbacks.start_callback(ticket_no)


class ConsoleFeed:
    """Controller events → the console: a screen pop for the agent who answers, the live queue for the cockpit,
    and the bot's transcript when it hands a caller back to the queue."""

    def __init__(self, controller: HotlineController, hub: Hub, sessionmaker: async_sessionmaker[AsyncSession],
                 username_of: Callable[[str], str | None], clock: Callable[[], datetime]) -> None:
        self.controller = controller
        self.hub = hub
        self.sessionmaker = sessionmaker
        self.username_of = username_of
        self.clock = clock
        self.handed_over: OrderedDict[str, str] = OrderedDict()  # bot UUID → what the caller told the bot
        self._tasks: set[asyncio.Task[Any]] = set()
        controller.add_listener(self.on_event)

    def remember_handover(self, bot_uuid: str, outcome: BotOutcome) -> None:
        if outcome.next == "queue" and outcome.transcript:
            self.handed_over[bot_uuid] = outcome.transcript
            while len(self.handed_over) > TRANSCRIPTS_KEPT:
                self.handed_over.popitem(last=False)

    def on_event(self, event: ev.DomainEvent) -> None:
        if isinstance(event, QUEUE_EVENTS):
            self.hub.publish("queue", snapshot_of(self.controller.state, self.clock()).model_dump(mode="json"))
        if isinstance(event, ev.AgentConnected):
            username = self.username_of(event.interface)
            if username:
                self._spawn(self._pop(username, event.chan))

    async def _pop(self, username: str, chan: ev.ChannelInfo) -> None:
        transcript = self.handed_over.pop(chan.bot_uuid, None) if chan.bot_uuid else None
        await publish_screen_pop(self.hub, self.sessionmaker, username, chan.caller_number, call_id=chan.uniqueid,
                                 transcript=transcript, from_bot=transcript is not None)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception():
            log.error("screen pop failed", exc_info=task.exception())


def username_from_interface(interface: str) -> str | None:
    """``PJSIP/<username>`` → username (the console's default agent interface)."""
    tech, _, name = interface.partition("/")
    return name if tech == "PJSIP" and name else None


def bot_hooks(controller: HotlineController, feed: ConsoleFeed | None = None) -> dict[str, Any]:
    """``on_outcome`` / ``caller_for`` / ``recording_for`` for :func:`asr.bot.build_bot`, from the controller.

    A settled call gets ``BOT_NEXT=hangup`` (the dialplan hangs up); a caller who asked for a human keeps it
    unset (the dialplan requeues) and the transcript waits for the agent's screen pop."""

    async def on_outcome(call_uuid: str, outcome: BotOutcome) -> None:
        if feed is not None:
            feed.remember_handover(call_uuid, outcome)
        if outcome.next == "hangup" and not await controller.set_bot_next(call_uuid, "hangup"):
            log.info("bot call %s: the channel is gone, BOT_NEXT not set", call_uuid)

    async def caller_for(call_uuid: str) -> str | None:
        call = controller.state.find_by_bot(call_uuid)
        return call.caller_number if call else None

    async def recording_for(call_uuid: str) -> str | None:
        call = controller.state.find_by_bot(call_uuid)
        return call.recording if call else None

    return {"on_outcome": on_outcome, "caller_for": caller_for, "recording_for": recording_for}
