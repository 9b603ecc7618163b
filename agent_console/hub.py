"""Live-update hub: in-process publish/subscribe by topic, behind the ``/ws`` endpoint.

Topics are ``name`` or ``name:argument`` (``user:zhang3``, later ``queue``, ``dept:城管局``). Who may
subscribe is decided by a :class:`TopicRule` per name, deny by default. ``Hub.publish`` is the single entry
for events: today producers in the same process call it; in a multi-worker deployment a PostgreSQL
``LISTEN`` task in each worker calls it for every ``NOTIFY`` so all browsers see the same events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from agent_console.roles import ALL_ROLES, Role, ScopedUser

Json = Any


@dataclass(frozen=True)
class Event:
    topic: str
    data: Json


class TopicRule:
    """Who may subscribe to topics named ``name``: the roles, and an optional check of the argument."""

    def __init__(self, name: str, roles: Iterable[Role],
                 argument: Callable[[Any, str | None], bool] | None = None) -> None:
        self.name = name
        self.roles = frozenset(roles)
        self.argument = argument

    def allows(self, user: Any, argument: str | None) -> bool:
        if user.role not in self.roles:
            return False
        return self.argument(user, argument) if self.argument else argument is None


def _own_username(user: Any, argument: str | None) -> bool:
    return argument is not None and argument == user.username


# Every user hears system notices and their own messages (screen pops, warnings addressed to them).
DEFAULT_TOPICS = (
    TopicRule("broadcast", ALL_ROLES),
    TopicRule("user", ALL_ROLES, _own_username),
)


def split_topic(topic: str) -> tuple[str, str | None]:
    name, sep, argument = topic.partition(":")
    return name, (argument if sep else None)


@dataclass(eq=False)
class Subscription:
    """One browser connection's topics and its bounded queue of events."""

    hub: Hub
    queue: asyncio.Queue[Event]
    topics: set[str] = field(default_factory=set)
    overflowed: bool = False

    async def next(self) -> Event | None:
        """The next event, or None once the subscriber fell too far behind (the connection should close)."""
        if self.overflowed:
            return None
        event = await self.queue.get()
        return None if self.overflowed else event

    def close(self) -> None:
        self.hub._subscribers.discard(self)


class Hub:
    def __init__(self, rules: Iterable[TopicRule] = DEFAULT_TOPICS, *, queue_size: int = 256) -> None:
        self.rules = {r.name: r for r in rules}
        self.queue_size = queue_size
        self._subscribers: set[Subscription] = set()

    def may_subscribe(self, user: ScopedUser, topic: str) -> bool:
        name, argument = split_topic(topic)
        rule = self.rules.get(name)
        return rule is not None and rule.allows(user, argument)

    def subscribe(self) -> Subscription:
        sub = Subscription(self, asyncio.Queue(self.queue_size))
        self._subscribers.add(sub)
        return sub

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(self, topic: str, data: Json) -> int:
        """Deliver to every subscriber of ``topic``; returns how many got it. Never blocks the publisher:
        a subscriber whose queue is full is marked overflowed and dropped."""
        event = Event(topic, data)
        delivered = 0
        for sub in list(self._subscribers):
            if topic not in sub.topics:
                continue
            try:
                sub.queue.put_nowait(event)
                delivered += 1
            except asyncio.QueueFull:
                sub.overflowed = True
                sub.close()
                sub.queue.get_nowait()
                sub.queue.put_nowait(event)  # wake the waiting sender so it sees the overflow
        return delivered
