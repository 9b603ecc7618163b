"""What the controller's e2e tests share: a controller running on the local PBX, settings for it, emulated
callers and citizens, and the controller's events awaited by predicate (no sleeps)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime, time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from config.settings import PeakWindow
from hotline.wiring import Telephony, blocklist_agi, subscribe
from ivr import events as ev
from ivr.ami import AmiClient
from ivr.controller import HotlineController, build_controller

ALWAYS = PeakWindow(weekdays=[1, 2, 3, 4, 5, 6, 7], start=time(0, 0), end=time(23, 59, 59))


class Events:
    """Domain events seen by a controller, awaited by predicate (no sleeps)."""

    def __init__(self, controller: HotlineController) -> None:
        self.seen: list[ev.DomainEvent] = []
        self._changed = asyncio.Condition()
        controller.add_listener(self._on)

    async def _on(self, event: ev.DomainEvent) -> None:
        async with self._changed:
            self.seen.append(event)
            self._changed.notify_all()

    async def wait(
        self, predicate: Callable[[ev.DomainEvent], bool], limit_s: float = 30, *, after: int = 0
    ) -> ev.DomainEvent:
        """The first event matching ``predicate`` among those seen after the first ``after``."""
        async with asyncio.timeout(limit_s), self._changed:
            while True:
                for event in self.seen[after:]:
                    if predicate(event):
                        return event
                await self._changed.wait()


AST_DEVICE_INUSE = 2  # QueueMemberStatus Status: the member's device is in use


async def until_in_use(events: Events, interface: str, after: int) -> None:
    """Until Asterisk's queue counts ``interface`` in use (a QueueMemberStatus among the events seen after the
    first ``after``). Only then is an agent who just answered never rung for the next caller: ``ringinuse = no``
    follows the device state, which may be reported after the bridge on a loaded machine."""
    await events.wait(
        lambda e: (
            isinstance(e, ev.MemberState)
            and e.interface == interface
            and e.status == AST_DEVICE_INUSE
        ),
        after=after,
    )


def explain(ctrl: HotlineController, events: Events) -> str:
    """Why no redirect came: the controller's last decisions, the queue members it knew, the events seen."""
    return (
        f"decisions {[d.as_log() for d in list(ctrl.decisions)[-5:]]}; members {ctrl.state.members}; "
        f"events {[type(e).__name__ for e in events.seen]}"
    )


def pbx_credentials(local_pbx: Any, pbx: Any) -> Callable[[], tuple[str, str]]:
    """The local PBX's AMI login, read anew at every connect: a restarted PBX has a new secret."""

    def credentials() -> tuple[str, str]:
        info = local_pbx.status() or pbx
        return info.ami_username, info.ami_secret

    return credentials


def controller_on(
    settings: Settings,
    database: async_sessionmaker[AsyncSession],
    local_pbx: Any,
    pbx: Any,
) -> HotlineController:
    """A controller for the local PBX, built but not yet subscribed or started."""
    return build_controller(settings, database, credentials=pbx_credentials(local_pbx, pbx))


async def start(ctrl: HotlineController, telephony: Telephony | None = None) -> HotlineController:
    """Subscribe ``telephony`` (the controller alone by default), start, and wait for the AMI login."""
    subscribe(telephony or Telephony(ctrl))
    await ctrl.start()
    await asyncio.wait_for(ctrl.ami.connected.wait(), 20)
    return ctrl


async def stop(ctrl: HotlineController, agents: Iterable[str] = ()) -> None:
    """Take the test's ``agents`` out of the queue (other suites share the PBX), then stop."""
    for agent in agents:
        if agent in ctrl.state.members:
            await ctrl.remove_agent(agent)
    await ctrl.stop()


@contextlib.asynccontextmanager
async def running(
    settings: Settings,
    database: async_sessionmaker[AsyncSession],
    local_pbx: Any,
    pbx: Any,
    *,
    agents: Iterable[str] = (),
) -> AsyncIterator[HotlineController]:
    """A started controller for the local PBX with the blocklist's FastAGI server the dialplan asks (as `hotline
    ivr` runs them); both stopped (the controller's ``agents`` logged out) on exit."""
    blocklist = blocklist_agi(settings, database)
    await blocklist.start()
    try:
        ctrl = await start(controller_on(settings, database, local_pbx, pbx))
        try:
            yield ctrl
        finally:
            await stop(ctrl, agents)
    finally:
        await blocklist.stop()


class Clock:
    """A settable clock for the call-back scheduler (retries without waiting an hour)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def new_number() -> str:
    """A fresh mobile number (139…), so each test's citizen has its own call log and tasks."""
    return "139" + "".join(random.choices("0123456789", k=8))


async def citizen(ctrl: HotlineController, number: str, behaviour: str) -> None:
    """What the emulated citizen with ``number`` does when rung (see [test-citizen] in extensions.conf)."""
    await ctrl.ami.action(
        {"Action": "Setvar", "Variable": f"TEST_CITIZEN_{number}", "Value": behaviour}
    )


async def hang_up(ctrl: HotlineController, channel: str) -> None:
    """Hang up ``channel`` if it is still up."""
    with contextlib.suppress(Exception):  # already gone
        await ctrl.ami.action({"Action": "Hangup", "Channel": channel})


def callback_settings(settings: Settings, pbx: Any, **callback: Any) -> Settings:
    """Settings for call-backs rung to the emulated citizen (``[test-citizen]``); no overflow, so a waiting
    caller stays queued."""
    return settings.model_copy(
        update={
            "ami": settings.ami.model_copy(update={"host": pbx.ami_host, "port": pbx.ami_port}),
            "overflow": settings.overflow.model_copy(update={"enabled": False}),
            "callback": settings.callback.model_copy(
                update={
                    "channel_template": "Local/{number}@test-citizen/n",
                    "ring_timeout_s": 4.0,
                    "max_attempts": 2,
                    "retry_interval_minutes": 60,
                }
                | callback
            ),
        }
    )


def e2e_settings(settings: Settings, pbx: Any, **overflow: Any) -> Settings:
    return settings.model_copy(
        update={
            "ami": settings.ami.model_copy(
                update={
                    "host": pbx.ami_host,
                    "port": pbx.ami_port,
                    "ping_interval_s": 1.0,
                    "ping_timeout_s": 2.0,
                    "reconnect_min_s": 0.5,
                    "reconnect_max_s": 2.0,
                }
            ),
            "overflow": settings.overflow.model_copy(
                update={
                    "peak_windows": [ALWAYS],
                    "tick_s": 0.2,
                    "off_hours_to_bot": False,
                    "max_estimated_wait_s": 1.0,
                    "default_talk_time_s": 120.0,
                }
                | overflow
            ),
        }
    )


async def dial_12345(
    ami: AmiClient,
    caller: str,
    variables: list[str],
    *,
    prefix: str,
    context: str = "hotline-inbound",
) -> str:
    """A ``[test-caller]`` Local channel from ``caller`` dialling 12345 (or put straight into ``context``) with
    its ``TEST_*`` channel ``variables``; returns the Uniqueid of its hotline side, ``<prefix><uuid>``."""
    uniqueid = f"{prefix}{uuid.uuid4()}"
    await ami.action(
        {
            "Action": "Originate",
            "Channel": "Local/s@test-caller/n",
            "Context": context,
            "Exten": "12345" if context == "hotline-inbound" else "s",
            "Priority": 1,
            "Async": "true",
            "CallerID": caller,
            "ChannelId": uniqueid,
            "OtherChannelId": f"{uniqueid}-caller",
            "Variable": variables,
        }
    )
    return uniqueid
