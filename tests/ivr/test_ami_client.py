"""Supervisor behaviour the real Asterisk cannot be made to show on demand: a half-open connection that stops
answering, refused logins, backoff. ``FakeSilentAmiServer`` is a loopback stand-in for exactly these faults."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable

from ivr.ami import AmiClient


class FakeSilentAmiServer:
    """Speaks just enough AMI (banner, Login, Ping). ``silent_connections`` first connections go silent after
    login — the socket stays open, nothing is answered (a hung peer or half-open TCP); ``refuse_logins`` first
    logins get ``Response: Error``."""

    def __init__(self, *, silent_connections: int = 0, refuse_logins: int = 0) -> None:
        self.silent_connections = silent_connections
        self.refuse_logins = refuse_logins
        self.connections = 0
        self.logins = 0
        self.server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for writer in self._writers:
            writer.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        silent = self.connections <= self.silent_connections
        self._writers.append(writer)
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                frame = (await reader.readuntil(b"\r\n\r\n")).decode()
                headers = dict(
                    line.split(": ", 1) for line in frame.strip().split("\r\n") if ": " in line
                )
                action, action_id = headers.get("Action", "").lower(), headers.get("ActionID", "")
                if action == "login":
                    self.logins += 1
                    ok = self.logins > self.refuse_logins
                    reply = (
                        "Success\r\nMessage: Authentication accepted"
                        if ok
                        else "Error\r\nMessage: Authentication failed"
                    )
                    writer.write(f"Response: {reply}\r\nActionID: {action_id}\r\n\r\n".encode())
                elif not silent:
                    writer.write(
                        f"Response: Success\r\nActionID: {action_id}\r\nPing: Pong\r\n\r\n".encode()
                    )
                await writer.drain()


def client_for(port: int, **kwargs: object) -> AmiClient:
    defaults: dict[str, object] = dict(
        ping_interval_s=0.2,
        ping_timeout_s=0.3,
        reconnect_min_s=0.05,
        reconnect_max_s=0.2,
        connect_timeout_s=1.0,
        action_timeout_s=1.0,
    )
    return AmiClient(
        host="127.0.0.1", port=port, username="hotline", secret="x", **(defaults | kwargs)
    )  # type: ignore[arg-type]


async def wait_until(predicate: Callable[[], bool], limit_s: float = 5.0) -> None:
    """Poll a condition the supervisor exposes no event for (connection counts of the fake server)."""
    async with asyncio.timeout(limit_s):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_silent_peer_is_detected_by_unanswered_ping_and_the_client_reconnects_and_resyncs() -> (
    None
):
    server = FakeSilentAmiServer(silent_connections=1)
    port = await server.start()
    resyncs: list[int] = []

    async def resync(_client: AmiClient) -> None:
        resyncs.append(server.connections)

    client = client_for(port, on_connected=resync)
    client.start()
    try:
        await wait_until(lambda: server.connections == 2 and client.connected.is_set())
        assert client.stats.dead_pings == 1
        assert resyncs == [1, 2]
        await asyncio.sleep(1.0)  # pings are answered now: no further drop
        assert server.connections == 2 and client.stats.dead_pings == 1
    finally:
        await client.stop()
        await server.stop()


async def test_refused_login_is_retried_with_backoff_until_accepted() -> None:
    server = FakeSilentAmiServer(refuse_logins=2)
    port = await server.start()
    client = client_for(port)
    client.start()
    try:
        await wait_until(client.connected.is_set)
        assert server.logins == 3 and client.stats.connect_failures == 2
        assert client.last_error is not None and "ami.auth_failed" in client.last_error
    finally:
        await client.stop()
        await server.stop()


async def test_unreachable_asterisk_keeps_being_retried_and_stop_is_prompt() -> None:
    server = FakeSilentAmiServer()
    port = await server.start()
    await server.stop()  # nothing listens on the port any more
    client = client_for(port)
    task = client.start()
    await wait_until(lambda: client.stats.connect_failures >= 3)
    async with asyncio.timeout(1):
        await client.stop()
    assert task.done() and not client.connected.is_set()


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    client = AmiClient(
        host="h",
        port=1,
        username="u",
        secret="s",
        reconnect_min_s=0.5,
        reconnect_max_s=30.0,
        rng=random.Random(7),
    )
    delays = [d for d, _ in zip(client.backoff_delays(), range(12), strict=False)]
    nominal = [min(30.0, 0.5 * 2**i) for i in range(12)]
    for delay, base in zip(delays, nominal, strict=True):
        assert 0.5 * base <= delay <= min(30.0, 1.5 * base)
    assert max(delays) <= 30.0 and delays[-1] > 10.0
    assert len(set(delays)) == len(delays)  # jitter: two controllers do not reconnect in lockstep
