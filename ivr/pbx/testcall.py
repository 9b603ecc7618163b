"""Emulated calls into the local PBX (`hotline pbx call`): an AMI Originate of ``Local/s@test-caller``.

The caller side plays a WAV file (converted to 8 kHz into the PBX sounds folder) and may press digits;
the hotline side runs the real dialplan. With ``wait`` the call is followed on AMI until it hangs up (every
channel of the call shares the hotline side's Linkedid): who answered it, how long it waited in the queue, and
— read from the database afterwards — the ticket the bot made and its transcript.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from panoramisk import Manager
from panoramisk.message import Message
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivr.leaders import active_shifts
from ivr.models import CallRecord
from ivr.pbx.errors import PbxError
from ivr.pbx.harness import PbxInfo
from ivr.pbx.prompts import to_asterisk_wav
from tickets.models import Ticket

CALL_CONTEXTS = {"hotline-inbound": "12345", "hotline-bot": "s", "hotline-leader": "s"}


async def ami_connect(
    info: PbxInfo, *, secret: str | None = None, timeout_s: float = 10
) -> Manager:
    """A logged-in panoramisk Manager to *info*'s AMI; PbxError ``pbx_ami_login_failed`` when refused."""
    manager = Manager(
        host=info.ami_host,
        port=info.ami_port,
        username=info.ami_username,
        secret=info.ami_secret if secret is None else secret,
        ping_delay=3600,
        reconnect_timeout=3600,
    )
    try:
        async with asyncio.timeout(timeout_s):
            await manager.connect()
        login = manager.authenticated_future
        async with asyncio.timeout(timeout_s):
            response = await login if login is not None else None
    except (OSError, TimeoutError) as exc:
        manager.close()
        raise PbxError(
            "pbx.ami_unreachable", "无法连接 Asterisk 管理接口 (AMI)", str(exc)
        ) from None
    if response is None or not response.success:
        manager.close()
        raise PbxError(
            "pbx.ami_login_failed",
            "AMI 登录失败 (用户名或密码错误)",
            str(getattr(response, "message", "")),
        )
    return manager


@dataclass
class CallReport:
    """What happened to one emulated call."""

    channel: str
    uniqueid: str
    context: str
    audio: str
    # agent 坐席 | leader 领导 (the call log says so, or the member is a leader on duty now) | bot 机器人 |
    # abandoned; a human who answered after the bot wins. Set with ``wait`` only.
    answered_by: str | None = None
    member: str | None = None  # queue member interface that answered (AgentConnect), if any
    wait_s: float | None = (
        None  # seconds spent in the queue (all visits), measured on the AMI events
    )
    bot_uuid: str | None = None  # AudioSocket session id, when the call reached the speech bot
    bot_status: str | None = (
        None  # SUCCESS: a bot took the session; FAILED: no bot listening (or it broke)
    )
    ticket_no: str | None = (
        None  # the ticket made from the call (call log link, or call_id / bot session)
    )
    transcript: str | None = None  # what the bot heard, as stored in that ticket
    duration_s: float | None = None  # from the originate to the hangup
    hangup_cause: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def install_test_audio(info: PbxInfo, wav: Path) -> str:
    """Convert *wav* into the sounds folder; returns its TEST_AUDIO name (no folder, no extension)."""
    name = "test-" + hashlib.sha1(wav.read_bytes()).hexdigest()[:16]
    target = info.sounds_dir / f"{name}.wav"
    if not target.is_file():
        to_asterisk_wav(wav, target)
    return name


class _CallFollower:
    """Folds the AMI events of one call (Linkedid = the hotline side's Uniqueid) into its report."""

    def __init__(self, report: CallReport) -> None:
        self.report = report
        self.hung_up = asyncio.Event()
        self._queued_at: float | None = None
        self._queued_s = 0.0

    def on_event(self, _manager: Manager, event: Message) -> None:
        uniqueid = self.report.uniqueid
        if uniqueid not in (event.get("Linkedid"), event.get("Uniqueid")):
            return
        mine = event.get("Uniqueid") == uniqueid
        name = event.event
        if name == "QueueCallerJoin" and mine:
            self._queued_at = time.monotonic()
        elif name in ("QueueCallerLeave", "QueueCallerAbandon") and mine:
            self._leave_queue()
        elif name == "AgentConnect":
            self._leave_queue()
            self.report.member = event.get("Interface") or event.get("MemberName")
        elif name == "UserEvent" and event.get("UserEvent") == "HotlineBot":
            self.report.bot_uuid = event.get("Uuid")
        elif name == "UserEvent" and event.get("UserEvent") == "HotlineBotEnd":
            self.report.bot_status = event.get("Status")
        elif name == "Hangup" and mine:
            self._leave_queue()
            self.report.hangup_cause = event.get("Cause-txt")
            self.hung_up.set()

    def _leave_queue(self) -> None:
        if self._queued_at is not None:
            self._queued_s += time.monotonic() - self._queued_at
            self._queued_at = None

    async def finish(
        self,
        sessionmaker: async_sessionmaker[AsyncSession] | None,
        ticket_wait_s: float,
        tz: ZoneInfo,
    ) -> None:
        report = self.report
        report.wait_s = round(self._queued_s, 2)
        if report.member is None:
            report.answered_by = "bot" if report.bot_uuid else "abandoned"
        else:
            report.answered_by = (
                "agent" if sessionmaker is None else await _human(sessionmaker, report, tz)
            )
        if sessionmaker is not None:
            # a bot that took the session writes its ticket as the call ends, also after the caller hung up (when
            # the dialplan never reports BOT_STATUS): wait for it (bounded) unless no bot was listening
            patience = ticket_wait_s if report.bot_uuid and report.bot_status != "FAILED" else 0.0
            await _read_ticket(sessionmaker, report, patience)


async def _human(
    sessionmaker: async_sessionmaker[AsyncSession], report: CallReport, tz: ZoneInfo
) -> str:
    """agent or leader: the controller's call log when it ran, else whether the member is a leader on duty now."""
    async with sessionmaker() as session:
        logged = await session.scalar(
            select(CallRecord.answered_by).where(CallRecord.uniqueid == report.uniqueid)
        )
        if logged in ("agent", "leader"):
            return str(logged)
        on_duty = {s.interface for s in await active_shifts(session, datetime.now(UTC), tz)}
    return "leader" if report.member in on_duty else "agent"


async def _read_ticket(
    sessionmaker: async_sessionmaker[AsyncSession],
    report: CallReport,
    patience_s: float,
    every_s: float = 0.2,
) -> None:
    """Fill ticket_no / transcript from the call log link, or a ticket whose call_id is the call or bot session;
    polls up to *patience_s* for it to appear."""
    ids = [i for i in (report.uniqueid, report.bot_uuid) if i]
    deadline = time.monotonic() + patience_s
    while True:
        async with sessionmaker() as session:
            linked = await session.scalar(
                select(CallRecord.ticket_no).where(CallRecord.uniqueid == report.uniqueid)
            )
            condition = Ticket.ticket_no == linked if linked else Ticket.call_id.in_(ids)
            ticket = await session.scalar(
                select(Ticket).where(condition).order_by(Ticket.id.desc()).limit(1)
            )
        if ticket is not None:
            report.ticket_no, report.transcript = ticket.ticket_no, ticket.transcript
            return
        if time.monotonic() >= deadline:
            return
        await asyncio.sleep(every_s)


async def place_call(
    info: PbxInfo,
    audio: Path | None,
    *,
    caller: str = "13800138000",
    dtmf: str = "",
    context: str = "hotline-inbound",
    audio_at: str = "bot",
    caller_wait_s: int = 30,
    wait: bool = False,
    timeout_s: float = 120,
    sessionmaker: async_sessionmaker[AsyncSession] | None = None,
    ticket_wait_s: float = 10.0,
    timezone: str = "Asia/Shanghai",
) -> CallReport:
    """Originate ``Local/s@test-caller/n`` into *context*; with *wait*, follow it on AMI until hang-up.

    The caller presses *dtmf* right after the answer and plays *audio* at once (``audio_at="start"``) or
    once the call has reached the speech bot (``"bot"``); it hangs up *caller_wait_s* seconds later.
    With *sessionmaker* the ticket made from the call is looked up once it has ended.
    """
    if context not in CALL_CONTEXTS:
        raise PbxError(
            "pbx.bad_context", f"不支持的呼入上下文：{context}", ", ".join(CALL_CONTEXTS)
        )
    if dtmf and not all(c in "0123456789*#" for c in dtmf):
        raise PbxError("pbx.bad_dtmf", f"按键只能是 0-9、* 和 #：{dtmf}")
    name = await asyncio.to_thread(install_test_audio, info, audio) if audio else ""
    variables = [f"TEST_WAIT={caller_wait_s}"]
    if name:
        variables.append(f"TEST_AUDIO={name}")
        if audio_at == "bot" and context != "hotline-bot":
            variables.append("TEST_AUDIO_AT=bot")
    if dtmf:
        variables.append(f"TEST_DTMF={dtmf}")
    uniqueid = str(uuid.uuid4())
    report = CallReport(channel="", uniqueid=uniqueid, context=context, audio=name)
    manager = await ami_connect(info)
    follower = _CallFollower(report)
    manager.register_event("*", follower.on_event)
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            response = await manager.send_action(
                {
                    "Action": "Originate",
                    "Channel": "Local/s@test-caller/n",
                    "Context": context,
                    "Exten": CALL_CONTEXTS[context],
                    "Priority": "1",
                    "CallerID": f'"{caller}" <{caller}>',
                    "Variable": variables,
                    "ChannelId": uniqueid,
                    "Async": "true",
                }
            )
        final = response[-1] if isinstance(response, list) else response
        if final.get("Response") != "Success":
            raise PbxError("pbx.originate_failed", "模拟呼叫发起失败", str(dict(final)))
        report.channel = final.get("Channel") or "Local/s@test-caller/n"
        if wait:
            try:
                async with asyncio.timeout(timeout_s):
                    await follower.hung_up.wait()
            except TimeoutError:
                raise PbxError("pbx.call_timeout", "等待通话结束超时", uniqueid) from None
            report.duration_s = round(time.monotonic() - started, 2)
            await follower.finish(sessionmaker, ticket_wait_s, ZoneInfo(timezone))
    finally:
        manager.close()
    return report
