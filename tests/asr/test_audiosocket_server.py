"""The AudioSocket server and client over loopback: real speech in, paced audio out, every way a call ends."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from asr import audio
from asr.audiosocket import audio_frame, dtmf_frame, hangup_frame
from asr.audiosocket_client import AudioSocketClient
from asr.audiosocket_server import (
    Audio,
    AudioSocketServer,
    AudioSocketSession,
    Dtmf,
    Event,
    Hangup,
    PeerGone,
)
from config import Settings
from tests.asr.fakes import any_port

pytestmark = pytest.mark.serial  # asserts real-time pacing: not beside other tests

UTTERANCE = "wav8k_telephone_sim/BAC009S0724W0121.wav"
WAIT = 5.0  # generous upper bound for anything that should happen promptly


@asynccontextmanager
async def serving(
    handler: Callable[[AudioSocketSession], Awaitable[None]], **options: Any
) -> AsyncIterator[AudioSocketServer]:
    server = AudioSocketServer(handler, any_port(**options))
    async with server:
        yield server


async def all_events(session: AudioSocketSession) -> list[Event]:
    return [event async for event in session.events()]


def close_wait_sockets(port: int) -> int:
    """Sockets on our side of ``port`` the peer closed but we never did (state CLOSE_WAIT, 08)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            if int(local.rsplit(":", 1)[1], 16) == port and state == "08":
                count += 1
    return count


async def assert_torn_down(server: AudioSocketServer) -> None:
    await asyncio.wait_for(server.wait_idle(), WAIT)
    assert server.open_connections == 0
    assert dict(server.sessions) == {}
    assert server.stats.active_sessions == 0
    assert close_wait_sockets(server.port) == 0


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_streamed_utterance_reaches_the_handler_whole_in_order_and_in_real_time(
    shared_dir: Path,
) -> None:
    speech = audio.read_wav_slin8k(shared_dir / "speech" / UTTERANCE)
    arrivals: list[float] = []
    heard: list[Event] = []
    done = asyncio.Event()

    async def handler(session: AudioSocketSession) -> None:
        async for event in session.events():
            arrivals.append(time.monotonic())
            heard.append(event)
        done.set()

    async with serving(handler) as server, AudioSocketClient("127.0.0.1", server.port) as client:
        await client.stream_wav(shared_dir / "speech" / UTTERANCE)
        await client.send_hangup()
        await asyncio.wait_for(done.wait(), WAIT)
        await assert_torn_down(server)

    assert isinstance(heard[-1], Hangup)
    pcm = b"".join(e.pcm for e in heard if isinstance(e, Audio))
    frames = len(heard) - 1
    assert frames == -(-len(speech) // audio.FRAME_BYTES)
    assert (
        pcm[: len(speech)] == speech
    )  # every byte, in order; the tail is padding of the last frame
    assert set(pcm[len(speech) :]) <= {0}
    # Paced like a phone line: the frames span the utterance's length, not a burst.
    assert arrivals[frames - 1] - arrivals[0] >= 0.95 * (frames - 1) * audio.FRAME_SECONDS
    assert server.stats.frames_in == frames


async def test_play_sends_paced_20ms_frames_and_returns_after_playout() -> None:
    one_second = bytes(range(256)) * 62 + bytes(128)  # 16000 bytes, not silence
    result: list[tuple[bool, float]] = []

    async def handler(session: AudioSocketSession) -> None:
        started = time.monotonic()
        played = await session.play(one_second)
        result.append((played, time.monotonic() - started))
        await session.hangup()

    async with serving(handler) as server, AudioSocketClient("127.0.0.1", server.port) as client:
        assert await client.wait_ended(WAIT) == "hangup"
        await assert_torn_down(server)

    assert [len(f.pcm) for f in client.received] == [320] * 50
    assert client.received_pcm == one_second
    span = client.received[-1].at - client.received[0].at
    assert 0.9 <= span < 1.2, span
    gaps = [b.at - a.at for a, b in zip(client.received, client.received[1:], strict=False)]
    assert max(gaps) < 0.1  # no stall-then-burst
    played, took = result[0]
    assert played is True and took >= 0.99
    assert server.stats.frames_out == 50


async def test_stop_playback_silences_the_bot_within_two_frames() -> None:
    long_prompt = bytes(range(256)) * 250  # 4 s
    stopped: list[float] = []
    outcome: list[tuple[bool, float]] = []

    async def handler(session: AudioSocketSession) -> None:
        playing = asyncio.create_task(session.play(long_prompt))
        async for event in session.events():
            if isinstance(event, Dtmf):  # the caller barges in
                stopped.append(time.monotonic())
                session.stop_playback()
                played = await playing
                outcome.append((played, time.monotonic() - stopped[0]))
                await session.hangup()

    async with serving(handler) as server, AudioSocketClient("127.0.0.1", server.port) as client:
        await client.wait_for_audio(10 * 320, WAIT)
        await client.send_dtmf("#")
        assert await client.wait_ended(WAIT) == "hangup"
        await assert_torn_down(server)

    played, took = outcome[0]
    assert played is False and took < 0.04
    late = [f.at - stopped[0] for f in client.received if f.at > stopped[0]]
    assert all(delay < 0.04 for delay in late), late
    assert len(client.received) < 100


async def test_a_queued_play_is_cancelled_by_stop_too() -> None:
    results: list[bool] = []

    async def handler(session: AudioSocketSession) -> None:
        first = asyncio.create_task(session.play(bytes(3200)))
        second = asyncio.create_task(session.play(bytes(3200)))
        await asyncio.sleep(0)  # both have asked to play
        session.stop_playback()
        results.extend(await asyncio.gather(first, second))
        results.append(await session.play(bytes(640)))  # a new prompt after the barge-in plays
        await session.hangup()

    async with serving(handler) as server, AudioSocketClient("127.0.0.1", server.port) as client:
        await client.wait_ended(WAIT)
        await assert_torn_down(server)
    assert results == [False, False, True]
    assert len(client.received_pcm) <= 320 + 640


async def test_dtmf_reaches_the_handler_between_audio_in_order() -> None:
    heard: list[Event] = []

    async def handler(session: AudioSocketSession) -> None:
        heard.extend(await all_events(session))

    async with serving(handler) as server, AudioSocketClient("127.0.0.1", server.port) as client:
        await client.send_silence(0.04, realtime=False)
        await client.send_dtmf("1")
        await client.send_silence(0.02, realtime=False)
        await client.send_dtmf("#")
        await client.send_hangup()
        await assert_torn_down(server)

    kinds = [type(e).__name__ if not isinstance(e, Dtmf) else e.digit for e in heard]
    assert kinds == ["Audio", "Audio", "1", "Audio", "#", "Hangup"]


async def test_a_phone_that_sends_nothing_while_quiet_is_heard_as_silence() -> None:
    """Silence suppression: no frame while the caller is quiet. The handler hears the pause as silence (the
    recogniser needs it to end an utterance), but nothing before the caller's audio began."""
    heard: list[tuple[float, Event]] = []
    started, paused = asyncio.Event(), asyncio.Event()
    speech = b"\x10\x00" * 160  # one 20 ms frame

    async def handler(session: AudioSocketSession) -> None:
        started.set()
        async for event in session.events():
            heard.append((time.monotonic(), event))
            pause = sum(len(e.pcm) for _, e in heard[1:] if isinstance(e, Audio))
            if pause >= 2 * audio.SAMPLE_RATE * 0.4:  # the recogniser's end-of-speech pause
                paused.set()

    async with serving(handler) as server, AudioSocketClient("127.0.0.1", server.port) as client:
        await started.wait()
        await asyncio.sleep(0.5)  # the line is open, the caller has not spoken yet
        assert heard == []  # nothing to hear before the caller's audio began
        sent_at = time.monotonic()
        await client.send_raw(audio_frame(speech))  # then nothing
        await asyncio.wait_for(paused.wait(), WAIT)
        await client.send_hangup()
        await assert_torn_down(server)

    first, *pause = [(at, e) for at, e in heard if isinstance(e, Audio)]
    assert first[1].pcm == speech
    assert pause and all(e.pcm == bytes(len(e.pcm)) for _, e in pause)  # silence
    # a 0.4 s pause is heard within about 0.4 s of the caller going quiet, as on a line that sends silence
    assert pause[-1][0] - sent_at < 0.4 + 0.3, [round(at - sent_at, 3) for at, _ in pause]


@pytest.mark.parametrize("abort", [True, False], ids=["reset", "closed-mid-frame"])
async def test_caller_vanishing_mid_frame_during_playback_is_torn_down_cleanly(
    abort: bool, caplog: pytest.LogCaptureFixture
) -> None:
    last_event: list[Event] = []
    played: list[bool] = []
    session_started = asyncio.Event()

    async def handler(session: AudioSocketSession) -> None:
        playing = asyncio.create_task(session.play(bytes(16000 * 10)))
        session_started.set()
        last_event.extend(await all_events(session))
        played.append(await asyncio.wait_for(playing, 0.1))

    async with serving(handler) as server:
        client = AudioSocketClient("127.0.0.1", server.port)
        await client.connect()
        await client.send_silence(0.1, realtime=False)
        await asyncio.wait_for(session_started.wait(), WAIT)
        await client.wait_for_audio(320, WAIT)
        await client.send_raw(audio_frame(bytes(320))[:200])  # half a frame, then gone
        await client.close(abort=abort)
        await assert_torn_down(server)

    assert isinstance(last_event[-1], PeerGone)
    assert last_event[-1].reason in {"reset", "closed", "audiosocket.truncated"}
    assert played == [False]
    assert no_errors_logged(caplog) == []


async def test_handler_crash_hangs_up_the_call_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(session: AudioSocketSession) -> None:
        async for _ in session.events():
            raise RuntimeError("dialogue bug")

    async with serving(handler) as server, AudioSocketClient("127.0.0.1", server.port) as client:
        await client.send_silence(0.02, realtime=False)
        assert (
            await client.wait_ended(WAIT) == "hangup"
        )  # Asterisk leaves AudioSocket() and requeues
        await assert_torn_down(server)

    assert server.stats.handler_errors == 1
    crash = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(crash) == 1 and crash[0].exc_info and "dialogue bug" in str(crash[0].exc_info[1])


@pytest.mark.parametrize(
    "first",
    [audio_frame(bytes(320)), dtmf_frame("1"), hangup_frame(), b"\x42\x00\x00"],
    ids=["audio", "dtmf", "hangup", "garbage"],
)
async def test_a_connection_not_starting_with_a_uuid_gets_an_error_and_is_closed(
    first: bytes,
) -> None:
    called = asyncio.Event()

    async def handler(session: AudioSocketSession) -> None:
        called.set()

    async with serving(handler) as server:
        client = AudioSocketClient("127.0.0.1", server.port)
        await client.connect(send_uuid=False)
        await client.send_raw(first)
        assert await client.wait_ended(WAIT) == "error:0x80"
        await client.close()
        await assert_torn_down(server)
    assert not called.is_set()
    assert server.stats.refused == 1


async def test_a_silent_connection_is_refused_after_the_uuid_timeout() -> None:
    async def handler(session: AudioSocketSession) -> None:
        raise AssertionError("no call without a UUID")

    async with serving(handler, uuid_timeout_s=0.2) as server:
        client = AudioSocketClient("127.0.0.1", server.port)
        await client.connect(send_uuid=False)
        assert await client.wait_ended(WAIT) == "error:0x80"
        await client.close()
        await assert_torn_down(server)


async def test_a_stalled_handler_loses_the_oldest_audio_but_never_a_key() -> None:
    got_session: list[AudioSocketSession] = []
    entered = asyncio.Event()
    release = asyncio.Event()
    heard: list[Event] = []

    async def handler(session: AudioSocketSession) -> None:
        got_session.append(session)
        entered.set()
        await release.wait()  # the dialogue is busy (e.g. recognising) and reads nothing
        heard.extend(await all_events(session))

    def numbered(i: int) -> bytes:
        return audio_frame(bytes([i]) * 320)

    async with (
        serving(handler, queue_frames=10) as server,
        AudioSocketClient("127.0.0.1", server.port) as client,
    ):
        stream = b"".join(numbered(i) for i in range(5)) + dtmf_frame("7")
        stream += b"".join(numbered(i) for i in range(5, 60)) + hangup_frame()
        await client.send_raw(stream)
        await client.wait_ended(WAIT)
        await asyncio.wait_for(entered.wait(), WAIT)
        session = got_session[0]
        await asyncio.wait_for(session.peer_gone.wait(), WAIT)  # every frame has been read
        release.set()
        await assert_torn_down(server)

    assert isinstance(heard[0], Dtmf) and heard[0].digit == "7"
    assert [e.pcm[0] for e in heard[1:-1] if isinstance(e, Audio)] == list(range(51, 60))
    assert isinstance(heard[-1], Hangup)
    assert session.frames_dropped == server.stats.frames_dropped == 51
    assert session.frames_in == 60


async def test_server_shutdown_hangs_up_live_calls() -> None:
    entered = asyncio.Event()

    async def handler(session: AudioSocketSession) -> None:
        entered.set()
        await all_events(session)

    server = AudioSocketServer(handler, any_port())
    await server.start()
    undecided = AudioSocketClient("127.0.0.1", server.port)  # accepted, UUID not yet sent
    await undecided.connect(send_uuid=False)
    client = AudioSocketClient("127.0.0.1", server.port)
    await client.connect()
    await asyncio.wait_for(entered.wait(), WAIT)  # both connections have been accepted by now
    assert server.open_connections == 2
    await asyncio.wait_for(server.close(), WAIT)
    assert await client.wait_ended(WAIT) == "hangup"
    assert await undecided.wait_ended(WAIT) == "closed"
    for c in (client, undecided):
        await c.close()
    assert server.stats.active_sessions == 0
    assert server.open_connections == 0


async def test_the_same_call_id_twice_is_refused() -> None:
    call_id = uuid.uuid4()
    entered = asyncio.Event()

    async def handler(session: AudioSocketSession) -> None:
        entered.set()
        await all_events(session)

    async with (
        serving(handler) as server,
        AudioSocketClient("127.0.0.1", server.port, call_id) as first,
    ):
        await asyncio.wait_for(entered.wait(), WAIT)
        async with AudioSocketClient("127.0.0.1", server.port, call_id) as second:
            assert await second.wait_ended(WAIT) == "error:0x80"
        assert list(server.sessions) == [call_id]
        await first.close()
        await assert_torn_down(server)


def test_server_takes_its_address_and_limits_from_settings(settings: Settings) -> None:
    async def handler(session: AudioSocketSession) -> None: ...

    config = settings.asr.audiosocket
    server = AudioSocketServer(handler, config)
    assert (server.host, server.port) == (config.host, config.port)
    assert server.queue_frames == config.queue_frames
    assert server.max_payload == config.max_payload
    assert server.max_sessions == config.max_sessions
    assert [str(n) for n in server.allow] == [
        "127.0.0.0/8",
        "::1/128",
    ]  # loopback only unless configured


# --- who may connect, and how many ------------------------------------------------------------------------


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "refused" in r.getMessage()
    ]


@pytest.mark.parametrize("allow", [("10.0.0.0/8",), ("192.168.1.7", "::1")])
async def test_a_peer_not_in_the_allowlist_is_refused_without_a_session(
    allow: tuple[str, ...], caplog: pytest.LogCaptureFixture
) -> None:
    called = asyncio.Event()

    async def handler(session: AudioSocketSession) -> None:
        called.set()

    async with (
        serving(handler, allow=allow) as server,
        AudioSocketClient("127.0.0.1", server.port) as client,
    ):
        assert await client.wait_ended(WAIT) in ("closed", "reset")  # not a word to a stranger
        await assert_torn_down(server)
    assert not called.is_set() and server.stats.sessions_total == 0 and server.stats.refused == 1
    [line] = refusals(caplog)
    assert "127.0.0.1" in line and "audiosocket.peer_not_allowed" in line


async def test_a_peer_in_an_allowed_network_is_served() -> None:
    entered = asyncio.Event()

    async def handler(session: AudioSocketSession) -> None:
        entered.set()

    async with serving(handler, allow=("10.0.0.0/8", "127.0.0.0/8")) as server:
        async with AudioSocketClient("127.0.0.1", server.port):
            await asyncio.wait_for(entered.wait(), WAIT)
    assert server.stats.refused == 0


async def test_listening_beyond_loopback_with_a_loopback_allowlist_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(session: AudioSocketSession) -> None: ...

    async with serving(handler, host="0.0.0.0"):
        pass
    async with serving(handler, host="0.0.0.0", allow=("10.1.2.3",)):
        pass
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [
        "AudioSocket server on 0.0.0.0 accepts loopback peers only: list the Asterisk hosts in "
        "asr.audiosocket.allow"
    ]


async def test_the_call_over_the_session_cap_is_refused_while_the_others_are_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    serving_now: list[AudioSocketSession] = []
    changed = asyncio.Event()

    async def handler(session: AudioSocketSession) -> None:
        serving_now.append(session)
        changed.set()
        await all_events(session)

    async def until_serving(n: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(serving_now) < n:
                changed.clear()
                await changed.wait()

    async with serving(handler, max_sessions=2) as server:
        first, second = (
            AudioSocketClient("127.0.0.1", server.port),
            AudioSocketClient("127.0.0.1", server.port),
        )
        await first.connect()
        await second.connect()
        await until_serving(2)
        async with AudioSocketClient("127.0.0.1", server.port) as third:
            # an error frame: Asterisk's AudioSocket() fails and the dialplan requeues the caller
            assert await third.wait_ended(WAIT) == "error:0x81"
        assert set(server.sessions) == {first.call_id, second.call_id}
        assert not first.ended.is_set() and not second.ended.is_set()
        [line] = refusals(caplog)
        assert (
            "audiosocket.session_cap" in line and str(third.call_id) in line and "127.0.0.1" in line
        )

        await first.close()  # a place is free again
        async with AudioSocketClient("127.0.0.1", server.port) as fourth:
            await until_serving(3)
            assert fourth.call_id in server.sessions
        await second.close()
        await assert_torn_down(server)
    assert server.stats.refused == 1 and server.stats.sessions_total == 3


async def test_a_silent_bot_keeps_the_socket_alive_with_silence_asterisk_would_otherwise_drop_it() -> (
    None
):
    """Asterisk's AudioSocket() ends a call after 2 s without a frame either way; a caller who sends no RTP
    while the bot has nothing to say must still keep the bot (found in the SIP peak: 11 callers requeued)."""
    done = asyncio.Event()

    async def handler(session: AudioSocketSession) -> None:
        await done.wait()  # thinking, saying nothing
        await session.hangup()

    async with serving(handler) as server, AudioSocketClient("127.0.0.1", server.port) as client:
        silence = await client.wait_for_audio(2 * audio.FRAME_BYTES, WAIT)
        done.set()
        assert await client.wait_ended(WAIT) == "hangup"
        await assert_torn_down(server)

    assert silence == bytes(2 * audio.FRAME_BYTES)
    gaps = [b.at - a.at for a, b in zip(client.received, client.received[1:], strict=False)]
    assert gaps and max(gaps) < 1.0, gaps  # well inside Asterisk's 2 s


async def test_load_listeners_hear_the_calls_in_progress_at_every_start_and_end() -> None:
    """The bot's load report (ivr/bot_hosts.py) follows every call; a refused call is not counted."""
    loads: list[int] = []
    changed = asyncio.Event()

    def on_load(active: int) -> None:
        loads.append(active)
        changed.set()

    async def until(expected: list[int]) -> None:
        async with asyncio.timeout(WAIT):
            while loads != expected:
                changed.clear()
                await changed.wait()

    async def handler(session: AudioSocketSession) -> None:
        await all_events(session)

    async with serving(handler, max_sessions=2) as server:
        server.add_load_listener(on_load)
        first, second = (
            AudioSocketClient("127.0.0.1", server.port),
            AudioSocketClient("127.0.0.1", server.port),
        )
        await first.connect()
        await until([1])
        await second.connect()
        await until([1, 2])
        async with AudioSocketClient("127.0.0.1", server.port) as third:
            assert await third.wait_ended(WAIT) == "error:0x81"
        await first.close()
        await until([1, 2, 1])
        await second.close()
        await until([1, 2, 1, 0])
