"""AMI events → typed domain events. Pure: a header mapping in, a frozen dataclass (or None) out.

Only the events the controller uses are parsed; anything else, or an event missing a key header, gives
None. Times come from the ``Timestamp`` header when Asterisk sends it (``timestampevents=yes``), otherwise
from the receive time the caller passes in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

# AMI event names the controller subscribes to (also the Filter regexes sent at login).
SUBSCRIBED = (
    "Newchannel",
    "Newstate",
    "Hangup",
    "QueueCallerJoin",
    "QueueCallerLeave",
    "QueueCallerAbandon",
    "AgentCalled",
    "AgentRingNoAnswer",
    "AgentConnect",
    "AgentComplete",
    "BridgeEnter",
    "AttendedTransfer",
    "QueueMemberStatus",
    "QueueMemberAdded",
    "QueueMemberRemoved",
    "QueueMemberPause",
    "QueueMemberPenalty",
    "UserEvent",
    "MixMonitorStart",
    "FullyBooted",
    "Shutdown",
)
# Whitelist regex for the AMI Filter action (POSIX ERE matched against the whole event text). Names end at a line
# end ([[:space:]]), so "HangupRequest" does not pass as "Hangup".
AMI_FILTERS = ("Event: (" + "|".join(SUBSCRIBED) + ")[[:space:]]",)

# Asterisk device states (QueueMember Status) meaning "can take a call now".
DEVICE_NOT_INUSE, DEVICE_INUSE, DEVICE_BUSY, DEVICE_INVALID, DEVICE_UNAVAILABLE = 1, 2, 3, 4, 5
DEVICE_RINGING, DEVICE_RINGINUSE, DEVICE_ONHOLD = 6, 7, 8


@dataclass(frozen=True)
class ChannelInfo:
    """The channel fields every channel event carries."""

    uniqueid: str
    linkedid: str
    channel: str
    caller_number: str
    context: str
    exten: str
    bot_uuid: str = ""  # ChanVariable BOT_UUID (manager.conf channelvars)
    menu: str = ""  # ChanVariable HOTLINE_MENU
    recording: str = ""  # ChanVariable HOTLINE_RECORDING, when the PBX exports it


@dataclass(frozen=True)
class RecordingStarted:
    """MixMonitorStart: the dialplan records the call into ``<Uniqueid>.wav`` (contract of hotline-record)."""

    at: datetime
    chan: ChannelInfo


@dataclass(frozen=True)
class ChannelCreated:
    at: datetime
    chan: ChannelInfo


@dataclass(frozen=True)
class ChannelState:
    """Newstate; ``up`` when the channel is answered."""

    at: datetime
    chan: ChannelInfo
    up: bool


@dataclass(frozen=True)
class ChannelHungUp:
    at: datetime
    chan: ChannelInfo
    cause: str


@dataclass(frozen=True)
class CallerJoined:
    """QueueCallerJoin: a caller entered the queue (again after the bot: the call then has a ``bot_uuid``)."""

    at: datetime
    chan: ChannelInfo
    queue: str
    position: int


@dataclass(frozen=True)
class CallerLeft:
    at: datetime
    chan: ChannelInfo
    queue: str


@dataclass(frozen=True)
class CallerAbandoned:
    at: datetime
    chan: ChannelInfo
    queue: str
    hold_s: float


@dataclass(frozen=True)
class AgentRinging:
    at: datetime
    chan: ChannelInfo
    queue: str
    interface: str


@dataclass(frozen=True)
class AgentNoAnswer:
    """AgentRingNoAnswer: the agent rang without answering (ring timeout, busy); the caller waits on. Asterisk
    sends none when the caller hangs up during the ring."""

    at: datetime
    chan: ChannelInfo
    queue: str
    interface: str


@dataclass(frozen=True)
class AgentConnected:
    at: datetime
    chan: ChannelInfo
    queue: str
    interface: str
    member_name: str
    hold_s: float
    member_channel: str = ""  # the agent's leg (DestChannel): what a supervisor spies on


@dataclass(frozen=True)
class AgentCompleted:
    at: datetime
    chan: ChannelInfo
    queue: str
    interface: str
    member_name: str
    talk_s: float
    reason: str


@dataclass(frozen=True)
class BridgeEntered:
    at: datetime
    chan: ChannelInfo
    bridge_id: str


@dataclass(frozen=True)
class BotStarted:
    """UserEvent HotlineBot: the call is now talking to the speech bot."""

    at: datetime
    chan: ChannelInfo
    bot_uuid: str


@dataclass(frozen=True)
class CallbackResult:
    """UserEvent HotlineCallback: the 回访 survey result reported by the dialplan."""

    at: datetime
    chan: ChannelInfo
    ticket_no: str
    result: str


@dataclass(frozen=True)
class MessageLeft:
    """UserEvent HotlineMessage: the caller recorded a voice message (留言) into ``file`` in the messages folder
    (``record_status``: Asterisk's RECORD_STATUS, HANGUP when the caller hung up while recording)."""

    at: datetime
    chan: ChannelInfo
    file: str
    record_status: str
    caller_number: str


@dataclass(frozen=True)
class CallerBlocked:
    """UserEvent HotlineBlocked: the caller is on the blocklist and was sent to [hotline-blocked] (prompt, hang-up)."""

    at: datetime
    chan: ChannelInfo


@dataclass(frozen=True)
class TransferResult:
    """UserEvent HotlineTransfer: how a transfer (转接) ended — ``status`` is Asterisk's DIALSTATUS of the
    target, or ANSWER when it joined a three-way call."""

    at: datetime
    chan: ChannelInfo
    transfer_id: str
    status: str


@dataclass(frozen=True)
class AttendedTransferEnded:
    """AttendedTransfer: an attended transfer (咨询转接) ended — ``result`` ``Success`` (caller joined to the
    target) or ``Fail`` (cancelled: the agent is back with the caller), ``Invalid``, ``Not Permitted``.
    ``transfer_id`` is the ChanVariable TRANSFER_ID of the agent's leg (the transferer)."""

    at: datetime
    transfer_id: str
    result: str


@dataclass(frozen=True)
class MemberState:
    """A queue member's full state (QueueMemberStatus/Added/Pause/Penalty, QueueMember of QueueStatus)."""

    at: datetime
    queue: str
    interface: str
    name: str
    state_interface: str
    penalty: int
    paused: bool
    status: int
    in_call: bool
    paused_reason: str = ""  # QueuePause reason: 示忙, 话后整理 (wrap-up) …


@dataclass(frozen=True)
class MemberRemoved:
    at: datetime
    queue: str
    interface: str


@dataclass(frozen=True)
class AsteriskBooted:
    at: datetime


@dataclass(frozen=True)
class QueueWaiting:
    """QueueEntry of QueueStatus (resync): a caller waiting ``wait_s`` seconds at ``position``."""

    queue: str
    uniqueid: str
    channel: str
    caller_number: str
    position: int
    wait_s: float


@dataclass(frozen=True)
class QueueParams:
    """QueueParams of QueueStatus (resync): Asterisk's own averages, used to seed the estimator."""

    queue: str
    talk_time_s: float
    hold_time_s: float
    completed: int


@dataclass(frozen=True)
class ChannelSnapshot:
    """CoreShowChannel (resync): a live channel and how long it has existed."""

    chan: ChannelInfo
    up: bool
    duration_s: float
    application: str
    bridge_id: str


DomainEvent = (
    ChannelCreated
    | ChannelState
    | ChannelHungUp
    | CallerJoined
    | CallerLeft
    | CallerAbandoned
    | AgentRinging
    | AgentNoAnswer
    | AgentConnected
    | AgentCompleted
    | BridgeEntered
    | BotStarted
    | CallbackResult
    | MemberState
    | MemberRemoved
    | AsteriskBooted
    | RecordingStarted
    | MessageLeft
    | CallerBlocked
    | TransferResult
    | AttendedTransferEnded
)


def _get(h: Mapping[str, Any], key: str, default: str = "") -> str:
    value = h.get(key, default)
    if isinstance(value, list):  # a repeated header: keep the last value
        value = value[-1] if value else default
    return str(value) if value is not None else default


def _num(h: Mapping[str, Any], key: str, default: float = 0.0) -> float:
    try:
        return float(_get(h, key) or default)
    except ValueError:
        return default


def _event_time(h: Mapping[str, Any], received: datetime) -> datetime:
    stamp = _get(h, "Timestamp")
    try:
        return datetime.fromtimestamp(float(stamp), UTC) if stamp else received
    except (ValueError, OverflowError, OSError):
        return received


def _known(value: str) -> str:
    """Asterisk writes ``<unknown>`` for an absent caller ID."""
    return "" if value in ("<unknown>", "unknown") else value


def _chan_variables(h: Mapping[str, Any], prefix: str) -> dict[str, str]:
    raw = h.get(prefix + "ChanVariable", [])
    out: dict[str, str] = {}
    for item in raw if isinstance(raw, list) else [raw]:
        name, sep, value = str(item).partition("=")
        if sep:
            out[name.strip()] = value.strip()
    return out


def _chan(h: Mapping[str, Any], prefix: str = "") -> ChannelInfo | None:
    uniqueid = _get(h, prefix + "Uniqueid")
    if not uniqueid:
        return None
    variables = _chan_variables(h, prefix)
    return ChannelInfo(
        uniqueid=uniqueid,
        linkedid=_get(h, prefix + "Linkedid") or uniqueid,
        channel=_get(h, prefix + "Channel"),
        caller_number=_known(_get(h, prefix + "CallerIDNum")),
        context=_get(h, prefix + "Context"),
        exten=_get(h, prefix + "Exten"),
        bot_uuid=variables.get("BOT_UUID", ""),
        menu=variables.get("HOTLINE_MENU", ""),
        recording=variables.get("HOTLINE_RECORDING", ""),
    )


def _member(h: Mapping[str, Any], at: datetime) -> MemberState | None:
    interface = _get(h, "Interface") or _get(h, "Location")
    queue = _get(h, "Queue")
    if not interface or not queue:
        return None
    return MemberState(
        at=at,
        queue=queue,
        interface=interface,
        name=_get(h, "MemberName") or _get(h, "Name") or interface,
        state_interface=_get(h, "StateInterface") or interface,
        penalty=int(_num(h, "Penalty")),
        paused=_get(h, "Paused") in ("1", "true", "yes"),
        status=int(_num(h, "Status")),
        in_call=_get(h, "InCall") == "1",
        paused_reason=_get(h, "PausedReason"),
    )


def parse_event(h: Mapping[str, Any], received: datetime) -> DomainEvent | None:
    """One AMI event (header mapping, case-insensitive as panoramisk's Message) → a domain event or None."""
    name = _get(h, "Event")
    at = _event_time(h, received)
    if name in (
        "QueueMemberStatus",
        "QueueMemberAdded",
        "QueueMemberPause",
        "QueueMemberPenalty",
        "QueueMember",
    ):
        return _member(h, at)
    if name == "QueueMemberRemoved":
        interface, queue = _get(h, "Interface") or _get(h, "Location"), _get(h, "Queue")
        return MemberRemoved(at, queue, interface) if interface and queue else None
    if name == "FullyBooted":
        return AsteriskBooted(at)
    if name == "AttendedTransfer":
        return _attended_transfer(h, at)
    chan = _chan(h)
    if chan is None:
        return None
    queue = _get(h, "Queue")
    match name:
        case "Newchannel":
            return ChannelCreated(at, chan)
        case "Newstate":
            return ChannelState(
                at, chan, up=_get(h, "ChannelStateDesc") == "Up" or _get(h, "ChannelState") == "6"
            )
        case "Hangup":
            return ChannelHungUp(at, chan, cause=_get(h, "Cause-txt") or _get(h, "Cause"))
        case "QueueCallerJoin":
            return CallerJoined(at, chan, queue, position=int(_num(h, "Position")))
        case "QueueCallerLeave":
            return CallerLeft(at, chan, queue)
        case "QueueCallerAbandon":
            return CallerAbandoned(at, chan, queue, hold_s=_num(h, "HoldTime"))
        case "AgentCalled":
            return AgentRinging(at, chan, queue, interface=_get(h, "Interface"))
        case "AgentRingNoAnswer":
            return AgentNoAnswer(at, chan, queue, interface=_get(h, "Interface"))
        case "AgentConnect":
            return AgentConnected(
                at,
                chan,
                queue,
                _get(h, "Interface"),
                _get(h, "MemberName"),
                _num(h, "HoldTime"),
                member_channel=_get(h, "DestChannel"),
            )
        case "AgentComplete":
            return AgentCompleted(
                at,
                chan,
                queue,
                _get(h, "Interface"),
                _get(h, "MemberName"),
                talk_s=_num(h, "TalkTime"),
                reason=_get(h, "Reason"),
            )
        case "BridgeEnter":
            return BridgeEntered(at, chan, bridge_id=_get(h, "BridgeUniqueid"))
        case "MixMonitorStart":
            return RecordingStarted(at, chan)
        case "UserEvent":
            return _user_event(h, at, chan)
    return None


def _attended_transfer(h: Mapping[str, Any], at: datetime) -> AttendedTransferEnded | None:
    for transferer in ("OrigTransferer", "SecondTransferer"):
        transfer_id = _chan_variables(h, transferer).get("TRANSFER_ID", "")
        if transfer_id:
            return AttendedTransferEnded(at, transfer_id, _get(h, "Result"))
    return None


def _user_event(h: Mapping[str, Any], at: datetime, chan: ChannelInfo) -> DomainEvent | None:
    kind = _get(h, "UserEvent")
    if kind == "HotlineBot":
        bot_uuid = _get(h, "Uuid")
        return BotStarted(at, chan, bot_uuid) if bot_uuid else None
    if kind == "HotlineCallback":
        return CallbackResult(
            at, chan, ticket_no=_get(h, "TicketNo"), result=_get(h, "Result") or "none"
        )
    if kind == "HotlineBlocked":
        return CallerBlocked(at, chan)
    if kind == "HotlineTransfer":
        transfer_id = _get(h, "TransferId")
        return TransferResult(at, chan, transfer_id, _get(h, "Status")) if transfer_id else None
    if kind == "HotlineMessage":
        file = _get(h, "File")
        return (
            MessageLeft(
                at, chan, file, _get(h, "Status") or "UNKNOWN", _known(_get(h, "CallerIdNum"))
            )
            if file
            else None
        )
    return None


def parse_duration(text: str) -> float:
    """CoreShowChannel ``Duration`` (``HH:MM:SS``, hours may exceed 24) → seconds; 0 when unreadable."""
    parts = text.strip().split(":")
    try:
        h, m, s = (int(p) for p in parts) if len(parts) == 3 else (0, 0, int(parts[0]))
    except ValueError:
        return 0.0
    return float(timedelta(hours=h, minutes=m, seconds=s).total_seconds())


def parse_snapshot(
    h: Mapping[str, Any],
) -> ChannelSnapshot | QueueWaiting | QueueParams | MemberState | None:
    """One list event of CoreShowChannels or QueueStatus → a resync record (``at`` of members is filled later)."""
    name = _get(h, "Event")
    if name == "CoreShowChannel":
        chan = _chan(h)
        if chan is None:
            return None
        return ChannelSnapshot(
            chan,
            up=_get(h, "ChannelStateDesc") == "Up" or _get(h, "ChannelState") == "6",
            duration_s=parse_duration(_get(h, "Duration")),
            application=_get(h, "Application"),
            bridge_id=_get(h, "BridgeId"),
        )
    if name == "QueueEntry":
        uniqueid = _get(h, "Uniqueid")
        if not uniqueid:
            return None
        return QueueWaiting(
            _get(h, "Queue"),
            uniqueid,
            _get(h, "Channel"),
            _known(_get(h, "CallerIDNum")),
            int(_num(h, "Position")),
            _num(h, "Wait"),
        )
    if name == "QueueParams":
        return QueueParams(
            _get(h, "Queue"), _num(h, "TalkTime"), _num(h, "Holdtime"), int(_num(h, "Completed"))
        )
    if name == "QueueMember":
        return _member(h, datetime.now(UTC))
    return None
