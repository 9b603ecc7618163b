"""Tables of this package: console accounts, sessions, failed logins, account audit, live events, the cockpit's
shared cache."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Date, ForeignKey, Index, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from config.database import AwareDateTime, new_metadata


class Base(DeclarativeBase):
    metadata = new_metadata()


class User(Base):
    """A console account (坐席/派单/承办/领导/网格/管理员 账号)."""

    __tablename__ = "console_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    department: Mapped[str | None] = mapped_column(String(128))  # 承办单位 of a handler
    grid: Mapped[str | None] = mapped_column(String(128))  # 网格 of a grid worker
    password_hash: Mapped[str] = mapped_column(String(256))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(AwareDateTime())
    updated_at: Mapped[datetime] = mapped_column(AwareDateTime())


class UserSession(Base):
    """A login session; only the SHA-256 of its random token is stored."""

    __tablename__ = "console_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(
        String(64)
    )  # synchronizer token for writes in this session
    user_id: Mapped[int] = mapped_column(
        ForeignKey("console_users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(AwareDateTime())
    expires_at: Mapped[datetime] = mapped_column(AwareDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(AwareDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))

    user: Mapped[User] = relationship(lazy="joined")


class LoginFailure(Base):
    """A login attempt that has not succeeded: written before its password is checked, deleted if it logs in;
    counted per username and per address for throttling (``agent_console.security.LoginThrottle``)."""

    __tablename__ = "console_login_failures"
    __table_args__ = (Index("ix_console_login_failures_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(AwareDateTime())
    username: Mapped[str] = mapped_column(String(64), index=True)
    ip: Mapped[str] = mapped_column(String(64), index=True)


class AuditEntry(Base):
    """Who did what to which account, and when (logins, logouts, account changes). Never updated."""

    __tablename__ = "console_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(AwareDateTime(), index=True)
    actor: Mapped[str | None] = mapped_column(String(64))  # username, or None for the command line
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str | None] = mapped_column(String(128))
    ip: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class LiveEvent(Base):
    """One live update published on PostgreSQL (``agent_console.hub_pg``): the NOTIFY names its id, every console
    process reads it from here. Kept ``console.live_events_keep_s`` seconds."""

    __tablename__ = "console_live_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    topic: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(64))  # the topic's name: queue, screenpop, user, …
    origin: Mapped[str] = mapped_column(String(32))  # the publishing hub, which delivered it itself
    payload: Mapped[Any] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(AwareDateTime(), index=True)


class ConsoleCommand(Base):
    """A console's call-control command for a controller (``agent_console.command_channel``): a console worker
    inserts it and NOTIFYs, one controller claims it (``new`` → ``claimed``), runs it on its call control and
    stores the outcome (``done`` with ``result``, ``failed`` with the coded error); an unclaimed command the
    console stopped waiting for is ``expired`` and never runs. Times are the database server's."""

    __tablename__ = "console_commands"
    __table_args__ = (Index("ix_console_commands_state_target", "state", "target"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))  # the Switchboard method: transfer, spy, board, …
    arguments: Mapped[dict[str, Any]] = mapped_column(JSON)
    # the PBX whose controller runs it; "" any controller
    target: Mapped[str] = mapped_column(String(64), default="")
    state: Mapped[str] = mapped_column(String(16), default="new")
    result: Mapped[Any] = mapped_column(JSON, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(String(500), nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(AwareDateTime(), index=True)
    expires_at: Mapped[datetime] = mapped_column(AwareDateTime())  # unclaimed after this: never run
    claimed_at: Mapped[datetime | None] = mapped_column(AwareDateTime(), nullable=True)
    done_at: Mapped[datetime | None] = mapped_column(AwareDateTime(), nullable=True)


class ConsoleController(Base):
    """A controller's announcement of its PBX on the command channel: its executor writes the heartbeat every
    ``callcontrol.heartbeat_s`` and deletes the row when it stops; the consoles send the board and the softphones'
    passwords to every PBX announced within three heartbeats. Times are the database server's."""

    __tablename__ = "console_controllers"

    pbx: Mapped[str] = mapped_column(
        String(64), primary_key=True
    )  # callcontrol.pbx; "" with one PBX
    name: Mapped[str] = mapped_column(String(64))  # host:pid of the controller that wrote it last
    heartbeat_at: Mapped[datetime] = mapped_column(AwareDateTime())


class CockpitCacheEntry(Base):
    """A cockpit panel as last computed, shared by every console worker on PostgreSQL
    (``agent_console.cockpit_cache_pg``): its JSON, kept until ``expires_at`` then recomputed. The key names
    the panel, its period and the local day; rows of past days are pruned. Times are the database server's."""

    __tablename__ = "cockpit_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # panel:period:YYYY-MM-DD
    day: Mapped[date] = mapped_column(Date, index=True)
    value: Mapped[Any] = mapped_column(JSON)
    computed_at: Mapped[datetime] = mapped_column(AwareDateTime())
    expires_at: Mapped[datetime] = mapped_column(AwareDateTime())
