"""AudioSocket server: Asterisk connects once per call; each connection becomes a session for the bot.

The application (the bot's dialogue) is ``async def handler(session)``. It reads the caller with
``async for event in session.events()`` (``Audio``, ``Dtmf``, ``Hangup``, ``PeerGone``), speaks with
``await session.play(pcm)``, interrupts itself with ``session.stop_playback()`` (barge-in) and ends the call
with ``await session.hangup()``. When the handler returns or raises while the caller is still connected, the
server sends a hangup frame so Asterisk leaves ``AudioSocket()`` and the dialplan continues.

Only peers in ``allow`` (addresses or networks; loopback by default) may connect, and at most ``max_sessions``
calls are served at once. Anyone else is refused with a WARNING naming the peer and the reason: a peer not
allowed is closed without a word; a call over the cap gets an error frame, so ``AudioSocket()`` fails and the
dialplan tries the next bot host, then sends the caller back to the queue (``config/asterisk/extensions.conf``).
Load listeners (:meth:`AudioSocketServer.add_load_listener`) hear the number of calls at every start and end.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from types import MappingProxyType, TracebackType

from asr import audio
from asr.audiosocket import (
    ErrorCode,
    Frame,
    FramePacer,
    FrameParser,
    Kind,
    ProtocolError,
    audio_frame,
    error_frame,
    hangup_frame,
    parse_dtmf,
    parse_error,
    parse_uuid,
)
from config.settings import AudioSocketSettings

log = logging.getLogger(__name__)

READ_BYTES = 4096
# A peer that stops reading for this long while we play is treated as gone (the send buffer is full).
DRAIN_TIMEOUT_S = 2.0
CLOSE_TIMEOUT_S = 1.0
# Asterisk's AudioSocket() gives up after 2 s without a frame either way ("Reached timeout after 2000 ms of no
# activity") and the caller goes back to the queue. A caller's phone may send no RTP while silent (SIPp, or
# silence suppression), so a bot with nothing to say sends a frame of silence at least this often.
KEEPALIVE_S = 0.5
# The same phones send nothing while their user is quiet: a caller's audio missing this long is heard as silence
# (well above the 20 ms frame pace and network jitter; below the recogniser's end-of-speech pause).
QUIET_GAP_S = 0.2


@dataclass(frozen=True, slots=True)
class Audio:
    """20 ms (normally) of the caller's voice, 8 kHz slin."""

    pcm: bytes


@dataclass(frozen=True, slots=True)
class Dtmf:
    """A key the caller pressed (按键)."""

    digit: str


@dataclass(frozen=True, slots=True)
class Hangup:
    """The peer sent a hangup frame. (Asterisk itself closes the socket instead: that is ``PeerGone``.)"""


@dataclass(frozen=True, slots=True)
class PeerGone:
    """The connection ended without a hangup frame: ``closed``, ``reset``, ``peer_error:0x..``, a protocol code."""

    reason: str


Event = Audio | Dtmf | Hangup | PeerGone
Handler = Callable[["AudioSocketSession"], Awaitable[None]]


@dataclass
class ServerStats:
    """Counters for metrics; ``active_sessions`` is a gauge, the rest only grow."""

    active_sessions: int = 0
    sessions_total: int = 0
    refused: int = 0
    frames_in: int = 0
    frames_out: int = 0
    frames_dropped: int = 0
    protocol_errors: int = 0
    handler_errors: int = 0


class AudioSocketSession:
    """One call on the AudioSocket: the caller's events in, the bot's audio out."""

    def __init__(
        self,
        call_id: uuid.UUID,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        parser: FrameParser,
        stats: ServerStats,
        queue_frames: int,
    ) -> None:
        self.call_id = call_id
        self.started_at = time.monotonic()
        self.frames_in = 0
        self.frames_out = 0
        self.frames_dropped = 0
        self._reader = reader
        self._writer = writer
        self._parser = parser
        self._stats = stats
        self._limit = queue_frames
        # Inbound events; None ends events() after the bot hung up itself. When full, audio is dropped first.
        self._inbound: deque[Event | None] = deque()
        self._wakeup = asyncio.Event()
        self._stop = asyncio.Event()
        self._play_lock = asyncio.Lock()
        self._closed = False
        self._sent_at = time.monotonic()
        self.peer_gone = asyncio.Event()

    @property
    def connected(self) -> bool:
        """The caller is still there and the bot has not hung up."""
        return not self._closed and not self.peer_gone.is_set()

    async def events(self) -> AsyncIterator[Event]:
        """The caller's audio and keys in order; ends after ``Hangup``/``PeerGone`` or the bot's own hangup.

        Once the caller's audio has begun, every ``QUIET_GAP_S`` without a frame is heard as that much silence:
        a phone that suppresses silence sends no RTP while its user is quiet, and Asterisk then sends nothing,
        yet the recogniser must hear the pause to know the caller has finished speaking."""
        while True:
            while not self._inbound:
                self._wakeup.clear()
                try:
                    async with asyncio.timeout(QUIET_GAP_S):
                        await self._wakeup.wait()
                except TimeoutError:
                    if self.frames_in and not self._inbound:
                        yield Audio(audio.silence(QUIET_GAP_S))
            event = self._inbound.popleft()
            if event is None:
                self._inbound.append(None)  # later events() calls end at once too
                return
            yield event
            if isinstance(event, Hangup | PeerGone):
                self._inbound.append(None)
                return

    async def play(self, pcm: bytes, *, on_first_frame: Callable[[], None] | None = None) -> bool:
        """Speak 8 kHz slin to the caller in real-time 20 ms frames; returns when it has played out.
        ``on_first_frame`` is called once the first frame is sent (the caller starts hearing it).

        Returns False if it was interrupted by ``stop_playback()`` (also one called while this play was waiting
        for an earlier one), by the bot's hangup or by the caller leaving.
        """
        stop = self._stop
        async with self._play_lock:
            pacer = FramePacer()
            for frame in audio.frames(pcm):
                if not await self._wait_unless_stopped(stop, pacer.delay()):
                    return False
                if not self._send(audio_frame(frame)):
                    return False
                if on_first_frame is not None:
                    on_first_frame()
                    on_first_frame = None
                self.frames_out += 1
                self._stats.frames_out += 1
                if not await self._drain():
                    return False
            return await self._wait_unless_stopped(stop, pacer.end() - time.monotonic())

    def stop_playback(self) -> None:
        """Barge-in (插话): stop the current and queued playback before the next frame is sent."""
        self._stop.set()
        self._stop = asyncio.Event()

    async def hangup(self) -> None:
        """End the call from the bot's side: send a hangup frame and close the connection."""
        if self.connected:
            self._send(hangup_frame())
        await self._close()

    async def _wait_unless_stopped(self, stop: asyncio.Event, delay: float) -> bool:
        if stop.is_set() or not self.connected:
            return False
        if delay > 0:
            with suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()
        return not stop.is_set() and self.connected

    def _send(self, data: bytes) -> bool:
        # One write per frame: Asterisk misreads a header split across reads (see asr.audiosocket).
        if not self.connected or self._writer.is_closing():
            return False
        self._writer.write(data)
        self._sent_at = time.monotonic()
        return True

    async def _keep_alive(self, every_s: float = KEEPALIVE_S) -> None:
        """While the bot is silent, a frame of silence every ``every_s``, so Asterisk never drops the call for
        inactivity (:data:`KEEPALIVE_S`)."""
        silence = audio_frame(bytes(audio.FRAME_BYTES))
        while self.connected:
            await asyncio.sleep(max(0.0, self._sent_at + every_s - time.monotonic()))
            if time.monotonic() - self._sent_at >= every_s and self._send(silence):
                if not await self._drain():
                    return

    async def _drain(self) -> bool:
        try:
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                await self._writer.drain()
        except (TimeoutError, OSError) as exc:
            self._lose_peer(PeerGone("write_stalled" if isinstance(exc, TimeoutError) else "reset"))
            return False
        return True

    def _enqueue(self, event: Event | None) -> None:
        if isinstance(event, Audio | Dtmf) and len(self._inbound) >= self._limit:
            oldest_audio = next((i for i, e in enumerate(self._inbound) if isinstance(e, Audio)), 0)
            del self._inbound[oldest_audio]
            self.frames_dropped += 1
            self._stats.frames_dropped += 1
        self._inbound.append(event)
        self._wakeup.set()

    def _lose_peer(self, event: Hangup | PeerGone) -> None:
        """The caller's side ended: tell the application, stop playing, close our end at once."""
        if self.peer_gone.is_set() or self._closed:
            return
        self.peer_gone.set()
        self._stop.set()
        self._enqueue(event)
        self._writer.close()

    def _dispatch(self, frame: Frame) -> bool:
        """Turn one frame into an event; False when the frame ends the call."""
        if frame.kind is Kind.AUDIO:
            self.frames_in += 1
            self._stats.frames_in += 1
            self._enqueue(Audio(frame.payload))
        elif frame.kind is Kind.DTMF:
            self._enqueue(Dtmf(parse_dtmf(frame)))
        elif frame.kind is Kind.HANGUP:
            self._lose_peer(Hangup())
            return False
        elif frame.kind is Kind.ERROR:
            code = parse_error(frame)
            self._lose_peer(PeerGone("peer_error" if code is None else f"peer_error:0x{code:02x}"))
            return False
        else:
            raise ProtocolError("audiosocket.repeated_uuid", "通话中途再次收到 UUID 帧")
        return True

    async def _pump(self, initial: Iterable[Frame]) -> None:
        """Read the socket until the call ends; every way it can end becomes one terminal event."""
        reason = "closed"
        try:
            frames = list(initial)
            while True:
                for frame in frames:
                    if not self._dispatch(frame):
                        return
                data = await self._reader.read(READ_BYTES)
                if not data:
                    self._parser.finish()
                    break
                frames = self._parser.feed(data)
        except ProtocolError as exc:
            self._stats.protocol_errors += 1
            log.warning("AudioSocket call %s: %s", self.call_id, exc)
            reason = exc.code
        except OSError as exc:
            log.info("AudioSocket call %s: connection error %s", self.call_id, exc)
            reason = "reset"
        except Exception:  # a bug here must end the call visibly, not leave the caller in silence
            log.exception("AudioSocket call %s: reader failed", self.call_id)
            reason = "internal_error"
        self._lose_peer(PeerGone(reason))

    async def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._enqueue(None)
        self._writer.close()
        with suppress(TimeoutError, OSError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._writer.wait_closed()


class AudioSocketServer:
    """TCP server for Asterisk's ``AudioSocket()``; runs ``handler(session)`` once per call. ``config`` is
    ``asr.audiosocket`` (port 0: any free port)."""

    def __init__(self, handler: Handler, config: AudioSocketSettings) -> None:
        self.host = config.host
        self._port = config.port
        self.queue_frames = config.queue_frames
        self.max_payload = config.max_payload
        self.uuid_timeout_s = config.uuid_timeout_s
        self.handler_grace_s = config.handler_grace_s
        self.allow = tuple(ipaddress.ip_network(network, strict=False) for network in config.allow)
        self.max_sessions = config.max_sessions
        self.stats = ServerStats()
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._sessions: dict[uuid.UUID, AudioSocketSession] = {}
        self._connections: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._load_listeners: list[Callable[[int], None]] = []

    @property
    def port(self) -> int:
        """The bound port (useful when constructed with port 0)."""
        if self._server and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    @property
    def sessions(self) -> Mapping[uuid.UUID, AudioSocketSession]:
        """Calls in progress, by the UUID Asterisk sent."""
        return MappingProxyType(self._sessions)

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def add_load_listener(self, listener: Callable[[int], None]) -> None:
        """Be told the number of calls in progress whenever a call starts or ends (the bot's load report)."""
        self._load_listeners.append(listener)

    def _load_changed(self) -> None:
        for listener in self._load_listeners:
            listener(len(self._sessions))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_connection, self.host, self._port)
        log.info("AudioSocket server listening on %s:%s", self.host, self.port)
        bound = [
            ipaddress.ip_address(str(s.getsockname()[0]).split("%", 1)[0])
            for s in self._server.sockets
        ]
        if any(not a.is_loopback for a in bound) and all(n.is_loopback for n in self.allow):
            log.warning(
                "AudioSocket server on %s accepts loopback peers only: list the Asterisk hosts in "
                "asr.audiosocket.allow",
                self.host,
            )

    async def wait_idle(self) -> None:
        """Until no connection is open (every session torn down)."""
        await self._idle.wait()

    async def close(self) -> None:
        """Stop accepting, hang up every call (Asterisk continues its dialplan) and wait for teardown."""
        if self._server:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server:
            await self._server.wait_closed()

    async def __aenter__(self) -> AudioSocketServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self._idle.clear()
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            pass  # server shutdown; _serve has cleaned up
        finally:
            writer.close()  # idempotent; covers a shutdown before the UUID arrived
            self._connections.discard(task)
            if not self._connections:
                self._idle.set()

    def _allowed(self, writer: asyncio.StreamWriter) -> bool:
        """The peer's address is in ``allow``."""
        peer = writer.get_extra_info("peername")
        if not peer:
            return False
        address = ipaddress.ip_address(
            str(peer[0]).split("%", 1)[0]
        )  # an IPv6 peer may carry a %scope
        return any(address in network for network in self.allow)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._allowed(writer):
            await self._refuse(writer, "audiosocket.peer_not_allowed", send_error=False)
            return
        parser = FrameParser(self.max_payload)
        try:
            async with asyncio.timeout(self.uuid_timeout_s):
                first = await self._read_first_frames(reader, parser)
        except (ProtocolError, TimeoutError, OSError) as exc:
            await self._refuse(writer, getattr(exc, "code", type(exc).__name__))
            return
        if first is None:  # connected and left without a word
            await self._refuse(writer, "closed", send_error=False)
            return
        head, rest = first
        if head.kind is not Kind.UUID:
            await self._refuse(writer, "audiosocket.no_uuid")
            return
        call_id = parse_uuid(head)
        if call_id in self._sessions:
            await self._refuse(writer, "audiosocket.duplicate_uuid")
            return
        if len(self._sessions) >= self.max_sessions:
            await self._refuse(
                writer,
                "audiosocket.session_cap",
                code=ErrorCode.BUSY,
                detail=f"call {call_id}, {len(self._sessions)} calls in progress",
            )
            return
        await self._run_session(
            AudioSocketSession(call_id, reader, writer, parser, self.stats, self.queue_frames), rest
        )

    @staticmethod
    async def _read_first_frames(
        reader: asyncio.StreamReader, parser: FrameParser
    ) -> tuple[Frame, list[Frame]] | None:
        while True:
            data = await reader.read(READ_BYTES)
            if not data:
                parser.finish()
                return None
            frames = parser.feed(data)
            if frames:
                return frames[0], frames[1:]

    async def _refuse(
        self,
        writer: asyncio.StreamWriter,
        reason: str,
        *,
        send_error: bool = True,
        code: ErrorCode = ErrorCode.PROTOCOL,
        detail: str = "",
    ) -> None:
        """Not a call we serve: an error frame (unless ``send_error`` is off), then close."""
        self.stats.refused += 1
        log.warning(
            "AudioSocket connection from %s refused: %s%s",
            writer.get_extra_info("peername"),
            reason,
            f" ({detail})" if detail else "",
        )
        if send_error and not writer.is_closing():
            writer.write(error_frame(code))
        writer.close()
        with suppress(TimeoutError, OSError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await writer.wait_closed()

    async def _run_session(self, session: AudioSocketSession, initial: list[Frame]) -> None:
        self._sessions[session.call_id] = session
        self.stats.active_sessions += 1
        self._load_changed()
        self.stats.sessions_total += 1
        log.info("AudioSocket call %s started", session.call_id)
        pump = asyncio.create_task(session._pump(initial))
        handler = asyncio.create_task(self._run_handler(session))
        gone = asyncio.create_task(session.peer_gone.wait())
        keep_alive = asyncio.create_task(session._keep_alive())
        try:
            await asyncio.wait({handler, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not handler.done():
                # The caller left: the dialogue gets a moment to file its ticket, then it is cancelled.
                await asyncio.wait({handler}, timeout=self.handler_grace_s)
                if not handler.done():
                    log.warning(
                        "AudioSocket call %s: handler still running after the caller left; cancelled",
                        session.call_id,
                    )
        finally:
            for task in (handler, gone, pump, keep_alive):
                task.cancel()
            await asyncio.gather(handler, gone, pump, keep_alive, return_exceptions=True)
            await session.hangup()
            del self._sessions[session.call_id]
            self.stats.active_sessions -= 1
            self._load_changed()
            log.info(
                "AudioSocket call %s ended after %.1f s (in %d, out %d, dropped %d frames)",
                session.call_id,
                time.monotonic() - session.started_at,
                session.frames_in,
                session.frames_out,
                session.frames_dropped,
            )

    async def _run_handler(self, session: AudioSocketSession) -> None:
        try:
            await self._handler(session)
        except Exception:
            self.stats.handler_errors += 1
            log.exception("AudioSocket handler failed on call %s", session.call_id)
