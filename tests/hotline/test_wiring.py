"""Explicit wiring: constructors only store what they are given; :func:`hotline.wiring.subscribe` is the
one step that registers handlers, and a controller never starts unsubscribed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console.hub import Hub
from agent_console.softphone import AgentInterfaces
from asr.tts import CachedTts
from config import Settings
from config.settings import TtsSettings
from hotline.db import make_engine, make_sessionmaker
from hotline.wiring import (
    ConsoleFeed,
    ControllerCallControl,
    Telephony,
    console_feed,
    prompt_voice,
    subscribe,
)
from ivr import events as ev
from ivr.ami import AmiClient, EventCallback
from ivr.callbacks import CallbackScheduler, MissedCallJob
from ivr.callcontrol import CallControl
from ivr.controller import ORIGINATE_RESPONSE_FILTER, ControllerNotSubscribed, HotlineController
from ivr.models import CallTransfer
from ivr.pbx.prompts import install_prompts


class RecordingAmi(AmiClient):
    """An AMI client (never connected) that records the event names handlers are registered for."""

    def __init__(self) -> None:
        super().__init__(host="127.0.0.1", port=1, username="test", secret="test")
        self.handled: list[str] = []

    def on_event(self, pattern: str, callback: EventCallback) -> None:
        self.handled.append(pattern)
        super().on_event(pattern, callback)


class RecordingController(HotlineController):
    """A controller that records who registers with it, and how."""

    registered: list[tuple[str, Callable[..., Any]]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.registered = []
        super().__init__(*args, **kwargs)

    def add_listener(self, listener: Any) -> None:
        self.registered.append(("event", listener))
        super().add_listener(listener)

    def add_resync_listener(self, listener: Any) -> None:
        self.registered.append(("resync", listener))
        super().add_resync_listener(listener)

    def on_originate_response(self, callback: Any) -> None:
        self.registered.append(("originate", callback))
        super().on_originate_response(callback)


def build(settings: Settings) -> tuple[RecordingAmi, RecordingController, Telephony]:
    """What `hotline run` builds around the controller, on a database never connected to."""
    sessionmaker = make_sessionmaker(make_engine("sqlite+aiosqlite://"))
    ami = RecordingAmi()
    controller = RecordingController(settings, sessionmaker, ami, is_working_day=lambda _d: True)
    callbacks = CallbackScheduler(controller, sessionmaker, settings)
    missed = CallbackScheduler(controller, sessionmaker, settings, job=MissedCallJob(settings))
    feed = ConsoleFeed(
        controller,
        Hub(),
        sessionmaker,
        AgentInterfaces(settings).username,
        lambda: datetime.now(UTC),
    )
    return ami, controller, Telephony(controller, (callbacks, missed), feed)


async def test_constructors_register_nothing_subscribe_registers_every_pair(
    settings: Settings,
) -> None:
    ami, controller, telephony = build(settings)
    assert (ami.handled, ami.on_connected, ami.event_filters) == ([], None, [])
    assert controller.registered == []

    subscribe(telephony)
    (callbacks, missed), feed = telephony.schedulers, telephony.feed
    assert feed is not None
    assert ami.on_connected is not None and ORIGINATE_RESPONSE_FILTER in ami.event_filters
    assert set(ami.handled) == {*ev.SUBSCRIBED, "DBGetResponse", "OriginateResponse"}
    assert controller.registered == [
        ("event", callbacks.on_event),
        ("resync", callbacks.reconcile),
        ("originate", callbacks.on_originate_response),
        ("event", missed.on_event),
        ("resync", missed.reconcile),
        ("originate", missed.on_originate_response),
        ("event", feed.on_event),
    ]


async def test_the_console_feed_names_its_pbx_and_publishes_a_quiet_queue_while_ami_is_up(
    settings: Settings,
) -> None:
    own = settings.model_copy(
        update={"callcontrol": settings.callcontrol.model_copy(update={"pbx": "b"})}
    )
    ami, controller, _ = build(own)
    hub = Hub()
    feed = console_feed(
        own, controller, hub, make_sessionmaker(make_engine("sqlite+aiosqlite://")), datetime.now
    )
    assert (feed.pbx, feed.refresh_s) == ("b", own.cockpit.queue_stale_s / 3)
    listener = hub.subscribe()
    listener.topics.add("queue")
    feed.refresh_s = 0.01
    ami.connected.set()  # nothing changes in the queue: the board hears from b all the same
    feed.start()
    try:
        event = await listener.next()
    finally:
        await feed.stop()
    assert event is not None and (event.topic, event.data["pbx"]) == ("queue", "b")


async def test_call_control_hears_the_events_and_its_softphone_passwords_have_their_own_ami_login(
    settings: Settings,
) -> None:
    ami, controller, _ = build(settings)
    sessionmaker = make_sessionmaker(make_engine("sqlite+aiosqlite://"))
    control = CallControl(controller, settings.callcontrol, sessionmaker, lambda: datetime.now(UTC))
    subscribe(Telephony(controller, callcontrol=control))
    assert controller.registered == [("event", control.on_event)]
    # the AstDB writes go over a connection of their own (the account with `system` only), which clears the
    # stale softphone passwords after each of its logins
    own = control.credentials.ami
    assert own is not ami and own.on_connected is not None
    assert (own.host, own.port) == (settings.ami.host, settings.ami.port)


async def test_a_transfers_outcome_reaches_the_agent_who_made_it_on_the_hub(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    _, controller, telephony = build(settings)
    assert telephony.feed is not None
    control = CallControl(controller, settings.callcontrol, sessionmaker, lambda: datetime.now(UTC))
    subscribe(replace(telephony, callcontrol=control))
    listener = telephony.feed.hub.subscribe()
    listener.topics.add("user:agent1")
    async with sessionmaker() as db, db.begin():
        row = CallTransfer(
            uniqueid="1741000000.1",
            ticket_no=None,
            mode="attended",
            target_kind="department",
            target="66010003",
            target_label="市教育局",
            by_user="agent1",
            at=datetime.now(UTC),
            outcome="dialling",
        )
        db.add(row)
    await control.on_event(ev.AttendedTransferEnded(datetime.now(UTC), str(row.id), "Success"))
    event = listener.queue.get_nowait()  # published by the time the outcome is recorded
    assert event is not None and event.topic == "user:agent1"
    assert (event.data["kind"], event.data["id"], event.data["outcome"]) == (
        "transfer",
        row.id,
        "completed",
    )
    assert event.data["message"] == "咨询转接至 市教育局：已转接"


async def test_a_second_subscribe_of_the_controller_changes_nothing(settings: Settings) -> None:
    ami, controller, _ = build(settings)
    subscribe(Telephony(controller))
    first = list(ami.handled)
    subscribe(Telephony(controller))
    assert ami.handled == first and len(first) == len(set(first))


async def test_an_unsubscribed_controller_refuses_to_start(settings: Settings) -> None:
    _, controller, _ = build(settings)
    with pytest.raises(ControllerNotSubscribed):
        await controller.start()


async def test_every_ticket_the_bot_files_is_linked_to_its_call() -> None:
    """``on_ticket`` of :func:`bot_hooks` hands the bot's ticket to the controller's call-log link."""
    from hotline.wiring import bot_hooks

    class LinkingController:
        def __init__(self) -> None:
            self.linked: list[tuple[str, str]] = []

        async def link_bot_ticket(self, bot_uuid: str, ticket_no: str) -> None:
            self.linked.append((bot_uuid, ticket_no))

    controller = LinkingController()
    await bot_hooks(controller)["on_ticket"]("b-1", "12345-20250304-00001")  # type: ignore[arg-type]
    assert controller.linked == [("b-1", "12345-20250304-00001")]


class MemberController:
    """What :class:`ControllerCallControl` uses of the controller: its members, QueueAdd and QueuePause."""

    def __init__(self, members: dict[str, Any]) -> None:
        self.state = SimpleNamespace(members=members)
        self.actions: list[tuple[str, ...]] = []

    async def add_agent(self, interface: str, name: str) -> None:
        self.actions.append(("add", interface))

    async def pause_agent(self, interface: str, paused: bool, reason: str = "") -> None:
        self.actions.append(("pause" if paused else "ready", interface, reason))


async def test_an_agents_first_status_logs_their_extension_into_the_queue() -> None:
    controller = MemberController({})
    control = ControllerCallControl(cast(Any, controller), cast(Any, None))
    await control.set_agent_state("PJSIP/6101", "ready")
    assert controller.actions == [("add", "PJSIP/6101"), ("ready", "PJSIP/6101", "")]
    member = MemberController({"PJSIP/6101": object()})
    member_control = ControllerCallControl(cast(Any, member), cast(Any, None))
    await member_control.set_agent_state("PJSIP/6101", "wrap_up")
    await member_control.set_agent_state("PJSIP/6101", "paused", "培训")
    assert member.actions == [("pause", "PJSIP/6101", "话后整理"), ("pause", "PJSIP/6101", "培训")]


async def test_a_controller_runs_the_console_workers_desk_and_switchboard_commands() -> None:
    """`hotline ivr`'s side of the command channel: the desk's commands on the controller and its 回访
    scheduler (as `hotline run` calls them), the switchboard's on the call control."""
    from hotline.wiring import ControllerCommands
    from tests.agent_console.switchboard_support import FakeSwitchboard
    from tests.agent_console.tickets_support import RecordingCallControl

    controller, switchboard = MemberController({}), FakeSwitchboard()
    callbacks = RecordingCallControl()
    commands = ControllerCommands(
        *(cast(Any, part) for part in (controller, callbacks, switchboard))
    )
    await commands.set_agent_state("PJSIP/6101", "paused", "会议")
    await commands.start_callback("12345-20250303-00001")
    await commands.provision_softphone("6101", "s3cret-pw", 900.0)
    assert controller.actions == [("add", "PJSIP/6101"), ("pause", "PJSIP/6101", "会议")]
    assert callbacks.callbacks == ["12345-20250303-00001"] and switchboard.states == []
    assert switchboard.softphones == {"6101": ("s3cret-pw", 900.0)}
    assert await commands.board(ZoneInfo("Asia/Shanghai")) == switchboard.agents


class SilentEngine:
    """A TTS engine that speaks a quarter second of silence under a given name."""

    def __init__(self, cache_id: str) -> None:
        self.cache_id = cache_id

    def synthesize(self, text: str) -> bytes:
        return bytes(4000)


def prompt_starts(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str
) -> list[int]:
    """Three PBX starts' prompt installs with the bot's voice; returns how many engines were built by then."""
    import asr.tts

    loads: list[int] = []

    def build_tts(tts: TtsSettings) -> CachedTts:
        loads.append(1)
        return CachedTts(SilentEngine(engine), tmp_path / "tts")

    monkeypatch.setattr(asr.tts, "build_tts", build_tts)
    prompts = tmp_path / "prompts.toml"
    prompts.write_text('[prompts]\nwelcome = "您好，这里是12345热线。"\n', encoding="utf-8")
    kokoro = settings.model_copy(
        update={"tts": settings.tts.model_copy(update={"engine": "kokoro"})}
    )
    counts = []
    for _ in range(3):
        install_prompts({"prompts": tmp_path / "sounds"}, prompts, prompt_voice(kokoro))
        counts.append(len(loads))
    return counts


def test_a_pbx_start_with_up_to_date_prompts_loads_no_voice_model(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    starts = prompt_starts(settings, tmp_path, monkeypatch, "kokoro-v1.0-int8/zf_xiaoxiao/1")
    assert starts == [1, 1, 1]


def test_prompts_spoken_by_the_fallback_voice_are_made_again_at_the_next_start(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Kokoro did not load: espeak-ng spoke; each start tries Kokoro again.
    starts = prompt_starts(settings, tmp_path, monkeypatch, "espeak-ng/cmn-latn-pinyin/150")
    assert starts == [1, 2, 3]
