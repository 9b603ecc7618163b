"""Publishing a screen pop to a page in the browser tests, the way the AMI controller does on an answer."""

from __future__ import annotations

import asyncio
from typing import Any

from agent_console.calls import publish_screen_pop
from tests.agent_console.harness import Console


async def pop_when_subscribed(console: Console, username: str, caller: str, **kw: Any) -> None:
    """Publish the screen pop once the page's subscription has reached the server (a pop before that is
    delivered to nobody and published again), at most for 5 s."""

    async def delivered() -> None:
        # (ASYNC110) the hub offers no event for "someone subscribed"; delivery itself is the signal
        while not await publish_screen_pop(  # noqa: ASYNC110
            console.hub, console.sessionmaker, username, caller, **kw
        ):
            await asyncio.sleep(0.05)

    await asyncio.wait_for(delivered(), 5)
