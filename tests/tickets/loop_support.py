"""Shared by the ticket-core tests (imported, not a conftest: tests/tickets/ is shared with other suites)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.settings_support import SETTINGS
from tickets.models import Ticket, TicketEvent
from tickets.services import Actor, TicketDraft, apply, upsert_departments

TZ = ZoneInfo("Asia/Shanghai")
MONDAY_10AM = datetime(2025, 3, 3, 10, 0, tzinfo=TZ)  # an ordinary working day

AGENT = Actor("王话务", "agent")
DISPATCHER = Actor("李派单", "dispatcher")
LEADER = Actor("赵主任", "leader")
HANDLER = Actor("张承办", "handler", department="zjj")  # 住建局
OTHER_HANDLER = Actor("钱承办", "handler", department="hbj")  # 环保局
SYSTEM = Actor("回访机器人", "system")
CALLER = Actor("孙女士", "caller")
DEPARTMENTS = [("zjj", "区住房和城乡建设局"), ("hbj", "区生态环境局"), ("cgj", "区城市管理局")]
# Requests for the repeat (重复件) checks: the same matter in other words, and another matter.
GARBAGE = "幸福小区门口的垃圾堆积好几天了，一直没人清理，臭味很大"
GARBAGE_AGAIN = "我们幸福小区门口垃圾好几天没人清理了，味道很臭"
NOISE = "附近工地夜间施工噪音太大，严重影响休息"


@pytest.fixture
async def db(sessionmaker: async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:
    """The fresh database with the sample departments."""
    async with sessionmaker() as session:
        await upsert_departments(session, DEPARTMENTS)
    return sessionmaker


@pytest.fixture
async def session(db: async_sessionmaker[AsyncSession]) -> Any:
    async with db() as s:
        yield s


@pytest.fixture
def draft() -> Callable[..., TicketDraft]:
    def make(**overrides: Any) -> TicketDraft:
        fields: dict[str, Any] = {
            "channel": "phone",
            "caller_phone": "13812345678",
            "caller_name": "孙女士",
            "content": "幸福小区门口的垃圾堆积好几天了，一直没人清理，臭味很大",
            "address": "城关区幸福路12号幸福小区",
            "district": "城关区",
            "street": "幸福路街道",
            "category": "生态环境/垃圾清运",
            "kind": "投诉",
        }
        return TicketDraft(**(fields | overrides))

    return make


async def step(
    session: AsyncSession, ticket: Ticket, action: str, actor: Actor, **kw: Any
) -> Ticket:
    """Apply ``action`` at the ticket's current version."""
    kw.setdefault("now", MONDAY_10AM)
    kw.setdefault("settings", SETTINGS)
    return await apply(
        session, ticket.ticket_no, action, actor, expected_version=ticket.version, **kw
    )


async def count(session: AsyncSession, model: type[Any]) -> int:
    return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def event_count(session: AsyncSession) -> int:
    return await count(session, TicketEvent)
