"""What the controller's e2e tests share: settings for the local PBX, emulated callers, and the controller's
events awaited by predicate (no sleeps)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import time
from typing import Any

from config import Settings
from config.settings import PeakWindow
from ivr import events as ev
from ivr.ami import AmiClient
from ivr.controller import HotlineController

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
        self, predicate: Callable[[ev.DomainEvent], bool], limit_s: float = 30
    ) -> ev.DomainEvent:
        async with asyncio.timeout(limit_s), self._changed:
            while True:
                for event in self.seen:
                    if predicate(event):
                        return event
                await self._changed.wait()


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
