"""How the parts talk inside one process: the console's telephony buttons drive the AMI controller, the
controller's events feed the console (screen pops, live queue), and the bot reports to the controller.

Two steps, as in wazo-calld's ``plugin.py`` and ``bus_consume.py``: :func:`build_services` builds every
object, each constructor only storing what it is given; then :func:`subscribe` wires events to handlers, all
of them listed in :func:`subscriptions`.
"""

from __future__ import annotations

import asyncio
import logging
import wave
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console.calls import AgentState, publish_screen_pop
from agent_console.hub import Hub
from agent_console.hub_pg import PostgresHub
from agent_console.softphone import AgentInterfaces
from agent_console.views.cockpit import snapshot_of
from config import Settings
from hotline.db import listen_connector
from hotline.leadership import Job, RunOnce
from ivr import events as ev
from ivr.blocklist_agi import BlocklistAgi
from ivr.callbacks import CallbackScheduler, MissedCallJob
from ivr.callcontrol import CallControl
from ivr.calllog import link_bot_ticket
from ivr.controller import HotlineController, build_controller
from ivr.messages import MessageFiler, messages_folder
from ivr.pbx.prompts import PromptVoice
from ivr.state import WRAP_UP_REASON

if TYPE_CHECKING:
    from aiohttp import web

    from asr.bot import SpeechBot
    from asr.dialogue import BotOutcome
    from asr.messages import MessageTranscriber

log = logging.getLogger(__name__)

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

    async def set_agent_state(self, interface: str, state: AgentState, reason: str = "") -> None:
        """The first status of an agent not yet in the queue logs their interface in (QueueAdd). 示忙 pauses
        with the agent's reason, 话后整理 with the wrap-up reason that ivr.state counts apart."""
        if interface not in self.controller.state.members:
            await self.controller.add_agent(interface, interface)
        reasons: dict[AgentState, str] = {"ready": "", "paused": reason, "wrap_up": WRAP_UP_REASON}
        await self.controller.pause_agent(interface, paused=state != "ready", reason=reasons[state])

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
        """A controller event: the live queue for the cockpit, a screen pop when an agent's phone rings (who
        calls and their history before answering)."""
        if isinstance(event, QUEUE_EVENTS):
            self.hub.publish(
                "queue", snapshot_of(self.controller.state, self.clock()).model_dump(mode="json")
            )
        if isinstance(event, ev.AgentRinging):
            username = self.username_of(event.interface)
            if username:
                self._spawn(self._pop(username, event.chan))

    async def _pop(self, username: str, chan: ev.ChannelInfo) -> None:
        # kept (until TRANSCRIPTS_KEPT pushes it out): an agent who lets it ring hands the caller to the next
        transcript = self.handed_over.get(chan.bot_uuid) if chan.bot_uuid else None
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
    blocklist: BlocklistAgi | None = None  # the dialplan's blocklist lookup (FastAGI)
    callcontrol: CallControl | None = (
        None  # transfers and supervision (their outcomes from the dialplan)
    )


async def start_telephony(telephony: Telephony) -> None:
    """Start the blocklist's FastAGI server (so no call waits for it), then the controller."""
    if telephony.blocklist is not None:
        await telephony.blocklist.start()
    await telephony.controller.start()


async def stop_telephony(telephony: Telephony) -> None:
    """Stop the controller, then the blocklist's FastAGI server."""
    await telephony.controller.stop()
    if telephony.blocklist is not None:
        await telephony.blocklist.stop()


def prompt_voice(settings: Settings) -> PromptVoice:
    """The bot's voice (``[tts]``, Kokoro unless it is missing) for the local PBX's IVR prompts, so a caller
    hears one voice from the greeting to the bot's answer."""
    from asr.tts import build_tts

    tts = build_tts(settings.tts)

    def speak(text: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(target), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(tts.synthesize(text))

    return PromptVoice(tts.engine.cache_id, speak)


def blocklist_agi(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> BlocklistAgi:
    """The FastAGI server the dialplan asks about every inbound caller (``settings.blocklist``)."""
    return BlocklistAgi(sessionmaker, settings.blocklist, clock=clock)


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
    if telephony.callcontrol is not None:
        pairs.append((controller.add_listener, telephony.callcontrol.on_event))
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


def build_hub(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Hub:
    """The live-update hub for the configured database: in-process on SQLite (one process), across every
    process on PostgreSQL (LISTEN/NOTIFY, :mod:`agent_console.hub_pg`). Start it with ``await hub.start()``."""
    console = settings.console
    connect = listen_connector(settings.database.url, "hotline live events")
    if connect is None:
        return Hub(queue_size=console.ws_queue_size)
    return PostgresHub(
        sessionmaker,
        connect,
        clock,
        queue_size=console.ws_queue_size,
        keep_s=console.live_events_keep_s,
    )


def callback_schedulers(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    controller: HotlineController,
) -> tuple[CallbackScheduler, CallbackScheduler]:
    """Both call-back schedulers of a controller: 回访, and missed-call call-backs."""
    return (
        CallbackScheduler(controller, sessionmaker, settings),
        CallbackScheduler(controller, sessionmaker, settings, job=MissedCallJob(settings)),
    )


def telephony_jobs(telephony: Telephony) -> dict[str, Job]:
    """The telephony side's jobs that must run once (:class:`hotline.leadership.RunOnce`), by lock name:
    ringing call-backs (one scheduler over the whole database), sweeping a messages folder (one per folder)."""
    jobs: dict[str, Job] = {f"callbacks-{s.job.kind}": s.run for s in telephony.schedulers}
    if telephony.messages is not None:
        jobs[f"message-sweep:{telephony.messages.folder.resolve()}"] = telephony.messages.run
    return jobs


def console_jobs(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], stop: asyncio.Event
) -> dict[str, Job]:
    """The ticket and console jobs that must run once, by lock name: warning scans with notice delivery, and
    pruning the citizens' API records. (The metrics rollup needs none: each ticket is rolled up in the
    transaction that settles it.)"""
    from agent_console.public_limits import run_public_pruning
    from tickets.warnings import run_warning_scans

    return {
        "warnings": lambda: run_warning_scans(sessionmaker, settings, stop),
        "public-pruning": lambda: run_public_pruning(
            sessionmaker, settings, stop, lambda: datetime.now(UTC)
        ),
    }


def start_jobs(settings: Settings, jobs: dict[str, Job]) -> list[asyncio.Task[None]]:
    """Start ``jobs``, each run by one process at a time on the configured database (two `hotline run`, or
    several `hotline ivr` and `hotline console`, never ring, scan, send or sweep twice)."""
    once = RunOnce(listen_connector(settings.database.url, "hotline run-once jobs"))
    return [asyncio.create_task(once.run(name, job), name=name) for name, job in jobs.items()]


@dataclass(frozen=True)
class Services:
    """Everything `hotline run` serves, built but not yet subscribed."""

    telephony: Telephony
    bot: SpeechBot
    app: web.Application
    transcriber: MessageTranscriber  # voice messages (留言), on the bot's engine
    hub: Hub  # live updates; started and closed by the caller


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

    hub = build_hub(settings, sessionmaker, clock)
    controller = build_controller(settings, sessionmaker)
    callbacks, missed_calls = callback_schedulers(settings, sessionmaker, controller)
    interfaces = AgentInterfaces(settings)  # console user ↔ queue member (softphone extension)
    feed = ConsoleFeed(controller, hub, sessionmaker, interfaces.username, clock)
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
        agent_interface=interfaces.interface,
    )
    callcontrol = CallControl(controller, settings.callcontrol, sessionmaker, clock)
    app = create_app(
        settings,
        sessionmaker,
        hub=hub,
        on_knowledge_change=knowledge_changed,
        desk=desk,
        switchboard=callcontrol,
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
            blocklist_agi(settings, sessionmaker, clock),
            callcontrol,
        ),
        bot,
        app,
        message_transcriber(settings, sessionmaker, bot, clock),
        hub,
    )
