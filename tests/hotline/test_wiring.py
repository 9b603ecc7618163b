"""Explicit wiring: constructors only store what they are given; :func:`hotline.wiring.subscribe` is the
one step that registers handlers, and a controller never starts unsubscribed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import pytest

from agent_console.hub import Hub
from agent_console.softphone import AgentInterfaces
from config import Settings
from hotline.db import make_engine, make_sessionmaker
from hotline.wiring import ConsoleFeed, ControllerCallControl, Telephony, subscribe
from ivr import events as ev
from ivr.ami import AmiClient, EventCallback
from ivr.callbacks import CallbackScheduler, MissedCallJob
from ivr.controller import ORIGINATE_RESPONSE_FILTER, ControllerNotSubscribed, HotlineController


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
