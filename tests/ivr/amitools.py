"""Recorded AMI exchanges replayed through the real protocol (no socket), for unit and e2e tests."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from panoramisk.message import Message

from ivr import events as ev
from ivr.ami import AmiClient, HardenedAmiProtocol
from ivr.state import HotlineState, Update

FIXTURES = Path(__file__).with_name("fixtures")
RECEIVED = datetime(2025, 3, 4, 2, 0, tzinfo=UTC)


def fixture_bytes(name: str, **action_ids: str) -> bytes:
    """A recorded AMI stream (``{CHANNELS}``-style placeholders take ActionIDs), with CRLF line ends."""
    text = (FIXTURES / name).read_text(encoding="utf-8").replace("\r\n", "\n")
    for key, value in action_ids.items():
        text = text.replace("{" + key + "}", value)
    return text.replace("\n", "\r\n").encode("utf-8")


def recorded_reply(name: str, placeholder: str, action_id: str, **values: str) -> bytes:
    """The frames of a recorded stream that answer one action: those whose ActionID is ``{placeholder}``."""
    frames = fixture_bytes(name, **{placeholder: action_id}, **values).split(b"\r\n\r\n")
    mine = f"ActionID: {action_id}\r\n".encode()
    return b"".join(frame + b"\r\n\r\n" for frame in frames if mine in frame + b"\r\n")


class RecordingTransport(asyncio.Transport):
    """Transport end of an in-memory connection: keeps what the client wrote."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def attach(client: AmiClient) -> tuple[HardenedAmiProtocol, RecordingTransport]:
    """Connect a client to an in-memory transport (no socket) through :meth:`AmiClient.attach`, as on a connect."""
    protocol = HardenedAmiProtocol(client.stats, client.max_frame_bytes)
    transport = RecordingTransport()
    protocol.connection_made(transport)
    client.attach(protocol)
    return protocol, transport


def new_client(**kwargs: object) -> AmiClient:
    return AmiClient(host="127.0.0.1", port=1, username="u", secret="s", **kwargs)  # type: ignore[arg-type]


class Replayer:
    """Feeds AMI events through the client into a HotlineState, keeping every update."""

    def __init__(self, client: AmiClient, state: HotlineState) -> None:
        self.state = state
        self.updates: list[Update] = []
        self.events: list[ev.DomainEvent] = []
        for name in ev.SUBSCRIBED:
            client.on_event(name, self._on)

    def _on(self, message: Message) -> None:
        domain = ev.parse_event(message, RECEIVED)
        if domain is not None:
            self.events.append(domain)
            self.updates.append(self.state.apply(domain, message.seq))
