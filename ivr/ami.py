"""The AMI connection: panoramisk's Manager with a hardened protocol and our own connection supervisor.

What panoramisk 1.4 does not do, and what this module adds (by subclassing, not patching):

* ``Manager.ping`` sends ``Ping`` and never looks at the answer, so a silent peer (half-open TCP, a hung
  Asterisk) is never noticed. Here every ping must be answered within ``ping_timeout_s`` or the transport is
  aborted and the supervisor reconnects.
* ``Manager.connection_lost`` retries after a fixed delay, forever, with no connect timeout. Here the
  supervisor retries with exponential backoff and jitter, capped at ``reconnect_max_s``.
* ``AMIProtocol.close`` leaves the futures of Ping/Login pending forever and re-sends other unanswered actions
  after the next ``FullyBooted`` — a stale ``Redirect`` replayed minutes later is harmful for a call centre.
  Here every pending action fails with :class:`AmiConnectionLost` instead; callers decide again after resync.
* ``AMIProtocol.data_received`` silently drops non-UTF-8 bytes, buffers without limit while waiting for the
  blank line that ends a frame, and lets a frame with a repeated ``Event`` header (or an exception in an event
  callback) raise out of ``data_received``, which makes asyncio close the connection. Here frames are cut on
  bytes with a size cap, decoded with replacement, and every malformed frame is counted and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import unquote

from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from config.errors import HotlineError
from config.settings import AmiSettings

log = logging.getLogger(__name__)

FRAME_END = b"\r\n\r\n"
BANNER = "Asterisk Call Manager/"


class AmiError(HotlineError):
    """An AMI failure; subclasses name their ``code`` and Chinese ``message``."""

    code = "ami.error"
    message = "AMI 通信错误"

    def __init__(self, detail: str = "") -> None:
        super().__init__(type(self).code, type(self).message)
        self.detail = detail


class AmiNotConnected(AmiError):
    code = "ami.not_connected"
    message = "尚未连接到 Asterisk"


class AmiConnectionLost(AmiError):
    code = "ami.connection_lost"
    message = "与 Asterisk 的连接已断开"


class AmiTimeout(AmiError):
    code = "ami.timeout"
    message = "Asterisk 未在规定时间内应答"


class AmiAuthError(AmiError):
    code = "ami.auth_failed"
    message = "AMI 登录失败"


class AmiActionError(AmiError):
    code = "ami.action_failed"
    message = "AMI 操作被 Asterisk 拒绝"


class AmiInvalidAction(AmiError):
    code = "ami.invalid_action"
    message = "AMI 操作含有换行或控制字符，已拒绝发送"


# AMI is line-framed ("Key: value\r\n", a blank line ends the action): a CR or LF in a value would start a
# header or an action of the caller's choosing. C0/C1 controls and Unicode line separators are refused too.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_HEADER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_Scalar = str | int | float


def has_control_characters(text: str) -> bool:
    """True when ``text`` could break an AMI line: CR, LF, other C0/C1 controls, Unicode line separators."""
    return _CONTROL.search(text) is not None


def checked_action(action: Mapping[str, Any]) -> dict[str, Any]:
    """The action as panoramisk will write it, or :class:`AmiInvalidAction` when a header name is not a plain
    token or a value (or an item of a repeated header such as ``Variable``) is not a scalar free of control
    characters. Every action goes through here (:meth:`AmiClient.action`): the one choke point."""
    for key, value in action.items():
        if not isinstance(key, str) or not _HEADER_NAME.fullmatch(key):
            raise AmiInvalidAction(f"header name {key!r}")
        for item in value if isinstance(value, list | tuple) else (value,):
            if not isinstance(item, _Scalar) or (
                isinstance(item, str) and has_control_characters(item)
            ):
                raise AmiInvalidAction(f"{key}: {item!r}"[:200])
    return dict(action)


@dataclass
class AmiStats:
    """Counters of the connection (exported on the console and as metrics)."""

    frames: int = 0
    events: int = 0
    malformed_frames: int = 0
    oversized_frames: int = 0
    undecodable_frames: int = 0
    unwanted_events: int = 0  # events nobody subscribed to, dropped before parsing
    callback_errors: int = 0
    connects: int = 0
    connect_failures: int = 0
    dead_pings: int = 0
    disconnects: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class HardenedAmiProtocol(AMIProtocol):
    """panoramisk's AMIProtocol with byte-level framing, a frame size cap and no exception escaping."""

    version: str | None
    closed: bool

    def __init__(self, stats: AmiStats, max_frame_bytes: int) -> None:
        super().__init__()
        self.stats = stats
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._skipping = False  # inside an oversized frame: drop bytes up to its end
        self.lost: asyncio.Future[None] | None = None
        self.tap: Callable[[bytes], None] | None = (
            None  # sees every received byte (bench/ami.py records streams)
        )
        # names of the events someone listens to (None: all, e.g. a glob subscription); the others are counted
        # and dropped unparsed — what an AMI Filter would do when the account may not set one
        self.wanted: frozenset[bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._buf = bytearray()
        self._skipping = False
        self.lost = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        if self.tap is not None:
            self.tap(data)
        self._buf += data
        while True:
            end = self._buf.find(FRAME_END)
            if end < 0:
                if len(self._buf) > self.max_frame_bytes:
                    if not self._skipping:
                        self.stats.oversized_frames += 1
                        log.warning("AMI frame longer than %d bytes dropped", self.max_frame_bytes)
                    self._skipping = True
                    # keep the last 3 bytes: the frame end may straddle two reads
                    del self._buf[:-3]
                return
            raw = bytes(self._buf[:end])
            del self._buf[: end + len(FRAME_END)]
            if self._skipping:
                self._skipping = False
                continue
            if len(raw) > self.max_frame_bytes:
                self.stats.oversized_frames += 1
                log.warning(
                    "AMI frame of %d bytes dropped (limit %d)", len(raw), self.max_frame_bytes
                )
                continue
            self._frame_received(raw)

    def _frame_received(self, raw: bytes) -> None:
        if not raw.strip():
            return
        self.stats.frames += 1
        if self.wanted is not None and raw.startswith(b"Event: ") and b"\r\nActionID: " not in raw:
            end = raw.find(b"\r\n")
            if raw[7 : end if end > 0 else None] not in self.wanted:
                self.stats.events += 1
                self.stats.unwanted_events += 1
                return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.stats.undecodable_frames += 1
            text = raw.decode("utf-8", errors="replace")
            log.warning("AMI frame with non-UTF-8 bytes (%d bytes)", len(raw))
        if text.startswith(BANNER):
            banner, _, text = text.partition("\r\n")
            if self.version is None:
                self.version = banner[len(BANNER) :].strip()
        try:
            message = parse_frame(text)
        except Exception:  # any parser failure is a malformed frame
            message = None
        if message is None or not _single_header(message, "event", "response"):
            self.stats.malformed_frames += 1
            log.warning(
                "malformed AMI frame ignored (%d bytes, starting %r)",
                len(text),
                _first_header(text),
            )
            return
        message.seq = (
            self.stats.frames
        )  # stream order, across reconnects: resync snapshots compare against it
        if "event" in message:
            self.stats.events += 1
        try:
            self.handle_message(message)
        except Exception:  # a failing callback must not kill the connection
            self.stats.callback_errors += 1
            log.exception("AMI message handler failed for %s", describe(message))

    def close(self) -> None:
        """Close and fail every pending action (panoramisk would keep or replay them)."""
        self._fail_pending()
        if not self.closed:
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        """Drop the TCP connection at once (dead peer): no FIN handshake to wait for."""
        self._fail_pending()
        self.closed = True
        self.transport.abort()

    def _fail_pending(self) -> None:
        for action in list(self.responses.values()):
            if not action.future.done():
                action.future.set_exception(AmiConnectionLost(str(action.get("action", ""))))
        self.responses.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()
        if self.lost is not None and not self.lost.done():
            self.lost.set_result(None)


class AmiMessage(Message):
    """panoramisk's Message built in one pass and read with direct header lookups: its constructor sets each
    header through ``MutableMapping.update``, its ``get`` and attribute access go through ``Mapping.get`` →
    ``__getitem__`` → ``str.lower`` (three Python calls per header on the hot path).

    The one place that knows panoramisk's storage, checked against panoramisk 1.4: ``CaseInsensitiveDict`` keeps
    ``_store = {lower-case name: (name as sent, value)}`` and ``Message.__init__`` adds only ``manager = None``
    (tests/ivr/test_ami_frames.py compares every message with panoramisk's own)."""

    @classmethod
    def from_store(cls, store: dict[str, tuple[str, Any]]) -> AmiMessage:
        """The message whose headers are ``store``, laid out as ``CaseInsensitiveDict._store`` (not copied)."""
        message = cls.__new__(cls)
        message._store = store
        message.manager = None
        return message

    def get(self, key: str, default: Any = None) -> Any:
        item = self._store.get(key.lower())
        return default if item is None else item[1]

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") or attr == "_store":
            raise AttributeError(attr)
        item = self._store.get(attr.lower())
        return "" if item is None else item[1]


_BODY_RESPONSES = ("Response: Follows", "Response: Fail")  # frames with a free-text body


def describe(message: Message) -> str:
    """A message for the log without the caller's number or name: its kind and the call it is about."""
    kind = message.get("event") or f"Response {message.get('response', '')}"
    return f"{kind} uniqueid={message.get('uniqueid', '-')} actionid={message.get('actionid', '-')}"


def _first_header(text: str) -> str:
    """The first header's name of a frame (its value may be personal data)."""
    return text.lstrip().partition("\r\n")[0].partition(":")[0][:40]


def parse_frame(text: str) -> Message | None:
    """One AMI frame (no banner) → a Message, as ``Message.from_line`` would build it, in one pass: repeated
    headers become a list, ``Result`` is unquoted; None without an Event or a Response header."""
    if text.lstrip().startswith(_BODY_RESPONSES):
        return Message.from_line(text.strip())  # panoramisk's own rules for command output
    store: dict[str, tuple[str, Any]] = {}
    for line in text.split("\r\n"):
        key, sep, value = line.partition(": ")
        if not sep:
            continue
        lower = key.lower()
        if lower in Message.quoted_keys:
            value = unquote(value).strip()
        old = store.get(lower)
        if old is None:
            store[lower] = (key, value)
        else:
            before = old[1]
            store[lower] = (
                old[0],
                [*before, value] if isinstance(before, list) else [before, value],
            )
    if "event" not in store and "response" not in store:
        return None
    store.setdefault("content", ("content", ""))
    return AmiMessage.from_store(store)


def _single_header(message: Message, *names: str) -> bool:
    """True when the frame has an Event or a Response header (OriginateResponse has both), none repeated."""
    present = [message[n] for n in names if n in message]
    return bool(present) and all(isinstance(v, str) for v in present)


EventCallback = Callable[[Message], None]
ConnectedHook = Callable[["AmiClient"], Awaitable[None]]


class _SupervisedManager(Manager):
    """panoramisk Manager whose connection lifecycle belongs to :class:`AmiClient`; callbacks for an exact event
    name are found by a dict lookup instead of trying every registered pattern's regex on every event."""

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.by_name: dict[str, list[Callable[[Manager, Message], None]]] = {}

    def dispatch(self, event: Message) -> list[str]:
        event.manager = self
        for callback in self.by_name.get(event.event, ()):
            callback(self, event)
        return super().dispatch(event)

    def connection_lost(
        self, exc: Any
    ) -> None:  # panoramisk would schedule its own fixed-delay reconnect
        pass


class AmiClient:
    """One supervised AMI session: login, event filters, pings, reconnect with backoff, resync hook.

    ``on_connected`` runs after every successful login (first connect and each reconnect) before events are
    considered live; the controller rebuilds its state there.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        secret: str,
        ping_interval_s: float = 5.0,
        ping_timeout_s: float = 3.0,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        action_timeout_s: float = 10.0,
        max_frame_bytes: int = 65536,
        event_filters: Iterable[str] = (),
        on_connected: ConnectedHook | None = None,
        rng: random.Random | None = None,
        credentials: Callable[[], tuple[str, str]] | None = None,
    ) -> None:
        self.host, self.port, self.username, self.secret = host, port, username, secret
        # asked before every login when given: a local PBX gets a new secret at each start
        self.credentials = credentials
        self.ping_interval_s, self.ping_timeout_s = ping_interval_s, ping_timeout_s
        self.reconnect_min_s, self.reconnect_max_s = reconnect_min_s, reconnect_max_s
        self.connect_timeout_s, self.action_timeout_s = connect_timeout_s, action_timeout_s
        self.max_frame_bytes = max_frame_bytes
        self.event_filters = list(event_filters)
        self.on_connected = on_connected
        self.stats = AmiStats()
        self.connected = asyncio.Event()
        self.last_error: str | None = None
        self._rng = rng or random.Random()
        self._manager = _SupervisedManager(host=host, port=port, ping_delay=0, ping_interval=0)
        self._protocol: HardenedAmiProtocol | None = None
        self.tap: Callable[[bytes], None] | None = (
            None  # given every received byte of every connection
        )
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(
        cls, ami: AmiSettings, *, username: str = "", secret: str = "", **kwargs: Any
    ) -> AmiClient:
        return cls(
            host=ami.host,
            port=ami.port,
            username=username,
            secret=secret,
            ping_interval_s=ami.ping_interval_s,
            ping_timeout_s=ami.ping_timeout_s,
            reconnect_min_s=ami.reconnect_min_s,
            reconnect_max_s=ami.reconnect_max_s,
            connect_timeout_s=ami.connect_timeout_s,
            action_timeout_s=ami.action_timeout_s,
            max_frame_bytes=ami.max_frame_bytes,
            **kwargs,
        )

    # -- events and actions -------------------------------------------------------------------------------
    def on_event(self, pattern: str, callback: EventCallback) -> None:
        """Call ``callback(message)`` for every event whose name matches the glob ``pattern``."""

        def guarded(_manager: Manager, message: Message) -> None:
            try:
                callback(message)
            except Exception:  # one failing handler must not starve the others of the event
                self.stats.callback_errors += 1
                log.exception("AMI event handler %r failed for %s", callback, describe(message))

        if any(c in pattern for c in "*?["):
            self._manager.register_event(pattern, guarded)
        else:
            self._manager.by_name.setdefault(pattern, []).append(guarded)
        if self._protocol is not None:
            self._protocol.wanted = self._wanted()

    def _wanted(self) -> frozenset[bytes] | None:
        """Event names worth parsing: ours by exact name, plus those panoramisk's own handlers need; None when a
        glob subscription (other than panoramisk's FullyBooted) could want any event."""
        own = {"FullyBooted"}
        if any(pattern not in own for pattern, _regex in self._manager.patterns):
            return None
        return frozenset(n.encode() for n in (*self._manager.by_name, *own, "Shutdown"))

    async def action(
        self, action: Mapping[str, Any], *, as_list: bool = False, timeout_s: float | None = None
    ) -> Message | list[Message]:
        """Send an action and wait for its answer; raises AmiInvalidAction (nothing sent), AmiNotConnected/
        AmiConnectionLost/AmiTimeout/AmiActionError (``Response: Error``). Lists (``as_list=True``) end with
        their ``…Complete`` event.
        ``as_list`` is always explicit: panoramisk otherwise guesses from the reply text and waits forever for
        a list after QueueAdd's "Added interface to queue"."""
        checked = checked_action(action)
        protocol = self._protocol
        if protocol is None or protocol.closed:
            raise AmiNotConnected(str(action.get("Action", "")))
        future = protocol.send(checked, as_list=as_list)
        try:
            async with asyncio.timeout(timeout_s or self.action_timeout_s):
                result = await future
        except TimeoutError:
            protocol.responses = {
                k: v for k, v in protocol.responses.items() if v.future is not future
            }
            raise AmiTimeout(str(action.get("Action", ""))) from None
        first = result[0] if isinstance(result, list) else result
        if str(first.get("response", "")).lower() == "error":
            raise AmiActionError(f"{action.get('Action')}: {first.get('message', '')}")
        return result

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        self._stopping = False
        self._task = asyncio.create_task(self.run(), name="ami-supervisor")
        return self._task

    async def stop(self) -> None:
        self._stopping = True
        if self._protocol is not None:
            self._protocol.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.connected.clear()

    def drop_connection(self) -> None:
        """Abort the TCP connection now; the supervisor reconnects (used on a dead ping)."""
        if self._protocol is not None:
            self._protocol.abort()

    def backoff_delays(self) -> Iterable[float]:
        """Reconnect delays: exponential from reconnect_min_s, capped, with ±50 % full jitter below the cap."""
        delay = self.reconnect_min_s
        while True:
            yield min(self.reconnect_max_s, delay * (0.5 + self._rng.random()))
            delay = min(self.reconnect_max_s, delay * 2)

    async def run(self) -> None:
        """Connect, serve until the connection dies, reconnect with backoff — until :meth:`stop`."""
        delays = iter(self.backoff_delays())
        while not self._stopping:
            try:
                protocol = await self._open()
            except (OSError, TimeoutError, AmiError) as exc:
                self.stats.connect_failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                delay = next(delays)
                log.warning(
                    "AMI %s:%s unavailable (%s); retry in %.1fs", self.host, self.port, exc, delay
                )
                await asyncio.sleep(delay)
                continue
            delays = iter(self.backoff_delays())
            await self._serve(protocol)
            if not self._stopping:
                delay = next(delays)
                log.warning("AMI connection lost; reconnecting in %.1fs", delay)
                await asyncio.sleep(delay)

    def attach(self, protocol: HardenedAmiProtocol) -> None:
        """Make ``protocol``, whose transport is connected (``connection_made`` done), this client's connection:
        its event filter, panoramisk's wiring (manager, UTF-8, our logger). :meth:`_open` calls it for every TCP
        connection; tests replay recorded AMI streams through it on an in-memory transport."""
        protocol.wanted = self._wanted()
        protocol.factory = self._manager  # after connection_made, which resets factory and log
        protocol.encoding = "utf-8"
        protocol.log = log
        self._manager.protocol = protocol
        self._protocol = protocol

    async def _open(self) -> HardenedAmiProtocol:
        loop = asyncio.get_running_loop()

        def new_protocol() -> HardenedAmiProtocol:
            protocol = HardenedAmiProtocol(self.stats, self.max_frame_bytes)
            protocol.tap = self.tap  # from the first byte on: the banner too
            return protocol

        async with asyncio.timeout(self.connect_timeout_s):
            _transport, protocol = await loop.create_connection(new_protocol, self.host, self.port)
        self.attach(protocol)
        try:
            if self.credentials is not None:
                self.username, self.secret = self.credentials()
            reply = await self.action(
                {
                    "Action": "Login",
                    "Username": self.username,
                    "Secret": self.secret,
                    "Events": "on",
                }
            )
        except AmiActionError as exc:
            protocol.close()
            raise AmiAuthError(exc.detail) from None
        except AmiError:
            protocol.close()
            raise
        assert isinstance(reply, Message)
        await self._install_filters()
        self.stats.connects += 1
        log.info("AMI connected to %s:%s (protocol %s)", self.host, self.port, protocol.version)
        return protocol

    async def _install_filters(self) -> None:
        """Ask Asterisk to send only the events we use; without the Filter right our callbacks still filter."""
        for regex in self.event_filters:
            try:
                await self.action({"Action": "Filter", "Operation": "Add", "Filter": regex})
            except AmiActionError as exc:
                log.info(
                    "AMI Filter refused (%s); unused events are dropped on our side", exc.detail
                )
                return

    async def _serve(self, protocol: HardenedAmiProtocol) -> None:
        assert protocol.lost is not None
        pinger = asyncio.create_task(self._ping_loop(protocol), name="ami-pinger")
        try:
            if self.on_connected is not None:
                await self.on_connected(self)
            self.connected.set()
            await protocol.lost
        except AmiError as exc:
            log.warning("AMI session ended during setup: %s", exc)
            protocol.abort()
        except Exception:  # a failing resync must not end the supervisor: reconnect and retry
            log.exception("AMI resync failed; reconnecting")
            protocol.abort()
        finally:
            self.connected.clear()
            self.stats.disconnects += 1
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger

    async def _ping_loop(self, protocol: HardenedAmiProtocol) -> None:
        while not protocol.closed:
            await asyncio.sleep(self.ping_interval_s)
            try:
                await self.action({"Action": "Ping"}, timeout_s=self.ping_timeout_s)
            except AmiTimeout:
                self.stats.dead_pings += 1
                log.error(
                    "AMI ping unanswered for %.1fs: dropping the connection", self.ping_timeout_s
                )
                protocol.abort()
                return
            except AmiError:
                return
