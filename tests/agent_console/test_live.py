"""The /ws live-update socket and its hub: authentication, topics by role, delivery, slow consumers, and the
socket's end with its session (logout, deactivation, role change, expiry)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console.hub import Hub
from agent_console.models import UserSession
from config import Settings
from tests.agent_console.harness import (
    Browser,
    Console,
    console_settings,
    start_console,
    stop_console,
)

SESSION_CLOSE = aiohttp.WSCloseCode.POLICY_VIOLATION


async def connect(b: Browser, **kw) -> aiohttp.ClientWebSocketResponse:  # type: ignore[no-untyped-def]
    ws = await b.http.ws_connect(b.url("/ws"), **kw)
    hello = await ws.receive_json(timeout=5)
    assert hello["type"] == "hello"
    return ws


async def test_socket_needs_a_login_and_a_same_site_origin(console: Console) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as anonymous:
        await console.browser().http.ws_connect(console.browser().url("/ws"))
    assert anonymous.value.status == 401
    agent = await console.logged_in("agent")
    with pytest.raises(aiohttp.WSServerHandshakeError) as foreign:
        await agent.http.ws_connect(agent.url("/ws"), headers={"Origin": "http://evil.example"})
    assert foreign.value.status == 403


async def test_user_hears_own_topic_and_broadcasts_only(console: Console) -> None:
    agent = await console.logged_in("agent")
    ws = await connect(agent)
    assert console.hub.publish("user:leader", {"pop": "not for agent"}) == 0
    assert console.hub.publish("user:agent", {"pop": "来电 13812345678"}) == 1
    assert console.hub.publish("broadcast", {"message": "系统将于今晚维护"}) == 1
    first, second = await ws.receive_json(timeout=5), await ws.receive_json(timeout=5)
    assert first == {"type": "event", "topic": "user:agent", "data": {"pop": "来电 13812345678"}}
    assert second["topic"] == "broadcast"
    await ws.close()


async def test_subscribing_to_a_topic_the_role_may_not_hear_is_refused(console: Console) -> None:
    ws = await connect(await console.logged_in("handler"))
    for topic in ("user:agent", "queue", "nonsense:1"):
        await ws.send_json({"type": "subscribe", "topics": [topic]})
        reply = await ws.receive_json(timeout=5)
        assert reply["type"] == "error" and reply["code"] == "console.forbidden_topic", topic
    await ws.send_json({"type": "ping"})
    assert (await ws.receive_json(timeout=5)) == {"type": "pong"}
    await ws.send_str("not json")
    assert (await ws.receive_json(timeout=5))["code"] == "console.bad_message"
    await ws.close()


async def closed_by_server(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """Read until the server closes the socket (events before it are skipped); its close code."""
    while True:
        msg = await ws.receive(timeout=5)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return ws.close_code


async def still_open(ws: aiohttp.ClientWebSocketResponse) -> bool:
    await ws.send_json({"type": "ping"})
    return await ws.receive_json(timeout=5) == {"type": "pong"}


async def console_checking_every(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], seconds: float
) -> Console:
    return await start_console(console_settings(settings, ws_session_check_s=seconds), sessionmaker)


@pytest.fixture
async def rarely_checking(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[Console]:
    """A console whose timer would not check a socket's session within a test: only events can close it."""
    c = await console_checking_every(settings, sessionmaker, 3600)
    yield c
    await stop_console(c)


async def test_logout_closes_the_open_socket_at_once(rarely_checking: Console) -> None:
    agent, other = (
        await rarely_checking.logged_in("agent"),
        await rarely_checking.logged_in("agent"),
    )
    ws, other_ws = await connect(agent), await connect(other)
    assert (
        await agent.request("POST", "/logout", data={"csrf_token": await agent.csrf()})
    ).status == 303
    assert await closed_by_server(ws) == SESSION_CLOSE
    assert await still_open(other_ws)  # the same account's other login keeps its socket
    await other_ws.close()


async def test_deactivating_or_changing_the_role_of_a_user_closes_their_sockets(
    rarely_checking: Console,
) -> None:
    c = rarely_checking
    admin, agent, dispatcher, leader = [
        await c.logged_in(n) for n in ("admin", "agent", "dispatcher", "leader")
    ]
    agent_sockets = [await connect(agent), await connect(agent)]
    dispatcher_ws, leader_ws = await connect(dispatcher), await connect(leader)
    assert (await admin.write("PATCH", "/api/v1/users/agent", {"active": False})).status == 200
    assert [await closed_by_server(ws) for ws in agent_sockets] == [SESSION_CLOSE, SESSION_CLOSE]
    assert (
        await admin.write("PATCH", "/api/v1/users/dispatcher", {"role": "leader"})
    ).status == 200
    assert await closed_by_server(dispatcher_ws) == SESSION_CLOSE
    assert await still_open(leader_ws)
    await leader_ws.close()


async def test_expired_session_is_closed_by_the_timer_while_events_flow(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    c = await console_checking_every(settings, sessionmaker, 0.05)
    try:
        ws = await connect(await c.logged_in("agent"))
        c.clock.advance(c.settings.console.session_ttl_s + 1)
        c.hub.publish("user:agent", {"n": 0})
        while (msg := await ws.receive(timeout=5)).type == aiohttp.WSMsgType.TEXT:
            c.hub.publish("user:agent", {"n": msg.json()["data"]["n"] + 1})  # never a quiet moment
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == SESSION_CLOSE
    finally:
        await stop_console(c)


async def test_session_revoked_by_another_worker_is_closed_by_the_timer(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    c = await console_checking_every(settings, sessionmaker, 0.05)
    try:
        ws = await connect(await c.logged_in("agent"))
        async with sessionmaker() as db:  # what another console worker's logout writes
            await db.execute(update(UserSession).values(revoked_at=c.clock()))
            await db.commit()
        assert await closed_by_server(ws) == SESSION_CLOSE
    finally:
        await stop_console(c)


async def test_slow_subscriber_is_dropped_without_blocking_the_publisher() -> None:
    hub = Hub(queue_size=2)
    slow, fast = hub.subscribe(), hub.subscribe()
    slow.topics.add("queue")
    for n in range(3):
        hub.publish("queue", n)
    assert await slow.next() is None and slow.overflowed
    assert hub.subscriber_count == 1 and fast in hub._subscribers
    assert hub.publish("queue", 4) == 0
