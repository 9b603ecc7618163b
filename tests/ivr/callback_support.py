"""Shared by the call-back tests (unit and e2e): tickets brought to 核验通过 (waiting for 回访)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.settings_support import SETTINGS
from tickets.services import Actor, TicketDraft, apply, create_ticket, upsert_departments

TZ = ZoneInfo("Asia/Shanghai")
MONDAY_10AM = datetime(
    2025, 3, 3, 10, 0, tzinfo=TZ
)  # an ordinary working day, inside the call-back hours

AGENT = Actor("王话务", "agent")
DISPATCHER = Actor("李派单", "dispatcher")
HANDLER = Actor("张承办", "handler", department="zjj")


async def verified_ticket(
    sessionmaker: async_sessionmaker[AsyncSession], phone: str, now: datetime = MONDAY_10AM
) -> str:
    """A ticket from ``phone`` taken through the loop up to 核验通过; returns its number."""
    async with sessionmaker() as session:
        await upsert_departments(session, [("zjj", "区住房和城乡建设局")])
        draft = TicketDraft(
            channel="phone",
            caller_phone=phone,
            content="小区门口路灯坏了一个月没人修",
            kind="求助",
            district="城关区",
        )
        t = await create_ticket(session, draft, AGENT, now=now, settings=SETTINGS)
        for action, actor, fields in (
            ("review", DISPATCHER, {}),
            ("dispatch", DISPATCHER, {"lead_department": "zjj"}),
            ("sign", HANDLER, {}),
            ("reply", HANDLER, {"reply": "路灯已修复"}),
            ("verify", DISPATCHER, {}),
        ):
            t = await apply(
                session,
                t.ticket_no,
                action,
                actor,
                expected_version=t.version,
                now=now,
                settings=SETTINGS,
                **fields,
            )
        return t.ticket_no
