"""Emulated calls into the local PBX (`hotline pbx call`): an AMI Originate of ``Local/s@test-caller``.

The caller side plays a WAV file (converted to 8 kHz into the PBX sounds folder) and may press digits;
the hotline side runs the real dialplan. With ``wait`` the call is followed on AMI until it hangs up.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from panoramisk import Manager
from panoramisk.message import Message

from ivr.pbx.errors import PbxError
from ivr.pbx.harness import PbxInfo
from ivr.pbx.prompts import to_asterisk_wav

CALL_CONTEXTS = {"hotline-inbound": "12345", "hotline-bot": "s", "hotline-leader": "s"}


async def ami_connect(info: PbxInfo, *, secret: str | None = None, timeout_s: float = 10) -> Manager:
    """A logged-in panoramisk Manager to *info*'s AMI; PbxError ``pbx_ami_login_failed`` when refused."""
    manager = Manager(host=info.ami_host, port=info.ami_port, username=info.ami_username,
                      secret=info.ami_secret if secret is None else secret, ping_delay=3600, reconnect_timeout=3600)
    try:
        await asyncio.wait_for(manager.connect(), timeout_s)
        login = manager.authenticated_future
        response = await asyncio.wait_for(login, timeout_s) if login is not None else None
    except (OSError, TimeoutError) as exc:
        manager.close()
        raise PbxError("pbx_ami_unreachable", "无法连接 Asterisk 管理接口 (AMI)", str(exc)) from None
    if response is None or not response.success:
        manager.close()
        raise PbxError("pbx_ami_login_failed", "AMI 登录失败 (用户名或密码错误)", str(getattr(response, "message", "")))
    return manager


@dataclass
class CallReport:
    """What happened to one emulated call."""

    channel: str
    uniqueid: str
    context: str
    audio: str
    answered_by: str | None = None  # queue member interface that answered (AgentConnect), if any
    wait_s: float | None = None  # seconds in the queue before the agent answered (AgentConnect HoldTime)
    bot_uuid: str | None = None  # AudioSocket session id, when the call reached the speech bot
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


async def place_call(info: PbxInfo, audio: Path | None, *, caller: str = "13800138000", dtmf: str = "",
                     context: str = "hotline-inbound", audio_at: str = "bot", caller_wait_s: int = 30,
                     wait: bool = False, timeout_s: float = 120) -> CallReport:
    """Originate ``Local/s@test-caller/n`` into *context*; with *wait*, follow it on AMI until hang-up.

    The caller presses *dtmf* right after the answer and plays *audio* at once (``audio_at="start"``) or
    once the call has reached the speech bot (``"bot"``); it hangs up *caller_wait_s* seconds later.
    """
    if context not in CALL_CONTEXTS:
        raise PbxError("pbx_bad_context", f"不支持的呼入上下文：{context}", ", ".join(CALL_CONTEXTS))
    if dtmf and not all(c in "0123456789*#" for c in dtmf):
        raise PbxError("pbx_bad_dtmf", f"按键只能是 0-9、* 和 #：{dtmf}")
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
    hung_up = asyncio.Event()

    def on_event(_manager: Manager, event: Message) -> None:
        if event.get("Uniqueid") != uniqueid and event.get("Uniqueid") != uniqueid + ";2":
            return
        if event.event == "AgentConnect":
            report.answered_by = event.get("Interface") or event.get("MemberName")
            report.wait_s = float(event.get("HoldTime", 0))
        elif event.event == "UserEvent" and event.get("UserEvent") == "HotlineBot":
            report.bot_uuid = event.get("Uuid")
        elif event.event == "Hangup" and event.get("Uniqueid") == uniqueid:
            report.hangup_cause = event.get("Cause-txt")
            hung_up.set()

    manager.register_event("*", on_event)
    started = time.monotonic()
    try:
        response = await asyncio.wait_for(manager.send_action({
            "Action": "Originate", "Channel": "Local/s@test-caller/n", "Context": context,
            "Exten": CALL_CONTEXTS[context], "Priority": "1", "CallerID": f'"{caller}" <{caller}>',
            "Variable": variables, "ChannelId": uniqueid, "Async": "true",
        }), timeout_s)
        final = response[-1] if isinstance(response, list) else response
        if final.get("Response") != "Success":
            raise PbxError("pbx_originate_failed", "模拟呼叫发起失败", str(dict(final)))
        report.channel = final.get("Channel") or "Local/s@test-caller/n"
        if wait:
            try:
                await asyncio.wait_for(hung_up.wait(), timeout_s)
            except TimeoutError:
                raise PbxError("pbx_call_timeout", "等待通话结束超时", uniqueid) from None
            report.duration_s = round(time.monotonic() - started, 2)
    finally:
        manager.close()
    return report
