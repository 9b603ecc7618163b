"""Tables of this package: the call log (通话记录), the leader answering-day schedule (领导接听日), the
call-back attempts (回访外呼), the missed-call call-back tasks (漏接电话回拨) and the blocklist of nuisance callers
(恶意骚扰来电) with its audit events, transfers (转接), the audit of supervisors' listening (班长监听) and
the speech bots' load reports (语音机器人负载)."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Time,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from config.database import AwareDateTime, immutable, new_metadata


class Base(DeclarativeBase):
    metadata = new_metadata()


class CallRecord(Base):
    """One caller's call, keyed by the Asterisk Uniqueid of the caller's channel (written by upsert)."""

    __tablename__ = "ivr_call"
    __table_args__ = (  # an agent's live call: the console sends its transfers to that call's PBX
        Index(
            "ix_ivr_call_open_agent",
            "agent_interface",
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uniqueid: Mapped[str] = mapped_column(String(64), unique=True)
    # the PBX whose controller logged it (callcontrol.pbx; "" with one PBX): its resync closes only its own
    pbx: Mapped[str] = mapped_column(String(64), default="", server_default="")
    linkedid: Mapped[str] = mapped_column(String(64), index=True)
    channel: Mapped[str] = mapped_column(String(128), default="")
    caller_number: Mapped[str] = mapped_column(String(64), default="", index=True)
    dialled_number: Mapped[str] = mapped_column(String(64), default="")
    started_at: Mapped[datetime] = mapped_column(AwareDateTime(), index=True)
    answered_at: Mapped[datetime | None] = mapped_column(AwareDateTime(), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(AwareDateTime(), nullable=True)
    queue_wait_s: Mapped[float] = mapped_column(Float, default=0.0)
    # agent 坐席 / bot 机器人 / leader 领导 / abandoned 放弃 / callback 回访 / blocked 拒接（黑名单）; NULL while
    # undecided
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    answered_by: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # IVR menu choice (按键菜单): consult 政策咨询 / complaint 投诉求助·举报 / human 人工 / none
    menu: Mapped[str | None] = mapped_column(String(16), nullable=True)
    agent_interface: Mapped[str | None] = mapped_column(String(128), nullable=True)
    agent_name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    leader_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    leader_account: Mapped[str | None] = mapped_column(
        String(64), nullable=True, index=True
    )  # console username
    bot_uuid: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    redirected_to_bot: Mapped[bool] = mapped_column(Boolean, default=False)
    recording: Mapped[str | None] = mapped_column(String(255), nullable=True)
    ticket_no: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    # the end was not seen live: the call was absent from the channel list after a reconnect or restart
    closed_by_resync: Mapped[bool] = mapped_column(Boolean, default=False)
    # service levels (ivr.service_levels): the queue it waited in, where an abandon happened (menu 菜单 /
    # queue 排队 / ringing 振铃), a bot caller who asked for a person (requeued), the end of the agent's part
    # (AgentComplete) and the agent's wrap-up (话后整理) after it
    queue: Mapped[str | None] = mapped_column(String(64), nullable=True)
    abandoned_in: Mapped[str | None] = mapped_column(String(8), nullable=True)
    from_bot: Mapped[bool] = mapped_column(Boolean, default=False)
    talk_ended_at: Mapped[datetime | None] = mapped_column(AwareDateTime(), nullable=True)
    wrap_up_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    # the missed-call task (ivr_missed_call) this abandoned call was counted in: counted once, whatever replays
    missed_call_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(AwareDateTime())


class LeaderShift(Base):
    """A leader's answering window on one day (领导接听日); times are wall-clock in settings.timezone."""

    __tablename__ = "ivr_leader_shift"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date, index=True)
    start: Mapped[time] = mapped_column(Time)
    end: Mapped[time] = mapped_column(Time)
    leader_name: Mapped[str] = mapped_column(String(64))
    account: Mapped[str] = mapped_column(
        String(64), default=""
    )  # the leader's console username ("" for none)
    title: Mapped[str] = mapped_column(String(64), default="")
    department: Mapped[str] = mapped_column(String(128), default="")
    interface: Mapped[str] = mapped_column(String(128), index=True)
    # the PBX whose controller puts the leader into its queue (callcontrol.pbx; "" the default, with one PBX)
    pbx: Mapped[str] = mapped_column(String(64), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(AwareDateTime())


_OPEN = text("ended_at IS NULL")


class CallbackAttempt(Base):
    """One call-back (回访) call placed by the scheduler. At most one open attempt (``ended_at`` NULL) per
    number and per ticket: the partial unique indexes keep two controllers from ringing one citizen twice."""

    __tablename__ = "ivr_callback_attempt"
    __table_args__ = (
        Index(
            "ux_ivr_callback_attempt_open_number",
            "number",
            unique=True,
            sqlite_where=_OPEN,
            postgresql_where=_OPEN,
        ),
        Index(
            "ux_ivr_callback_attempt_open_ticket",
            "ticket_no",
            unique=True,
            sqlite_where=_OPEN,
            postgresql_where=_OPEN,
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # survey 回访 (ticket_no: the ticket) / missed 漏接回拨 (ticket_no: the task's key, ``missed-<id>``)
    kind: Mapped[str] = mapped_column(String(16), default="survey", server_default="survey")
    ticket_no: Mapped[str] = mapped_column(String(32), index=True)
    number: Mapped[str] = mapped_column(String(64))
    uniqueid: Mapped[str] = mapped_column(
        String(64), unique=True
    )  # ChannelId of the originated channel
    started_at: Mapped[datetime] = mapped_column(AwareDateTime(), index=True)
    ended_at: Mapped[datetime | None] = mapped_column(AwareDateTime(), nullable=True)
    # satisfied 满意 / basically_satisfied 基本满意 / unsatisfied 不满意 / unreachable 未接通; NULL: not counted
    # (never sent, or the outcome stayed unknown)
    result: Mapped[str | None] = mapped_column(String(24), nullable=True)
    reason: Mapped[str] = mapped_column(
        String(128), default=""
    )  # how it ended: digit, no_answer, busy …


class MissedCall(Base):
    """A missed-call call-back task (漏接电话回拨): the callers of one number who hung up unanswered on one local
    day, without a ticket. ``number`` is normalised; "" gathers the day's withheld or invalid numbers (counted,
    never called)."""

    __tablename__ = "ivr_missed_call"
    __table_args__ = (UniqueConstraint("number", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(64))
    day: Mapped[date] = mapped_column(Date, index=True)
    first_call: Mapped[str] = mapped_column(
        String(64)
    )  # Uniqueid of the day's first abandoned call
    first_call_at: Mapped[datetime] = mapped_column(AwareDateTime())
    calls: Mapped[int] = mapped_column(Integer, default=0)  # abandoned calls counted in this task
    # open 待回拨 / ringing 回拨中 / answered 已接听 / reached_agent 已转坐席 / unreachable 未接通 /
    # closed_by_recall 来电人已再次来电 / withheld 未显示号码（不回拨）
    state: Mapped[str] = mapped_column(String(24), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(AwareDateTime(), nullable=True)
    outcome: Mapped[str] = mapped_column(
        String(128), default=""
    )  # how the last attempt ended (no_answer …)
    # the call-back that reached an agent: the ticket the agent filed carries it as its call_id
    reached_call: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(AwareDateTime())
    updated_at: Mapped[datetime] = mapped_column(AwareDateTime())


BLOCK_REASON_MAX = 200
BLOCK_ACTOR_MAX = 64
_NOT_LIFTED = text("lifted_at IS NULL")


class BlockedCaller(Base):
    """A number on the blocklist (恶意骚扰来电): the dialplan asks the controller (FastAGI) and refuses its calls
    with a polite prompt until ``expires_at`` (NULL: permanent) or until it is lifted. At most one entry per
    number is not lifted (partial unique index); an expired one is closed when the number is added again."""

    __tablename__ = "blocked_callers"
    __table_args__ = (
        Index(
            "ux_blocked_callers_phone_not_lifted",
            "phone",
            unique=True,
            sqlite_where=_NOT_LIFTED,
            postgresql_where=_NOT_LIFTED,
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), index=True)  # normalised (tickets.phone)
    reason: Mapped[str] = mapped_column(String(BLOCK_REASON_MAX))
    expires_at: Mapped[datetime | None] = mapped_column(AwareDateTime(), nullable=True)
    created_by: Mapped[str] = mapped_column(String(BLOCK_ACTOR_MAX))
    created_at: Mapped[datetime] = mapped_column(AwareDateTime())
    lifted_at: Mapped[datetime | None] = mapped_column(AwareDateTime(), nullable=True)
    lifted_by: Mapped[str | None] = mapped_column(String(BLOCK_ACTOR_MAX), nullable=True)


class BlockedCallerEvent(Base):
    """An immutable audit event of the blocklist: who added, lifted or closed (expired) an entry, when, why."""

    __tablename__ = "blocked_caller_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    blocked_id: Mapped[int] = mapped_column(
        ForeignKey("blocked_callers.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(AwareDateTime())
    actor: Mapped[str] = mapped_column(String(BLOCK_ACTOR_MAX))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))  # add 加入 / lift 解除 / expire 到期关闭
    note: Mapped[str] = mapped_column(String(BLOCK_REASON_MAX), default="")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


immutable(BlockedCallerEvent, "blocklist audit event")


TRANSFER_TARGET_MAX = 128


class CallTransfer(Base):
    """One transfer (转接) of a call by an agent: who, to whom, when, how, and how it ended. The caller's channel
    keeps its Uniqueid, so the transferred call keeps its ticket (``ticket_no``)."""

    __tablename__ = "call_transfers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uniqueid: Mapped[str] = mapped_column(String(64), index=True)  # the caller's channel (ivr_call)
    ticket_no: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    mode: Mapped[str] = mapped_column(String(16))  # blind 直接转接 / three_way 三方通话
    target_kind: Mapped[str] = mapped_column(
        String(16)
    )  # agent 坐席 / department 承办单位 / emergency 应急
    target: Mapped[str] = mapped_column(String(TRANSFER_TARGET_MAX))  # number or agent username
    target_label: Mapped[str] = mapped_column(String(TRANSFER_TARGET_MAX), default="")
    by_user: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(AwareDateTime())
    # dialling 呼叫中 / answered 已接通 / busy 忙 / no_answer 无应答 / failed 失败
    outcome: Mapped[str] = mapped_column(String(16), default="dialling")
    outcome_at: Mapped[datetime | None] = mapped_column(AwareDateTime(), nullable=True)


class SupervisionAction(Base):
    """An immutable audit row of a supervisor's listen (监听), whisper (密语) or barge (强插) on an agent's call."""

    __tablename__ = "supervision_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(AwareDateTime(), index=True)
    supervisor: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))  # listen / whisper / barge
    agent: Mapped[str] = mapped_column(String(64))  # the agent's username
    uniqueid: Mapped[str] = mapped_column(String(64))  # the caller's channel of the spied call
    notified: Mapped[bool] = mapped_column(
        Boolean, default=False
    )  # the agent was told (centre policy)


immutable(SupervisionAction, "supervision audit row")


class BotHost(Base):
    """A speech bot's load report (语音机器人负载), one row per AudioSocket address, written by the bot itself."""

    __tablename__ = "bot_hosts"

    # host:port, as in [bot] hosts
    address: Mapped[str] = mapped_column(String(128), primary_key=True)
    active_sessions: Mapped[int] = mapped_column(Integer, default=0)
    capacity: Mapped[int] = mapped_column(Integer)  # asr.audiosocket.max_sessions
    heartbeat_at: Mapped[datetime] = mapped_column(AwareDateTime())
