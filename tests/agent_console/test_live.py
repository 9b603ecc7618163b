"""The /ws live-update socket and its hub: authentication, topics by role, delivery, slow consumers."""

from __future__ import annotations

import aiohttp
import pytest

from agent_console.hub import Hub
from agent_console.views import live
from tests.agent_console.harness import Browser, Console


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
        assert reply["type"] == "error" and reply["code"] == "forbidden_topic", topic
    await ws.send_json({"type": "ping"})
    assert (await ws.receive_json(timeout=5)) == {"type": "pong"}
    await ws.send_str("not json")
    assert (await ws.receive_json(timeout=5))["code"] == "bad_message"
    await ws.close()


async def test_socket_closes_once_the_session_is_revoked(console: Console, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(live, "SESSION_RECHECK_S", 0.2)
    agent = await console.logged_in("agent")
    ws = await connect(agent)
    assert (await agent.request("POST", "/logout", data={"csrf_token": await agent.csrf()})).status == 303
    msg = await ws.receive(timeout=5)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION


async def test_slow_subscriber_is_dropped_without_blocking_the_publisher() -> None:
    hub = Hub(queue_size=2)
    slow, fast = hub.subscribe(), hub.subscribe()
    slow.topics.add("queue")
    for n in range(3):
        hub.publish("queue", n)
    assert await slow.next() is None and slow.overflowed
    assert hub.subscriber_count == 1 and fast in hub._subscribers
    assert hub.publish("queue", 4) == 0
