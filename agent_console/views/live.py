"""``/ws``: the live-update socket. Each browser subscribes to topics it may hear (see ``agent_console.hub``).

Client → server: ``{"type": "subscribe" | "unsubscribe", "topics": [...]}``, ``{"type": "ping"}``.
Server → client: ``hello`` (auto-subscribed topics), ``subscribed``, ``unsubscribed``, ``event``
(``topic``, ``data``), ``pong``, ``error`` (``code``, ``message``). The socket closes at once when its session
is logged out or its account deactivated or changed in this worker (``Hub.disconnect``), when a check every
``console.ws_session_check_s`` seconds, whatever the traffic, finds the session expired or revoked elsewhere,
and when the browser falls too far behind.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, WSMsgType, web

from agent_console import keys
from agent_console.errors import Forbidden
from agent_console.hub import Ended, Owner, Subscription
from agent_console.routing import SESSION_COOKIE, Call, RouteTable

routes = RouteTable("live")
MAX_TOPICS = 32
CLOSE_CODES = {
    Ended.TOO_SLOW: WSCloseCode.TRY_AGAIN_LATER,
    Ended.SESSION_ENDED: WSCloseCode.POLICY_VIOLATION,
}


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


async def _pump(ws: web.WebSocketResponse, sub: Subscription) -> None:
    """Forward events to the browser; close once the hub dropped the subscription (why: ``sub.ended``)."""
    while (event := await sub.next()) is not None:
        await ws.send_json({"type": "event", "topic": event.topic, "data": event.data})
    assert sub.ended is not None
    await ws.close(code=CLOSE_CODES[sub.ended], message=sub.ended.value.encode())


async def _watch_session(sub: Subscription, call: Call[None]) -> None:
    """End the subscription once the session is no longer valid, checked on a timer whatever the traffic."""
    accounts, sessionmaker, clock = (
        call.app[keys.ACCOUNTS],
        call.app[keys.SESSIONMAKER],
        call.app[keys.CLOCK],
    )
    token = call.request.cookies.get(SESSION_COOKIE, "")
    every = call.app[keys.SETTINGS].console.ws_session_check_s
    while sub.ended is None:
        await asyncio.sleep(every)
        async with sessionmaker() as db:
            if await accounts.resolve(db, token, clock()) is None:
                sub.end(Ended.SESSION_ENDED)


async def _on_message(
    ws: web.WebSocketResponse, sub: Subscription, call: Call[None], raw: str
) -> None:
    try:
        msg = json.loads(raw)
        kind, topics = msg.get("type"), msg.get("topics", [])
    except (json.JSONDecodeError, AttributeError):
        await ws.send_json(
            {"type": "error", "code": "console.bad_message", "message": "消息不是有效的 JSON 对象"}
        )
        return
    if kind == "ping":
        await ws.send_json({"type": "pong"})
    elif (
        kind in ("subscribe", "unsubscribe")
        and isinstance(topics, list)
        and all(isinstance(t, str) for t in topics)
    ):
        if kind == "unsubscribe":
            sub.topics.difference_update(topics)
            await ws.send_json({"type": "unsubscribed", "topics": topics})
            return
        refused = [t for t in topics if not call.app[keys.HUB].may_subscribe(call.user, t)]
        if refused or len(sub.topics | set(topics)) > MAX_TOPICS:
            await ws.send_json(
                {
                    "type": "error",
                    "code": "console.forbidden_topic",
                    "message": "无权订阅该频道",
                    "topics": refused,
                }
            )
            return
        sub.topics.update(topics)
        await ws.send_json({"type": "subscribed", "topics": topics})
    else:
        await ws.send_json(
            {"type": "error", "code": "console.bad_message", "message": "不支持的消息类型"}
        )


@routes.socket("/ws", summary="实时推送（WebSocket，按频道订阅）", name="live")
async def live(call: Call[None]) -> web.WebSocketResponse:
    if not _same_origin(call.request):
        raise Forbidden("不允许的来源")
    ws = web.WebSocketResponse(heartbeat=30.0)
    await ws.prepare(call.request)
    hub, gauge = call.app[keys.HUB], call.app[keys.METRICS].websockets
    assert call.session is not None
    sub = hub.subscribe(Owner(user_id=call.user.id, session_id=call.session.id))
    sub.topics.update({"broadcast", f"user:{call.user.username}"})
    gauge.inc()
    tasks: list[asyncio.Task[None]] = []
    try:
        await ws.send_json({"type": "hello", "topics": sorted(sub.topics)})
        tasks = [
            asyncio.create_task(_pump(ws, sub)),
            asyncio.create_task(_watch_session(sub, call)),
        ]
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await _on_message(ws, sub, call, msg.data)
    finally:
        for task in tasks:
            task.cancel()
        sub.close()
        gauge.dec()
    return ws
