"""Tickets made from calls: a leader's call gives a leader-line ticket with the leader's name; the call log
gets the ticket number (by the call's Uniqueid, or by the bot session that took it)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivr.calllog import get_call, upsert_calls
from ivr.state import Call
from ivr.ticket_link import call_draft_fields, create_ticket_for_call, link_call_ticket, ticket_channel_for_call
from tests.ivr.callback_support import AGENT, MONDAY_10AM
from tickets.services import Actor, TicketDraft, create_ticket

LEADER = Actor("李明", "leader")


def call(uniqueid: str, **fields: object) -> Call:
    c = Call(uniqueid, uniqueid, f"PJSIP/trunk-{uniqueid}", "13912345678", "12345", MONDAY_10AM,
             answered_at=MONDAY_10AM + timedelta(seconds=20), recording=f"{uniqueid}.wav")
    for k, v in fields.items():
        setattr(c, k, v)
    return c


def draft(**fields: object) -> TicketDraft:
    return TicketDraft(**({"channel": "phone", "caller_phone": "13912345678",
                           "content": "小区门口的路灯坏了一个月，晚上出行不安全"} | fields))


async def test_leader_call_makes_a_leader_line_ticket_linked_to_the_call(
    sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session:
        await upsert_calls(session, [call("1741.1", answered_by="leader", leader_name="李明",
                                          agent_interface="PJSIP/6009")])
        row = await get_call(session, "1741.1")
        assert ticket_channel_for_call(row) == ("leader-line", "李明")
        assert (await call_draft_fields(session, "1741.1"))["channel"] == "leader-line"
        ticket = await create_ticket_for_call(session, draft(), LEADER, uniqueid="1741.1", now=MONDAY_10AM)
        assert (ticket.channel, ticket.leader_name, ticket.call_id) == ("leader-line", "李明", "1741.1")
        assert ticket.recording == "1741.1.wav"
        assert (await get_call(session, "1741.1")).ticket_no == ticket.ticket_no


async def test_agent_call_makes_a_phone_ticket(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session:
        await upsert_calls(session, [call("1741.2", answered_by="agent", agent_name="王话务")])
        assert ticket_channel_for_call(await get_call(session, "1741.2")) == ("phone", None)
        assert ticket_channel_for_call(None) == ("phone", None)
        ticket = await create_ticket_for_call(session, draft(leader_name="冒名"), AGENT, uniqueid="1741.2",
                                              now=MONDAY_10AM)
        assert (ticket.channel, ticket.call_id) == ("phone", "1741.2")
        assert (await get_call(session, "1741.2")).ticket_no == ticket.ticket_no


async def test_bot_ticket_is_linked_by_the_bot_session(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session:
        await upsert_calls(session, [call("1741.3", answered_at=None, bot_uuid="0b6f1c2e-bot")])
        ticket = await create_ticket(session, draft(channel="bot"), Actor("智能机器人", "bot"), now=MONDAY_10AM)
        assert await link_call_ticket(session, ticket.ticket_no, bot_uuid="0b6f1c2e-bot")
        assert (await get_call(session, "1741.3")).ticket_no == ticket.ticket_no
        assert not await link_call_ticket(session, ticket.ticket_no, bot_uuid="unknown")
