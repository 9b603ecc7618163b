"""Live-update hub: in-process publish/subscribe by topic, behind the ``/ws`` endpoint.

Topics are ``name`` or ``name:argument`` (``user:zhang3``, later ``queue``, ``dept:城管局``). Who may
subscribe is decided by a :class:`TopicRule` per name, deny by default. ``Hub.publish`` is the single entry
for events, called by producers in the same process. This in-process hub serves one process (SQLite, ``hotline
run``); :class:`agent_console.hub_pg.PostgresHub` keeps the same interface and also delivers each event to the
subscribers of every other process on the same PostgreSQL (LISTEN/NOTIFY). The composition root picks one by
the database (``hotline.wiring.build_hub``) and calls :meth:`Hub.start` / :meth:`Hub.close`.

A browser's subscription carries its :class:`Owner` (account and login session), so ``Hub.disconnect``
ends at once the sockets of a session that was logged out, or of an account deactivated or changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from agent_console.roles import ALL_ROLES, Role, ScopedUser

Json = Any


@dataclass(frozen=True)
class Event:
    topic: str
    data: Json


class TopicRule:
    """Who may subscribe to topics named ``name``: the roles, and an optional check of the argument."""

    def __init__(
        self,
        name: str,
        roles: Iterable[Role],
        argument: Callable[[Any, str | None], bool] | None = None,
    ) -> None:
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


class Ended(StrEnum):
    """Why the hub dropped a subscription."""

    TOO_SLOW = "too slow"  # the browser fell too far behind
    SESSION_ENDED = (
        "session ended"  # logged out, deactivated, or the account's role or placement changed
    )


@dataclass(frozen=True)
class Owner:
    """Whose browser a subscription serves: the account and the login session."""

    user_id: int
    session_id: int


@dataclass(eq=False)
class Subscription:
    """One browser connection's topics and its bounded queue of events."""

    hub: Hub
    queue: asyncio.Queue[Event | None]
    owner: Owner | None = None  # None for in-process listeners (e.g. the cockpit's queue board)
    topics: set[str] = field(default_factory=set)
    ended: Ended | None = None
    # set when the reader takes an event or the subscription closes: a waiter for room looks again
    _taken: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def overflowed(self) -> bool:
        return self.ended is Ended.TOO_SLOW

    async def next(self) -> Event | None:
        """The next event, or None once the hub dropped this subscription (the connection should close)."""
        if self.ended is not None:
            return None
        event = await self.queue.get()
        self._taken.set()
        return None if self.ended is not None else event

    async def room(self) -> None:
        """Return once the queue can take another event, or the subscription is closed."""
        while self.queue.full() and self in self.hub._subscribers:
            self._taken.clear()
            await self._taken.wait()

    def end(self, why: Ended) -> None:
        """Drop this subscription and wake its reader, which then sees ``ended``."""
        if self.ended is not None:
            return
        self.ended = why
        self.close()
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(None)

    def close(self) -> None:
        self.hub._subscribers.discard(self)
        self._taken.set()


class Hub:
    def __init__(
        self, rules: Iterable[TopicRule] = DEFAULT_TOPICS, *, queue_size: int = 256
    ) -> None:
        self.rules = {r.name: r for r in rules}
        self.queue_size = queue_size
        self._subscribers: set[Subscription] = set()

    def may_subscribe(self, user: ScopedUser, topic: str) -> bool:
        name, argument = split_topic(topic)
        rule = self.rules.get(name)
        return rule is not None and rule.allows(user, argument)

    def subscribe(self, owner: Owner | None = None) -> Subscription:
        sub = Subscription(self, asyncio.Queue(self.queue_size), owner)
        self._subscribers.add(sub)
        return sub

    def disconnect(self, *, user_id: int | None = None, session_id: int | None = None) -> int:
        """End the subscriptions of one login session or of every session of one account; returns how many."""
        ended = [
            s
            for s in self._subscribers
            if s.owner is not None
            and (s.owner.user_id == user_id or s.owner.session_id == session_id)
        ]
        for sub in ended:
            sub.end(Ended.SESSION_ENDED)
        return len(ended)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    async def start(self) -> None:
        """Begin hearing other processes' events (an in-process hub has none)."""

    async def close(self) -> None:
        """Stop hearing other processes' events."""

    def publish(self, topic: str, data: Json) -> int:
        """Deliver to every subscriber of ``topic``; returns how many got it. Never blocks the publisher:
        a subscriber whose queue is full is marked overflowed and dropped."""
        return self.deliver(Event(topic, data))

    def deliver(self, event: Event) -> int:
        """Deliver ``event`` to this process's subscribers of its topic (see :meth:`publish`)."""
        topic = event.topic
        delivered = 0
        for sub in list(self._subscribers):
            if topic not in sub.topics:
                continue
            try:
                sub.queue.put_nowait(event)
                delivered += 1
            except asyncio.QueueFull:
                sub.end(Ended.TOO_SLOW)
        return delivered
