"""Leader answering days (领导接听日): the schedule's service functions and the queue-member reconciler.

A leader on duty is a member of the hotline queue with ``leader_penalty`` (0): Asterisk rings the lowest
penalty first and moves on to the agents (``agent_penalty``, 1) only while every leader is busy or
unreachable, so leaders take calls first without changing the queue's strategy (a separate leader queue
would need dialplan changes and would make callers wait for a busy leader). After a restart the reconciler
recognises leader members by their scheduled endpoint and penalty, so it never touches other members.

A city centre runs several Asterisks, one controller each: a window names its PBX (``callcontrol.pbx``; "" the
default), and only that PBX's controller adds the leader, so the centre's views count the leader once. Any
controller still removes a leader member it finds at ``leader_penalty`` outside its own windows (one added
before windows had a PBX, or the window moved to another PBX).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from config.errors import CodedError
from ivr.ami import has_control_characters
from ivr.models import LeaderShift
from ivr.state import Member

INTERFACE_RE = re.compile(r"(PJSIP|SIP|IAX2|DAHDI|Local)/[^\s,|\x00-\x1f\x7f-\x9f]+")
ACCOUNT_RE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")  # a console username
PBX_MAX = 64  # as callcontrol.pbx


class LeaderScheduleError(CodedError):
    """A schedule edit refused."""

    code = "leader.invalid"


class InvalidShift(LeaderScheduleError):
    code = "leader.invalid_shift"


class OverlappingShift(LeaderScheduleError):
    code = "leader.overlap"


class ShiftNotFound(LeaderScheduleError):
    code = "leader.not_found"


@dataclass(frozen=True)
class ShiftInput:
    day: date
    start: time
    end: time
    leader_name: str
    interface: str
    title: str = ""
    department: str = ""
    account: str = (
        ""  # the leader's console account, whose 领导接听 page shows the calls of this window
    )
    pbx: str = ""  # the PBX whose controller adds the leader (callcontrol.pbx; "" the default)


def validate_shift(shift: ShiftInput) -> ShiftInput:
    """Trimmed fields, or InvalidShift. Names reach Asterisk as the queue's MemberName: no line breaks or other
    control characters (the AMI client refuses them too)."""
    name, title, department = (
        shift.leader_name.strip(),
        shift.title.strip(),
        shift.department.strip(),
    )
    interface, account, pbx = shift.interface.strip(), shift.account.strip(), shift.pbx.strip()
    if not name:
        raise InvalidShift("领导姓名不能为空")
    for label, value in (("领导姓名", name), ("职务", title), ("所在单位", department)):
        if has_control_characters(value):
            raise InvalidShift(f"{label}含有换行或控制字符")
    if len(pbx) > PBX_MAX or has_control_characters(pbx):
        raise InvalidShift(f"PBX 名称不正确：{shift.pbx!r}")
    if account and not ACCOUNT_RE.fullmatch(account):
        raise InvalidShift(f"控制台账号格式不正确：{shift.account!r}")
    if not INTERFACE_RE.fullmatch(interface):
        raise InvalidShift(
            f"接听终端格式不正确：{shift.interface!r}（例如 PJSIP/6009 或 Local/6009@test-agent/n）"
        )
    if shift.end <= shift.start:
        raise InvalidShift(f"结束时间 {shift.end:%H:%M} 必须晚于开始时间 {shift.start:%H:%M}")
    return ShiftInput(
        shift.day, shift.start, shift.end, name, interface, title, department, account, pbx
    )


async def add_shift(
    session: AsyncSession, shift: ShiftInput, *, now: datetime | None = None
) -> LeaderShift:
    """Add a window; refuses end ≤ start, a bad interface, and overlap with another window of the same endpoint
    (on any PBX: one leader answers on one PBX at a time)."""
    shift = validate_shift(shift)
    clash = await session.scalar(
        select(LeaderShift)
        .where(
            LeaderShift.day == shift.day,
            LeaderShift.interface == shift.interface,
            LeaderShift.start < shift.end,
            LeaderShift.end > shift.start,
        )
        .limit(1)
    )
    if clash is not None:
        raise OverlappingShift(
            f"{shift.interface} 在 {shift.day} {clash.start:%H:%M}–{clash.end:%H:%M} 已安排 {clash.leader_name} 接听"
        )
    row = LeaderShift(
        day=shift.day,
        start=shift.start,
        end=shift.end,
        leader_name=shift.leader_name,
        account=shift.account,
        title=shift.title,
        department=shift.department,
        interface=shift.interface,
        pbx=shift.pbx,
        created_at=now or datetime.now(UTC),
    )
    session.add(row)
    await session.commit()
    return row


async def list_shifts(
    session: AsyncSession, *, day_from: date | None = None, day_to: date | None = None
) -> list[LeaderShift]:
    query = select(LeaderShift).order_by(LeaderShift.day, LeaderShift.start, LeaderShift.id)
    if day_from is not None:
        query = query.where(LeaderShift.day >= day_from)
    if day_to is not None:
        query = query.where(LeaderShift.day <= day_to)
    return list((await session.scalars(query)).all())


async def remove_shift(session: AsyncSession, shift_id: int) -> LeaderShift:
    row = await session.get(LeaderShift, shift_id)
    if row is None:
        raise ShiftNotFound(f"没有编号为 {shift_id} 的领导接听安排")
    await session.delete(row)
    await session.commit()
    return row


async def active_shifts(
    session: AsyncSession, now: datetime, tz: ZoneInfo, pbx: str | None = None
) -> list[LeaderShift]:
    """Windows open at ``now`` (start inclusive, end exclusive, wall-clock in ``tz``) on PBX ``pbx`` (None: on
    any PBX)."""
    local = now.astimezone(tz)
    clock = local.time().replace(tzinfo=None)
    query = select(LeaderShift).where(
        LeaderShift.day == local.date(), LeaderShift.start <= clock, LeaderShift.end > clock
    )
    if pbx is not None:
        query = query.where(LeaderShift.pbx == pbx)
    rows = await session.scalars(query.order_by(LeaderShift.start))
    return list(rows.all())


async def scheduled_interfaces(session: AsyncSession, now: datetime, tz: ZoneInfo) -> set[str]:
    """Leader endpoints scheduled yesterday, today or tomorrow (local), on any PBX: the members the reconciler may
    remove."""
    today = now.astimezone(tz).date()
    rows = await session.scalars(
        select(LeaderShift.interface)
        .where(LeaderShift.day.between(today - timedelta(days=1), today + timedelta(days=1)))
        .distinct()
    )
    return set(rows.all())


@dataclass(frozen=True)
class LeaderOnDuty:
    interface: str
    member_name: str  # MemberName shown in the queue: "张三（区长）"
    leader_name: str
    account: str = ""


@dataclass(frozen=True)
class LeaderPlan:
    """Queue changes that make the queue's leader members match the windows open now."""

    add: tuple[LeaderOnDuty, ...]
    remove: tuple[str, ...]  # interfaces


def on_duty(shifts: Iterable[LeaderShift]) -> list[LeaderOnDuty]:
    seen: dict[str, LeaderOnDuty] = {}
    for s in shifts:
        label = f"{s.leader_name}（{s.title}）" if s.title else s.leader_name
        seen.setdefault(s.interface, LeaderOnDuty(s.interface, label, s.leader_name, s.account))
    return list(seen.values())


def plan(
    duty: Iterable[LeaderOnDuty],
    members: Mapping[str, Member],
    leader_penalty: int,
    leader_interfaces: Collection[str],
) -> LeaderPlan:
    """Add leaders on duty that are missing (or present with another penalty: removed and added again);
    remove leader members whose window is closed. A member counts as a leader's only when its interface is
    a scheduled leader endpoint (``leader_interfaces``) and it has ``leader_penalty``: members added by anyone
    else are never touched."""
    wanted = {d.interface: d for d in duty}
    add = tuple(
        d for i, d in wanted.items() if i not in members or members[i].penalty != leader_penalty
    )
    remove = tuple(
        i
        for i, m in members.items()
        if (i in wanted and m.penalty != leader_penalty)
        or (i not in wanted and i in leader_interfaces and m.penalty == leader_penalty)
    )
    return LeaderPlan(add, remove)
