"""Console accounts and login sessions: argon2 passwords, hashed session tokens, audit of every change.

Each public coroutine is one transaction on the session it is given (it commits); a login is two, with the
password checked in between on threads of its own while no database connection is held.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agent_console.errors import Conflict, ConsoleError, InvalidInput, NotFound
from agent_console.models import AuditEntry, User, UserSession
from agent_console.roles import Role
from agent_console.schemas import UserCreate, UserUpdate
from agent_console.security import LoginLimits, LoginThrottle, new_token
from config.settings import ConsoleSettings

LAST_SEEN_RESOLUTION = timedelta(
    minutes=1
)  # last_seen_at is written at most this often per session
T = TypeVar("T")


class InvalidCredentials(ConsoleError):
    status = 401
    code = "console.invalid_credentials"
    default_message = "用户名或密码错误"


class PasswordCheckBusy(ConsoleError):
    status = 503
    code = "console.password_check_busy"
    default_message = "登录请求过多，请稍后再试"


class RevocationListener(Protocol):
    """Told after sessions were revoked: one session, or every session of one account."""

    def __call__(self, *, user_id: int | None = None, session_id: int | None = None) -> object: ...


class PasswordHashing:
    """Argon2 on ``workers`` threads of its own, not the default executor the speech bot decodes on.

    A login takes one of ``workers + queue`` places before it touches the database; beyond that it is
    refused at once (:class:`PasswordCheckBusy`) instead of piling up. A cancelled login's hash leaves the
    queue with it (one already running finishes on its thread).
    """

    def __init__(self, workers: int, queue: int) -> None:
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="console-argon2")
        self._places = workers + queue
        self._taken = 0

    @contextmanager
    def place(self) -> Iterator[None]:
        if self._taken >= self._places:
            raise PasswordCheckBusy()
        self._taken += 1
        try:
            yield
        finally:
            self._taken -= 1

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


@dataclass(frozen=True)
class Origin:
    """Who acts and from where, for the audit trail. ``actor`` None means the command line."""

    actor: str | None = None
    ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True)
class Login:
    user: User
    session: UserSession
    token: str  # the raw token for the cookie; only its hash is stored


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def record_audit(
    db: AsyncSession, origin: Origin, action: str, target: str | None, now: datetime, **detail: Any
) -> None:
    db.add(
        AuditEntry(
            at=now, actor=origin.actor, action=action, target=target, ip=origin.ip, detail=detail
        )
    )


async def find_user(db: AsyncSession, username: str) -> User | None:
    return (await db.execute(select(User).where(User.username == username))).scalar_one_or_none()


async def list_users(db: AsyncSession) -> list[User]:
    return list((await db.execute(select(User).order_by(User.role, User.username))).scalars())


class Accounts:
    """Account and session services, configured by the ``[console]`` settings."""

    def __init__(self, settings: ConsoleSettings) -> None:
        self.hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )
        self.min_password = settings.password_min_length
        self.session_ttl = timedelta(seconds=settings.session_ttl_s)
        self.throttle = LoginThrottle(LoginLimits.of(settings))
        self.hashing = PasswordHashing(settings.login_hash_workers, settings.login_hash_queue)
        self._dummy_hash = self.hasher.hash(
            secrets.token_hex(16)
        )  # equalises time for unknown usernames
        self._revocation_listeners: list[RevocationListener] = []

    def on_revoke(self, listener: RevocationListener) -> None:
        """Call ``listener`` after sessions were revoked (logout, deactivation, role or placement change)."""
        self._revocation_listeners.append(listener)

    def _revoked(self, *, user_id: int | None = None, session_id: int | None = None) -> None:
        for listener in self._revocation_listeners:
            listener(user_id=user_id, session_id=session_id)

    # --- passwords -------------------------------------------------------------------------------------
    def check_password_rules(self, username: str, password: str) -> None:
        if len(password) < self.min_password:
            raise InvalidInput(
                f"密码至少需要 {self.min_password} 个字符",
                details=[{"field": "password", "code": "too_short", "message": "太短"}],
            )
        if password.strip().lower() == username.lower():
            raise InvalidInput(
                "密码不能与用户名相同",
                details=[
                    {"field": "password", "code": "same_as_username", "message": "与用户名相同"}
                ],
            )

    async def _hash(self, password: str) -> str:
        return await self.hashing.run(self.hasher.hash, password)

    async def _verify(self, stored: str, password: str) -> bool:
        return await self.hashing.run(self._matches, stored, password)

    def _matches(self, stored: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    # --- accounts --------------------------------------------------------------------------------------
    async def create_user(
        self, db: AsyncSession, new: UserCreate, origin: Origin, now: datetime
    ) -> User:
        username = new.username.lower()
        self.check_password_rules(username, new.password)
        if await find_user(db, username) is not None:
            raise Conflict(f"用户名 {username} 已存在")
        user = User(
            username=username,
            display_name=new.display_name,
            role=new.role.value,
            department=new.department or None,
            grid=new.grid or None,
            password_hash=await self._hash(new.password),
            active=True,
            created_at=now,
            updated_at=now,
        )
        db.add(user)
        await record_audit(
            db,
            origin,
            "user.create",
            username,
            now,
            role=user.role,
            department=user.department,
            grid=user.grid,
            display_name=user.display_name,
        )
        await db.commit()
        return user

    async def update_user(
        self, db: AsyncSession, username: str, changes: UserUpdate, origin: Origin, now: datetime
    ) -> User:
        user = await find_user(db, username.lower())
        if user is None:
            raise NotFound(f"用户 {username} 不存在")
        fields = changes.model_dump(exclude_unset=True)
        password = fields.pop("password", None)
        demotes = fields.get("active") is False or fields.get("role", user.role) != user.role
        if origin.actor == user.username and demotes:
            raise Conflict("不能停用自己的账号或更改自己的角色")
        after = {k: fields.get(k, getattr(user, k)) for k in ("role", "department", "grid")}
        if after["role"] == Role.HANDLER and not after["department"]:
            raise InvalidInput("承办人必须指定承办单位")
        if after["role"] == Role.GRID and not after["grid"]:
            raise InvalidInput("网格员必须指定网格")
        if password is not None:
            self.check_password_rules(user.username, password)
        changed = sorted(k for k, v in fields.items() if getattr(user, k) != v)
        for key in changed:
            setattr(user, key, fields[key])
        if password is not None:
            user.password_hash = await self._hash(password)
            changed.append("password")
        if not changed:
            return user
        user.updated_at = now
        revoke = bool(set(changed) & {"role", "department", "grid", "password", "active"})
        if revoke:
            await self._revoke_all(db, user.id, now)
        await record_audit(
            db,
            origin,
            "user.update",
            user.username,
            now,
            fields=changed,
            **{k: fields[k] for k in changed if k != "password"},
        )
        await db.commit()
        if revoke:
            self._revoked(user_id=user.id)
        return user

    # --- sessions --------------------------------------------------------------------------------------
    async def login(
        self, db: AsyncSession, username: str, password: str, origin: Origin, now: datetime
    ) -> Login:
        """Count the attempt, check the password and open a session.

        The attempt is counted (committed) before the password is checked, and the database connection is
        given back while Argon2 runs. Raises PasswordCheckBusy (503) at once when too many logins wait for a
        hashing thread, TooManyRequests (429) past a limit (see :class:`~agent_console.security.LoginThrottle`),
        InvalidCredentials (401) on a wrong name or password.
        """
        with self.hashing.place():
            return await self._login(db, username, password, origin, now)

    async def _login(
        self, db: AsyncSession, username: str, password: str, origin: Origin, now: datetime
    ) -> Login:
        username = username.strip().lower()
        ip = origin.ip or "unknown"
        user = await find_user(db, username)
        stored = user.password_hash if user else self._dummy_hash
        attempt = await self.throttle.admit(db, username, ip, now)
        await db.commit()  # no connection is held while the password is checked
        ok = await self._verify(stored, password)
        rehashed = (
            await self._hash(password) if ok and self.hasher.check_needs_rehash(stored) else None
        )
        reason = "unknown_user" if user is None else None if ok else "wrong_password"
        if user is not None and reason is None:
            await db.refresh(
                user
            )  # deactivated, or given another password, while this one was checked?
            reason = (
                "inactive"
                if not user.active
                else None
                if user.password_hash == stored
                else "password_changed"
            )
        if user is None or reason is not None:
            await record_audit(
                db,
                Origin(None, origin.ip, origin.user_agent),
                "login.failure",
                username,
                now,
                reason=reason,
            )
            await db.commit()
            raise InvalidCredentials()
        if rehashed is not None:
            user.password_hash = rehashed
        await self.throttle.succeeded(db, attempt)
        token = new_token()
        session = UserSession(
            token_hash=hash_token(token),
            csrf_token=new_token(),
            user_id=user.id,
            user=user,
            created_at=now,
            expires_at=now + self.session_ttl,
            last_seen_at=now,
            ip=origin.ip,
            user_agent=(origin.user_agent or "")[:512] or None,
        )
        db.add(session)
        await record_audit(
            db, Origin(user.username, origin.ip, origin.user_agent), "login", user.username, now
        )
        await db.commit()
        return Login(user=user, session=session, token=token)

    async def resolve(self, db: AsyncSession, token: str, now: datetime) -> UserSession | None:
        """The live session of a cookie token, or None when unknown, expired, revoked or its user inactive."""
        stmt = select(UserSession).where(UserSession.token_hash == hash_token(token))
        session = (await db.execute(stmt)).scalar_one_or_none()
        if (
            session is None
            or session.revoked_at is not None
            or session.expires_at <= now
            or not session.user.active
        ):
            return None
        if now - session.last_seen_at >= LAST_SEEN_RESOLUTION:
            session.last_seen_at = now
            await db.commit()
        return session

    async def logout(
        self, db: AsyncSession, session_id: int, origin: Origin, now: datetime
    ) -> None:
        """Revoke one session server-side; its cookie is worthless afterwards."""
        await db.execute(
            update(UserSession)
            .where(UserSession.id == session_id, UserSession.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        await record_audit(db, origin, "logout", origin.actor, now)
        await db.commit()
        self._revoked(session_id=session_id)

    async def _revoke_all(self, db: AsyncSession, user_id: int, now: datetime) -> None:
        await db.execute(
            update(UserSession)
            .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
            .values(revoked_at=now)
        )
