"""How the parts talk inside one process: the console's telephony buttons drive the AMI controller, the
controller's events feed the console (screen pops, live queue), and the bot reports to the controller.

Two steps, as in wazo-calld's ``plugin.py`` and ``bus_consume.py``: :func:`build_services` builds every
object, each constructor only storing what it is given; then :func:`subscribe` wires events to handlers, all
of them listed in :func:`subscriptions`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import wave
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console.calls import AgentState, publish_screen_pop
from agent_console.cockpit_cache_pg import SharedPanels
from agent_console.command_channel import Codec, CommandClient, CommandExecutor
from agent_console.hub import Hub
from agent_console.hub_pg import PostgresHub
from agent_console.softphone import AgentInterfaces
from agent_console.switchboard import ConsoleCommands, RemoteCallControl, RemoteSwitchboard
from agent_console.views.callcontrol import publish_transfer_outcome
from agent_console.views.cockpit import snapshot_of
from config import Settings
from config.settings import TtsSettings
from hotline.db import listen_connector
from hotline.leadership import Job, RunOnce
from ivr import events as ev
from ivr.blocklist_agi import BlocklistAgi
from ivr.bot_hosts import BotHeartbeat
from ivr.callbacks import CallbackScheduler, MissedCallJob
from ivr.callcontrol import CallControl
from ivr.calllog import link_bot_ticket
from ivr.controller import HotlineController, build_controller
from ivr.messages import MessageFiler, messages_folder
from ivr.models import CallTransfer
from ivr.pbx.prompts import PromptVoice
from ivr.state import WRAP_UP_REASON

if TYPE_CHECKING:
    from aiohttp import web

    from agent_console.desk.services import DeskServices, KnowledgeAsk
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


class ControllerCommands(ControllerCallControl):
    """What a controller runs for the console workers (:class:`agent_console.switchboard.ConsoleCommands`): the
    desk's agent status and call-backs as a console in its process calls them, the switchboard's calls on
    ``callcontrol``."""

    def __init__(
        self, controller: HotlineController, callbacks: CallbackScheduler, callcontrol: CallControl
    ) -> None:
        super().__init__(controller, callbacks)
        self.callcontrol = callcontrol

    def __getattr__(self, kind: str) -> Any:  # transfer, spy, board, the softphones' passwords
        return getattr(self.callcontrol, kind)


class ConsoleFeed:
    """Controller events → the console: a screen pop for the agent who answers, the live queue of PBX ``pbx`` for
    the cockpit (at each change, and every ``refresh_s`` while AMI is up: a silent PBX is 离线 on the board),
    the bot's transcript when it hands a caller back to the queue, and each transfer's outcome to its agent."""

    def __init__(
        self,
        controller: HotlineController,
        hub: Hub,
        sessionmaker: async_sessionmaker[AsyncSession],
        username_of: Callable[[str], str | None],
        clock: Callable[[], datetime],
        *,
        pbx: str = "",
        refresh_s: float = 10.0,
    ) -> None:
        self.controller = controller
        self.hub = hub
        self.sessionmaker = sessionmaker
        self.username_of = username_of
        self.clock = clock
        self.pbx = pbx
        self.refresh_s = refresh_s
        self._refresher: asyncio.Task[None] | None = None
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
            self.publish_queue()
        if isinstance(event, ev.AgentRinging):
            username = self.username_of(event.interface)
            if username:
                self._spawn(self._pop(username, event.chan))

    def transfer_ended(self, row: CallTransfer) -> None:
        """A transfer's outcome to the agent who made it (an attended transfer's buttons go away)."""
        publish_transfer_outcome(self.hub, row)

    def publish_queue(self) -> None:
        snapshot = snapshot_of(self.controller.state, self.clock(), self.pbx)
        self.hub.publish("queue", snapshot.model_dump(mode="json"))

    async def keep_fresh(self) -> None:
        """Publish the queue every ``refresh_s`` while AMI is up (until cancelled)."""
        while True:
            await asyncio.sleep(self.refresh_s)
            if self.controller.ami.connected.is_set():
                self.publish_queue()

    def start(self) -> None:
        self._refresher = asyncio.create_task(self.keep_fresh(), name="console-feed-queue")

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
            self._refresher = None

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


@contextlib.asynccontextmanager
async def load_reports(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], bot: SpeechBot
) -> AsyncIterator[BotHeartbeat | None]:
    """While the block runs, the started ``bot`` reports its load (:class:`ivr.bot_hosts.BotHeartbeat`) when
    ``[bot] hosts`` lists the bots the controllers spread callers over; its row is withdrawn at the end."""
    if not settings.bot.hosts:
        yield None
        return
    server = bot.server
    address = settings.bot.advertise or f"{server.host}:{bot.port}"
    heartbeat = BotHeartbeat(sessionmaker, address, server.max_sessions, settings.bot.heartbeat_s)
    server.add_load_listener(heartbeat.report)
    task = asyncio.create_task(heartbeat.run(), name="bot-load-reports")
    try:
        yield heartbeat
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        try:
            await heartbeat.withdraw()
        except Exception as exc:  # the database is away: the row goes stale instead
            log.warning("bot %s: load report not withdrawn: %s", address, exc)


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
    """Start the blocklist's FastAGI server (so no call waits for it), then the controller and the AMI connection
    of the softphones' passwords."""
    if telephony.blocklist is not None:
        await telephony.blocklist.start()
    await telephony.controller.start()
    if telephony.callcontrol is not None:
        telephony.callcontrol.credentials.start()
    if telephony.feed is not None:
        telephony.feed.start()  # the queue, also while it does not change


async def stop_telephony(telephony: Telephony) -> None:
    """Stop the softphones' passwords' AMI connection and the controller, then the blocklist's FastAGI server."""
    if telephony.feed is not None:
        await telephony.feed.stop()
    if telephony.callcontrol is not None:
        await telephony.callcontrol.credentials.stop()
    await telephony.controller.stop()
    if telephony.blocklist is not None:
        await telephony.blocklist.stop()


def prompt_voice(settings: Settings) -> PromptVoice:
    """The bot's voice (``[tts]``, Kokoro unless it is missing) for the local PBX's IVR prompts, so a caller
    hears one voice from the greeting to the bot's answer. Named by its settings; the engine is built by the
    first prompt to synthesise, so a start with up-to-date prompts loads no model. A Kokoro that falls back to
    espeak-ng names the fallback once it has spoken: the prompts are made again when Kokoro loads."""
    from asr.tts import build_tts

    tts = functools.cache(functools.partial(build_tts, settings.tts))
    name = _voice_name(settings.tts)

    def speak(text: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(target), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(tts().synthesize(text))

    def spoken_name() -> str:
        engine = tts().engine.cache_id
        return name if engine.startswith(settings.tts.engine) else engine

    return PromptVoice(name, speak, spoken_name)


def _voice_name(tts: TtsSettings) -> str:
    """What the settings ask the voice to sound like (read without loading a model)."""
    if tts.engine == "kokoro":
        return f"kokoro/{tts.kokoro.model_dir}/{tts.kokoro.voice}/{tts.kokoro.speed:g}"
    return f"espeak-ng/{tts.voice}/{tts.speed_wpm}"


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
        # the softphone passwords re-sync after every login of their own AMI connection
        pairs.append((controller.add_listener, telephony.callcontrol.on_event))
        if telephony.feed is not None:
            pairs.append(
                (telephony.callcontrol.add_outcome_listener, telephony.feed.transfer_ended)
            )
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


def console_feed(
    settings: Settings,
    controller: HotlineController,
    hub: Hub,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: Callable[[], datetime],
) -> ConsoleFeed:
    """The feed of a controller's PBX (``callcontrol.pbx``): its queue at least every third of
    ``cockpit.queue_stale_s``, the screen pops of its agents."""
    return ConsoleFeed(
        controller,
        hub,
        sessionmaker,
        AgentInterfaces(settings).username,
        clock,
        pbx=settings.callcontrol.pbx,
        refresh_s=settings.cockpit.queue_stale_s / 3,
    )


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


def cockpit_cache(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> SharedPanels | None:
    """The cockpit's panels in PostgreSQL for every console worker, warmed by one of them at a time
    (:mod:`agent_console.cockpit_cache_pg`); None on SQLite (the process's own caches)."""
    connect = listen_connector(settings.database.url, "hotline cockpit warmer")
    if connect is None:
        return None
    return SharedPanels(sessionmaker, settings.cockpit, RunOnce(connect).run)


def remote_switchboard(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> RemoteSwitchboard | None:
    """A console without a controller of its own: transfers, supervision, the board and (with
    :func:`console_desk`) the agents' status and call-backs through the command channel on PostgreSQL
    (:mod:`agent_console.command_channel`); None on SQLite. Start it with ``start()``."""
    connect = listen_connector(settings.database.url, "hotline console commands")
    if connect is None:
        return None
    client = CommandClient(
        sessionmaker,
        connect,
        Codec(ConsoleCommands),
        target=settings.callcontrol.pbx,
        timeout_s=settings.callcontrol.command_timeout_s,
        heartbeat_s=settings.callcontrol.heartbeat_s,
    )
    return RemoteSwitchboard(client)


def console_desk(
    settings: Settings,
    switchboard: RemoteSwitchboard | None,
    knowledge_ask: KnowledgeAsk | None = None,
) -> DeskServices:
    """The ticket screens' services of a `hotline console` worker: the agents' status and call-back buttons
    through ``switchboard``'s command channel (PostgreSQL; without one, on SQLite, they answer 503), the
    worker's own knowledge lookup, the dispatch suggester of the settings, the agents' queue interfaces as
    `hotline run` maps them."""
    from agent_console.calls import UnwiredCallControl
    from agent_console.desk.services import DeskServices
    from tickets.dispatch_suggest import DispatchSuggester

    return DeskServices(
        call_control=UnwiredCallControl()
        if switchboard is None
        else RemoteCallControl(switchboard),
        knowledge_ask=knowledge_ask,
        suggester=DispatchSuggester.from_settings(settings),
        agent_interface=AgentInterfaces(settings).interface,
    )


def controller_commands(telephony: Telephony) -> ControllerCommands | None:
    """What the console workers' commands run on in this controller: its call control, and the desk's buttons
    on the controller and its 回访 scheduler (the first of :func:`callback_schedulers`); None without a call
    control."""
    if telephony.callcontrol is None or not telephony.schedulers:
        return None
    return ControllerCommands(telephony.controller, telephony.schedulers[0], telephony.callcontrol)


def command_executor(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], commands: ControllerCommands
) -> CommandExecutor | None:
    """A controller's side of the command channel: runs the console workers' commands for its PBX on
    ``commands``; None on SQLite (one process: the console calls the controller directly)."""
    connect = listen_connector(settings.database.url, "hotline controller commands")
    if connect is None:
        return None
    return CommandExecutor(
        commands,
        Codec(ConsoleCommands),
        sessionmaker,
        connect,
        pbx=settings.callcontrol.pbx,
        keep_s=settings.callcontrol.commands_keep_s,
        heartbeat_s=settings.callcontrol.heartbeat_s,
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
    ringing call-backs (one scheduler over the whole database), sweeping a messages folder (one per PBX and
    folder: the controllers of two PBXs on two machines may see their folders at one path, and each sweeps its
    own, asking its own Asterisk)."""
    jobs: dict[str, Job] = {f"callbacks-{s.job.kind}": s.run for s in telephony.schedulers}
    if telephony.messages is not None:
        pbx = telephony.controller.settings.callcontrol.pbx
        folder = telephony.messages.folder.resolve()
        jobs[f"message-sweep:{pbx}:{folder}"] = telephony.messages.run
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
    feed = console_feed(settings, controller, hub, sessionmaker, clock)
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
        cockpit_cache=cockpit_cache(settings, sessionmaker),
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
