"""The hardened AMI protocol: recorded streams, malformed frames, pending actions on a dropped connection."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from panoramisk.message import Message

from ivr.ami import AmiClient, AmiConnectionLost
from tests.ivr.amitools import attach, fixture_bytes, new_client

VALID = b"Event: HotlineProbe\r\nUniqueid: 1.1\r\nValue: \xe5\x92\xa8\xe8\xaf\xa2\r\n\r\n"


def collect(client: AmiClient, pattern: str = "*") -> list[Message]:
    seen: list[Message] = []
    client.on_event(pattern, seen.append)
    return seen


async def test_recorded_stream_is_dispatched_whole_and_in_order(client: AmiClient) -> None:
    seen = collect(client)
    protocol, _ = attach(client)
    protocol.data_received(fixture_bytes("bot_then_agent.ami"))
    names = [m["Event"] for m in seen]
    assert names[:3] == ["Newchannel", "Newchannel", "Newstate"]
    assert names[-1] == "QueueMemberStatus" and len(names) == 17
    assert protocol.version == "9.0.0"
    assert [m.seq for m in seen] == sorted(m.seq for m in seen)
    assert client.stats.malformed_frames == 0


async def test_byte_by_byte_delivery_gives_the_same_events() -> None:
    whole, split = new_client(), new_client()
    seen_whole, seen_split = collect(whole), collect(split)
    attach(whole)[0].data_received(fixture_bytes("leader_and_abandon.ami"))
    protocol, _ = attach(split)
    for byte in fixture_bytes("leader_and_abandon.ami"):
        protocol.data_received(bytes([byte]))
    assert len(seen_whole) == 12
    assert [dict(m) for m in seen_split] == [dict(m) for m in seen_whole]


@pytest.mark.parametrize(
    ("garbage", "counter"),
    [
        (b"this is not AMI at all\r\n\r\n", "malformed_frames"),
        (
            b"Uniqueid: 1.2\r\nChannel: PJSIP/x\r\n\r\n",
            "malformed_frames",
        ),  # no Event / Response header
        (
            b"Event: Newchannel\r\nEvent: Hangup\r\nUniqueid: 1.3\r\n\r\n",
            "malformed_frames",
        ),  # repeated Event
        (
            b"Event: Newchannel\r\nCallerIDName: \xff\xfe\xc3\r\nUniqueid: 1.4\r\n\r\n",
            "undecodable_frames",
        ),
        (b"Event: Huge\r\nData: " + b"x" * 5000 + b"\r\n\r\n", "oversized_frames"),
        (b"\r\n\r\n\r\n\r\n", None),  # blank frames are keep-alive noise, not errors
    ],
)
async def test_malformed_frame_is_counted_and_the_next_event_still_arrives(
    garbage: bytes, counter: str | None
) -> None:
    client = new_client(max_frame_bytes=1024)
    seen = collect(client, "HotlineProbe")
    client.on_event(
        "Newchannel", lambda _message: None
    )  # else its frames are dropped unparsed as unwanted
    protocol, transport = attach(client)
    protocol.data_received(garbage)
    protocol.data_received(VALID)
    assert [m["Value"] for m in seen] == ["咨询"]
    if counter is not None:
        assert getattr(client.stats, counter) == 1
    assert not transport.closed


async def test_bad_frames_and_failing_handlers_are_logged_without_the_callers_number_or_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = new_client()
    client.on_event("Newchannel", lambda _m: 1 / 0)
    protocol, _ = attach(client)
    with caplog.at_level("WARNING", logger="ivr.ami"):
        protocol.data_received("CallerIDNum: 13912345678\r\nCallerIDName: 张三\r\n\r\n".encode())
        protocol.data_received(
            b"Event: Newchannel\r\nCallerIDName: \xff\xfe\r\nCallerIDNum: 13912345678\r\n\r\n"
        )
        protocol.data_received(
            "Event: Newchannel\r\nUniqueid: 1.5\r\nCallerIDNum: 13912345678\r\n"
            "CallerIDName: 张三\r\n\r\n".encode()
        )
    logged = caplog.text
    assert "malformed AMI frame" in logged and "Newchannel uniqueid=1.5" in logged
    assert "13912345678" not in logged and "张三" not in logged


async def test_truncated_frame_waits_for_its_end_and_oversize_without_end_is_dropped() -> None:
    client = new_client(max_frame_bytes=1024)
    seen = collect(client, "HotlineProbe")
    protocol, _ = attach(client)
    protocol.data_received(VALID[:20])
    assert seen == []
    protocol.data_received(VALID[20:])
    assert len(seen) == 1
    protocol.data_received(b"Event: Flood\r\nData: " + b"y" * 4000)  # never ends…
    protocol.data_received(b"z" * 4000 + b"\r\n\r\n" + VALID)  # …until here
    assert len(seen) == 2 and client.stats.oversized_frames == 1
    assert len(protocol._buf) == 0


async def test_a_failing_event_callback_does_not_break_the_connection(client: AmiClient) -> None:
    def boom(_message: Message) -> None:
        raise RuntimeError("bug in a handler")

    client.on_event("HotlineProbe", boom)
    seen = collect(client, "HotlineProbe")
    protocol, transport = attach(client)
    protocol.data_received(VALID + VALID)
    assert len(seen) == 2 and client.stats.callback_errors == 2 and not transport.closed


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    garbage=st.binary(max_size=3000),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=8),
)
async def test_fuzz_arbitrary_bytes_never_raise_and_a_valid_event_after_them_is_processed(
    garbage: bytes, cuts: list[int]
) -> None:
    assume(b"Shutdown" not in garbage)  # a real Shutdown event rightly closes the connection
    client = new_client(max_frame_bytes=1024)
    seen = collect(client, "HotlineProbe")
    protocol, _ = attach(client)
    stream = garbage + b"\r\n\r\n" + VALID
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    for a, b in itertools.pairwise(points):
        protocol.data_received(stream[a:b])
    assert seen and seen[-1]["Value"] == "咨询"


async def test_pending_actions_fail_on_disconnect_instead_of_hanging_or_being_replayed(
    client: AmiClient,
) -> None:
    protocol, transport = attach(client)
    redirect = asyncio.ensure_future(
        client.action({"Action": "Redirect", "Channel": "PJSIP/x", "Context": "c"})
    )
    ping = asyncio.ensure_future(client.action({"Action": "Ping"}))
    await asyncio.sleep(0)
    assert b"Action: Redirect" in transport.written
    protocol.connection_lost(None)
    for future in (redirect, ping):
        with pytest.raises(AmiConnectionLost):
            await asyncio.wait_for(future, 1)
    assert client._manager.awaiting_actions == type(client._manager.awaiting_actions)()


async def test_queue_add_reply_completes_the_action(client: AmiClient) -> None:
    """panoramisk alone treats "Added interface to queue" as the start of a list and never resolves it."""
    protocol, transport = attach(client)
    pending = asyncio.ensure_future(
        client.action({"Action": "QueueAdd", "Queue": "hotline", "Interface": "PJSIP/1"})
    )
    await asyncio.sleep(0)
    action_id = next(
        line.split(": ", 1)[1]
        for line in transport.written.decode().split("\r\n")
        if line.startswith("ActionID")
    )
    protocol.data_received(
        f"Response: Success\r\nActionID: {action_id}\r\nMessage: Added interface to queue\r\n\r\n".encode()
    )
    reply = await asyncio.wait_for(pending, 1)
    assert isinstance(reply, Message) and reply.success
