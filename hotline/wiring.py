"""How the parts talk inside one process: the console's telephony buttons drive the AMI controller, the
controller's events feed the console (screen pops, live queue), and the bot reports to the controller.

Two steps, as in wazo-calld's ``plugin.py`` and ``bus_consume.py``: :func:`build_services` builds every
object, each constructor only storing what it is given; then :func:`subscribe` wires events to handlers, all
of them listed in :func:`subscriptions`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console.calls import AgentState, publish_screen_pop
from agent_console.hub import Hub
from agent_console.views.cockpit import snapshot_of
from config import Settings
from ivr import events as ev
from ivr.callbacks import CallbackScheduler, MissedCallJob
from ivr.calllog import link_bot_ticket
from ivr.controller import HotlineController, build_controller
from ivr.messages import MessageFiler, messages_folder
from ivr.state import WRAP_UP_REASON

if TYPE_CHECKING:
    from aiohttp import web

    from asr.bot import SpeechBot
    from asr.dialogue import BotOutcome
    from asr.messages import MessageTranscriber

log = logging.getLogger(__name__)

PAUSE_REASONS: dict[AgentState, str] = {
    "paused": "示忙",
    "wrap_up": WRAP_UP_REASON,
}  # wrap-up: counted by ivr.state
QUEUE_EVENTS = (
    ev.CallerJoined,
    ev.CallerLeft,
    ev.CallerAbandoned,
    ev.AgentConnected,
    ev.AgentCompleted,
    ev.MemberState,
    ev.BotStarted,
    ev.ChannelHungUp,
)
TRANSCRIPTS_KEPT = 500  # bot hand-overs remembered for the agent's screen pop


class ControllerCallControl:
    """The console's :class:`agent_console.calls.CallControl` over the AMI controller and call-back scheduler."""

    def __init__(self, controller: HotlineController, callbacks: CallbackScheduler) -> None:
        self.controller = controller
        self.callbacks = callbacks

    async def set_agent_state(self, interface: str, state: AgentState) -> None:
        await self.controller.pause_agent(
            interface, paused=state != "ready", reason=PAUSE_REASONS.get(state, "")
        )

    async def start_callback(self, ticket_no: str) -> None:
        await self.callbacks.start_callback(ticket_no)


class ConsoleFeed:
    """Controller events → the console: a screen pop for the agent who answers, the live queue for the cockpit,
    and the bot's transcript when it hands a caller back to the queue."""

    def __init__(
        self,
        controller: HotlineController,
        hub: Hub,
        sessionmaker: async_sessionmaker[AsyncSession],
        username_of: Callable[[str], str | None],
        clock: Callable[[], datetime],
    ) -> None:
        self.controller = controller
        self.hub = hub
        self.sessionmaker = sessionmaker
        self.username_of = username_of
        self.clock = clock
        self.handed_over: OrderedDict[str, str] = (
            OrderedDict()
        )  # bot UUID → what the caller told the bot
        self._tasks: set[asyncio.Task[Any]] = set()

    def remember_handover(self, bot_uuid: str, outcome: BotOutcome) -> None:
        if outcome.next == "queue" and outcome.transcript:
            self.handed_over[bot_uuid] = outcome.transcript
            while len(self.handed_over) > TRANSCRIPTS_KEPT:
                self.handed_over.popitem(last=False)

    def on_event(self, event: ev.DomainEvent) -> None:
        """A controller event: the live queue for the cockpit, a screen pop when an agent answers."""
        if isinstance(event, QUEUE_EVENTS):
            self.hub.publish(
                "queue", snapshot_of(self.controller.state, self.clock()).model_dump(mode="json")
            )
        if isinstance(event, ev.AgentConnected):
            username = self.username_of(event.interface)
            if username:
                self._spawn(self._pop(username, event.chan))

    async def _pop(self, username: str, chan: ev.ChannelInfo) -> None:
        transcript = self.handed_over.pop(chan.bot_uuid, None) if chan.bot_uuid else None
        await publish_screen_pop(
            self.hub,
            self.sessionmaker,
            username,
            chan.caller_number,
            call_id=chan.uniqueid,
            transcript=transcript,
            from_bot=transcript is not None,
        )

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
    """``on_outcome`` / ``on_ticket`` / ``caller_for`` / ``recording_for`` for :func:`asr.bot.build_bot`, from the
    controller. Every ticket the bot files is linked to its call in the call log (``ticket_no``, which
    :mod:`ivr.service_levels` reads for bot containment), also one filed after the caller hung up.

    A settled call gets ``BOT_NEXT=hangup`` (the dialplan hangs up), a caller who would rather leave a message
    ``BOT_NEXT=message`` (留言); a caller who asked for a human keeps it unset (the dialplan requeues) and the
    transcript waits for the agent's screen pop."""

    async def on_outcome(call_uuid: str, outcome: BotOutcome) -> None:
        if feed is not None:
            feed.remember_handover(call_uuid, outcome)
        if outcome.next in ("hangup", "message") and not await controller.set_bot_next(
            call_uuid, outcome.next
        ):
            log.info("bot call %s: the channel is gone, BOT_NEXT not set", call_uuid)

    async def on_ticket(call_uuid: str, ticket_no: str) -> None:
        await controller.link_bot_ticket(call_uuid, ticket_no)

    async def caller_for(call_uuid: str) -> str | None:
        call = controller.state.find_by_bot(call_uuid)
        return call.caller_number if call else None

    async def recording_for(call_uuid: str) -> str | None:
        call = controller.state.find_by_bot(call_uuid)
        return call.recording if call else None

    return {
        "on_outcome": on_outcome,
        "on_ticket": on_ticket,
        "caller_for": caller_for,
        "recording_for": recording_for,
    }


def ticket_linker(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    """``on_ticket`` for a bot without a controller in its process: links in the call log by the bot's UUID (the
    controller of another process wrote the row)."""

    async def on_ticket(call_uuid: str, ticket_no: str) -> None:
        async with sessionmaker() as session:
            if not await link_bot_ticket(session, call_uuid, ticket_no):
                log.warning(
                    "bot call %s: no call in the log, ticket %s not linked", call_uuid, ticket_no
                )

    return {"on_ticket": on_ticket}


Subscription = tuple[
    Callable[[Any], object], Callable[..., Any]
]  # (register with an event source, handler)


@dataclass(frozen=True)
class Telephony:
    """The AMI controller and what listens to it in this process."""

    controller: HotlineController
    schedulers: tuple[CallbackScheduler, ...] = ()  # call-backs: 回访, missed calls
    feed: ConsoleFeed | None = None
    messages: MessageFiler | None = None  # voice messages (留言) filed as tickets


def subscriptions(telephony: Telephony) -> list[Subscription]:
    """Every event → handler pair of the process, in the order the handlers hear an event."""
    controller = telephony.controller
    pairs: list[Subscription] = []
    for scheduler in telephony.schedulers:
        pairs += [
            (controller.add_listener, scheduler.on_event),
            (controller.add_resync_listener, scheduler.reconcile),
            (controller.on_originate_response, scheduler.on_originate_response),
        ]
    if telephony.feed is not None:
        pairs.append((controller.add_listener, telephony.feed.on_event))
    if telephony.messages is not None:
        pairs += [
            (controller.add_listener, telephony.messages.on_event),
            (controller.add_resync_listener, telephony.messages.reconcile),
        ]
    return pairs


def message_filer(
    controller: HotlineController,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> MessageFiler:
    """Files the voice messages (留言) of the controller's Asterisk from its messages folder."""
    return MessageFiler(controller, sessionmaker, settings, messages_folder(settings), clock=clock)


def message_transcriber(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    bot: SpeechBot,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> MessageTranscriber:
    """Transcribes voice messages on the bot's engine, in the bot's process."""
    from asr.messages import MessageTranscriber

    return MessageTranscriber(
        settings, sessionmaker, messages_folder(settings), bot.recognizers, clock=clock
    )


def subscribe(telephony: Telephony) -> None:
    """Wire events to handlers, once, after every object is built and before any starts: the AMI client's
    events to the controller (:meth:`HotlineController.subscribe`), then :func:`subscriptions`."""
    telephony.controller.subscribe()
    for register, handler in subscriptions(telephony):
        register(handler)


@dataclass(frozen=True)
class Services:
    """Everything `hotline run` serves, built but not yet subscribed."""

    telephony: Telephony
    bot: SpeechBot
    app: web.Application
    transcriber: MessageTranscriber  # voice messages (留言), on the bot's engine


async def build_services(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Services:
    """The controller, both call-back schedulers, the console feed, the bot and the console app, each given
    what it needs at construction (the console's desk: the controller's buttons and the bot's knowledge index)."""
    from agent_console import keys
    from agent_console.app import create_app
    from agent_console.desk.services import DeskServices
    from asr.bot import build_bot
    from tickets.dispatch_suggest import DispatchSuggester

    hub = Hub()
    controller = build_controller(settings, sessionmaker)
    callbacks = CallbackScheduler(controller, sessionmaker, settings)
    missed_calls = CallbackScheduler(
        controller, sessionmaker, settings, job=MissedCallJob(settings)
    )
    feed = ConsoleFeed(controller, hub, sessionmaker, username_from_interface, clock)
    suggester = await asyncio.to_thread(DispatchSuggester.from_settings, settings)
    bot = await build_bot(
        settings, sessionmaker, suggester=suggester, **bot_hooks(controller, feed)
    )

    async def knowledge_changed() -> None:
        await bot.desk.refresh()

    desk = DeskServices(
        call_control=ControllerCallControl(controller, callbacks),
        knowledge_ask=lambda text: bot.desk.index.ask(text),  # the bot swaps in a fresh index
        suggester=suggester,
    )
    app = create_app(
        settings, sessionmaker, hub=hub, on_knowledge_change=knowledge_changed, desk=desk
    )
    app[keys.METRICS].registry.register(
        bot.turn_seconds
    )  # one process: the console's /metrics shows the bot's
    return Services(
        Telephony(
            controller,
            (callbacks, missed_calls),
            feed,
            message_filer(controller, sessionmaker, settings, clock),
        ),
        bot,
        app,
        message_transcriber(settings, sessionmaker, bot, clock),
    )
