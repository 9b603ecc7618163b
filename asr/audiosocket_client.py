"""Asterisk's side of an AudioSocket call, for tests and benchmarks.

It connects, sends the call's UUID, streams real speech as 20 ms slin frames (paced in real time or as fast as
possible), sends DTMF, and records every audio frame the bot sends with its arrival time on the monotonic clock
(the benchmark measures the time to the first answer frame).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from asr import audio
from asr.audiosocket import (
    DEFAULT_MAX_PAYLOAD,
    FramePacer,
    FrameParser,
    Kind,
    ProtocolError,
    audio_frame,
    dtmf_frame,
    hangup_frame,
    parse_error,
    uuid_frame,
)

READ_BYTES = 4096


@dataclass(frozen=True, slots=True)
class ReceivedAudio:
    """One audio frame from the server and when it arrived (``time.monotonic()``)."""

    at: float
    pcm: bytes


class AudioSocketClient:
    """One emulated call towards an AudioSocket server."""

    def __init__(
        self,
        host: str,
        port: int,
        call_id: uuid.UUID | None = None,
        *,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
    ) -> None:
        self.host = host
        self.port = port
        self.call_id = call_id or uuid.uuid4()
        self.received: list[ReceivedAudio] = []
        # Why the server side ended: "hangup" (0x00 frame), "error:0x..", "closed", "reset" or a protocol code.
        self.end_reason: str | None = None
        self.ended = asyncio.Event()
        self._arrived = asyncio.Event()
        self._parser = FrameParser(max_payload)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._receiver: asyncio.Task[None] | None = None

    async def connect(self, *, send_uuid: bool = True) -> None:
        """Open the connection and, like Asterisk, send the UUID frame first."""
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._receiver = asyncio.create_task(self._receive())
        if send_uuid:
            await self.send_raw(uuid_frame(self.call_id))

    async def __aenter__(self) -> AudioSocketClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def received_pcm(self) -> bytes:
        return b"".join(frame.pcm for frame in self.received)

    @property
    def first_audio_at(self) -> float | None:
        return self.received[0].at if self.received else None

    async def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (also malformed ones, to test the server's defences)."""
        writer = self._require_writer()
        writer.write(data)
        await writer.drain()

    async def send_audio(self, pcm: bytes, *, realtime: bool = True) -> float:
        """Stream 8 kHz slin in 20 ms frames; returns the monotonic time the last frame ends (or the call ended).

        ``realtime`` paces frames like a phone line; otherwise they go as fast as the socket takes them.
        """
        pacer = FramePacer()
        for frame in audio.frames(pcm):
            delay = pacer.delay() if realtime else 0.0
            if delay > 0:
                await asyncio.sleep(delay)
            if self.ended.is_set():
                return time.monotonic()
            await self.send_raw(audio_frame(frame))
        return pacer.end() if realtime else time.monotonic()

    async def stream_wav(self, path: str | Path, *, realtime: bool = True) -> float:
        """Stream a WAV file (any rate and width, converted to 8 kHz slin mono) as the caller's voice."""
        return await self.send_audio(audio.read_wav_slin8k(path), realtime=realtime)

    async def send_silence(self, seconds: float, *, realtime: bool = True) -> float:
        """Silence frames, as Asterisk keeps sending while the caller says nothing."""
        return await self.send_audio(audio.silence(seconds), realtime=realtime)

    async def send_dtmf(self, digit: str) -> None:
        await self.send_raw(dtmf_frame(digit))

    async def send_hangup(self) -> None:
        """A hangup frame, then close (a real Asterisk only closes)."""
        await self.send_raw(hangup_frame())
        await self.close()

    async def wait_for_audio(self, nbytes: int, within_s: float) -> bytes:
        """Until at least ``nbytes`` of audio arrived (raises TimeoutError); returns all audio so far."""
        async with asyncio.timeout(within_s):
            while len(self.received_pcm) < nbytes:
                if self.ended.is_set():
                    raise ConnectionError(
                        f"server ended the call ({self.end_reason}) before {nbytes} bytes arrived"
                    )
                self._arrived.clear()
                await self._arrived.wait()
        return self.received_pcm

    async def wait_ended(self, within_s: float) -> str:
        """Until the server hangs up or closes; returns ``end_reason``."""
        async with asyncio.timeout(within_s):
            await self.ended.wait()
        assert self.end_reason is not None
        return self.end_reason

    async def close(self, *, abort: bool = False) -> None:
        """Hang up by closing the socket (as Asterisk does); ``abort`` resets it instead (RST, data discarded)."""
        if self._writer is None:
            return
        if abort:
            self._writer.transport.abort()
        else:
            self._writer.close()
        if self._receiver:
            self._receiver.cancel()
            await asyncio.gather(self._receiver, return_exceptions=True)
        try:
            await self._writer.wait_closed()
        except OSError:
            pass  # the peer reset a connection we were closing anyway
        self._finish(self.end_reason or "closed")

    def _require_writer(self) -> asyncio.StreamWriter:
        if self._writer is None:
            raise RuntimeError("AudioSocketClient.connect() has not been called")
        return self._writer

    def _finish(self, reason: str) -> None:
        if not self.ended.is_set():
            self.end_reason = reason
            self.ended.set()
            self._arrived.set()

    async def _receive(self) -> None:
        assert self._reader is not None
        try:
            while True:
                data = await self._reader.read(READ_BYTES)
                if not data:
                    self._parser.finish()
                    self._finish("closed")
                    return
                for frame in self._parser.feed(data):
                    if frame.kind is Kind.AUDIO:
                        self.received.append(ReceivedAudio(time.monotonic(), frame.payload))
                        self._arrived.set()
                    elif frame.kind is Kind.HANGUP:
                        self._finish("hangup")
                    elif frame.kind is Kind.ERROR:
                        code = parse_error(frame)
                        self._finish("error" if code is None else f"error:0x{code:02x}")
        except ProtocolError as exc:
            self._finish(exc.code)
        except OSError:
            self._finish("reset")
