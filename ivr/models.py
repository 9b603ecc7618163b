"""Tables of this package: the call log (通话记录), the leader answering-day schedule (领导接听日), the
call-back attempts (回访外呼) and the missed-call call-back tasks (漏接电话回拨)."""

from __future__ import annotations

from datetime import date, datetime, time

from sqlalchemy import Boolean, Date, Float, Index, Integer, String, Time, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from config.database import AwareDateTime, new_metadata


class Base(DeclarativeBase):
    metadata = new_metadata()


class CallRecord(Base):
    """One caller's call, keyed by the Asterisk Uniqueid of the caller's channel (written by upsert)."""

    __tablename__ = "ivr_call"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uniqueid: Mapped[str] = mapped_column(String(64), unique=True)
    linkedid: Mapped[str] = mapped_column(String(64), index=True)
    channel: Mapped[str] = mapped_column(String(128), default="")
    caller_number: Mapped[str] = mapped_column(String(64), default="", index=True)
    dialled_number: Mapped[str] = mapped_column(String(64), default="")
    started_at: Mapped[datetime] = mapped_column(AwareDateTime(), index=True)
    answered_at: Mapped[datetime | None] = mapped_column(AwareDateTime(), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(AwareDateTime(), nullable=True)
    queue_wait_s: Mapped[float] = mapped_column(Float, default=0.0)
    # agent 坐席 / bot 机器人 / leader 领导 / abandoned 放弃 / callback 回访; NULL while undecided
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
