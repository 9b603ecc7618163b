"""The AudioSocket wire protocol (Asterisk ``app_audiosocket`` / ``res_audiosocket``): frames in and out.

A frame is 1 byte kind, 2 bytes big-endian payload length, then the payload.

What Asterisk's source does (res_audiosocket.c / app_audiosocket.c), beyond the protocol page:

* Asterisk sends ``0x01`` UUID (16 bytes) first, then ``0x10`` audio as its channel produces it (slin, 20 ms =
  320 bytes on a normal call) and ``0x03`` with one ASCII digit per key press (on DTMF end). It never sends
  ``0x00``: when the caller hangs up it just closes the socket.
* From the server it accepts only ``0x00`` and audio. ``0x00`` or closing the socket ends ``AudioSocket()``
  gracefully (returns 0, the dialplan continues). Any other kind, *including* ``0xff`` error and ``0x03``, and
  an audio frame of length 0, make the application fail (-1): the channel is hung up. So a server must never
  send an error frame to a live Asterisk call.
* DTMF forwarding and the graceful exit both came with Asterisk PR #1138 (merged March 2025, cherry-picked to
  20, 21 and 22). Older releases send no DTMF, and a hangup from the server hangs the channel up instead of
  continuing the dialplan.
* Asterisk writes received audio straight to the channel, with no jitter buffer: the server must pace its
  audio in real time (20 ms per 320 bytes).
* Asterisk reads the 3-byte header with ``read(fd, header, 3)`` in a loop that restarts at offset 0, so a
  header split across TCP segments is misread: send each frame with one write.
* Newer Asterisk also defines kinds 0x11–0x18 (slin at 12–192 kHz) for the channel driver; the
  ``AudioSocket()`` application always uses 8 kHz slin, so this codec treats those kinds as unknown.
* If neither side is active for 2 s Asterisk gives up on the connection.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from asr.audio import FRAME_SECONDS
from config.errors import HotlineError
from config.settings import AudioSocketSettings

HEADER_BYTES = 3
# The protocol allows 65535 bytes; 20 ms of slin is 320. A bound well above any real frame (the server's
# ``asr.audiosocket.max_payload``) keeps a corrupt stream from being taken for a huge frame.
DEFAULT_MAX_PAYLOAD = AudioSocketSettings().max_payload
DTMF_DIGITS = frozenset("0123456789*#ABCD")


class Kind(IntEnum):
    """Frame kinds (类型) of the AudioSocket protocol."""

    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    AUDIO = 0x10
    ERROR = 0xFF


class ErrorCode(IntEnum):
    """Payload byte of an ``0xff`` error frame. 0x01–0x04 are Asterisk's; 0x80 is ours."""

    HANGUP = 0x01  # calling party hung up
    FRAME_FORWARDING = 0x02
    MEMORY = 0x04
    PROTOCOL = 0x80  # this server: the peer broke the protocol (e.g. no UUID first)
    BUSY = 0x81  # this server: as many calls as it may serve are in progress


class ProtocolError(HotlineError):
    """Malformed AudioSocket input. ``code`` is stable and machine-readable; ``message`` is Chinese."""


@dataclass(frozen=True, slots=True)
class Frame:
    kind: Kind
    payload: bytes = b""

    def encode(self) -> bytes:
        return encode(self.kind, self.payload)


def encode(kind: Kind, payload: bytes = b"") -> bytes:
    """One frame on the wire: header and payload together (send it with a single write)."""
    if len(payload) > 0xFFFF:
        raise ProtocolError(
            "audiosocket.payload_too_long", f"载荷长度 {len(payload)} 超过协议上限 65535 字节"
        )
    return bytes((int(kind),)) + len(payload).to_bytes(2, "big") + payload


def hangup_frame() -> bytes:
    return encode(Kind.HANGUP)


def uuid_frame(call_id: uuid.UUID) -> bytes:
    return encode(Kind.UUID, call_id.bytes)


def audio_frame(pcm: bytes) -> bytes:
    if not pcm or len(pcm) % 2:
        raise ProtocolError(
            "audiosocket.bad_audio", f"音频帧长度 {len(pcm)} 必须为正偶数（16 位采样）"
        )
    return encode(Kind.AUDIO, pcm)


def dtmf_frame(digit: str) -> bytes:
    if digit not in DTMF_DIGITS:
        raise ProtocolError("audiosocket.bad_dtmf", f"无效的按键：{digit!r}")
    return encode(Kind.DTMF, digit.encode("ascii"))


def error_frame(code: int) -> bytes:
    return encode(Kind.ERROR, bytes((code,)))


def _validate(kind: Kind, payload: bytes) -> None:
    if kind is Kind.UUID and len(payload) != 16:
        raise ProtocolError(
            "audiosocket.bad_uuid", f"UUID 帧载荷应为 16 字节，收到 {len(payload)} 字节"
        )
    if kind is Kind.AUDIO and (not payload or len(payload) % 2):
        raise ProtocolError(
            "audiosocket.bad_audio", f"音频帧长度 {len(payload)} 必须为正偶数（16 位采样）"
        )
    # Inbound keys are not limited to 0-9*#A-D: Asterisk forwards whatever its channel reports (e.g. a flash
    # hook), and an odd key must not cost the caller the call. The dialogue ignores keys it does not know.
    if kind is Kind.DTMF and (len(payload) != 1 or not 0x21 <= payload[0] <= 0x7E):
        raise ProtocolError("audiosocket.bad_dtmf", f"无效的按键帧：{payload!r}")


class FrameParser:
    """Incremental parser: feed it bytes as they arrive, get whole frames out.

    Handles frames split across reads and many frames in one read. After a ``ProtocolError`` the stream is
    unusable (the framing is lost) and the parser keeps raising.
    """

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._buffer = bytearray()
        self._failed: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        if self._failed:
            raise self._failed
        self._buffer += data
        out: list[Frame] = []
        try:
            while len(self._buffer) >= HEADER_BYTES:
                kind = self._kind(self._buffer[0])
                length = int.from_bytes(self._buffer[1:3], "big")
                if length > self.max_payload:
                    raise ProtocolError(
                        "audiosocket.payload_too_long",
                        f"帧载荷 {length} 字节超过上限 {self.max_payload} 字节",
                    )
                end = HEADER_BYTES + length
                if len(self._buffer) < end:
                    break
                payload = bytes(self._buffer[HEADER_BYTES:end])
                _validate(kind, payload)
                del self._buffer[:end]
                out.append(Frame(kind, payload))
        except ProtocolError as exc:
            self._failed = exc
            raise
        return out

    def finish(self) -> None:
        """The stream ended: raise if it stopped inside a frame."""
        if self._failed:
            raise self._failed
        if self._buffer:
            raise ProtocolError(
                "audiosocket.truncated", f"连接在帧中途结束（剩余 {len(self._buffer)} 字节）"
            )

    @staticmethod
    def _kind(byte: int) -> Kind:
        try:
            return Kind(byte)
        except ValueError:
            raise ProtocolError("audiosocket.unknown_kind", f"未知的帧类型 0x{byte:02x}") from None


def parse_dtmf(frame: Frame) -> str:
    return chr(frame.payload[0])


def parse_uuid(frame: Frame) -> uuid.UUID:
    return uuid.UUID(bytes=frame.payload)


def parse_error(frame: Frame) -> int | None:
    """The error code of an ``0xff`` frame (the payload is optional)."""
    return frame.payload[0] if frame.payload else None


class FramePacer:
    """Real-time schedule for sending audio frames, against the monotonic clock.

    Frame n is due at ``start + n * interval``, so rounding in each wait never adds up to drift. A sender that
    fell more than ``max_lag`` behind (a stalled event loop) restarts the schedule from now instead of sending
    a burst to catch up, because Asterisk plays what it gets at once.
    """

    def __init__(
        self,
        interval: float = FRAME_SECONDS,
        max_lag: float = 3 * FRAME_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.max_lag = max_lag
        self.clock = clock
        self.start: float | None = None
        self.sent = 0
        self.restarts = 0

    def delay(self) -> float:
        """Seconds to wait before sending the next frame (counts that frame as sent)."""
        now = self.clock()
        if self.start is None:
            self.start = now
        due = self.start + self.sent * self.interval
        if now - due > self.max_lag:
            self.start = now - self.sent * self.interval
            self.restarts += 1
            due = now
        self.sent += 1
        return max(0.0, due - now)

    def end(self) -> float:
        """When the frames sent so far have finished playing."""
        return (self.start if self.start is not None else self.clock()) + self.sent * self.interval
