"""The missed-call call-back list (漏接回拨): tasks of the last days with their outcome and the ticket the agent
filed; for the desks that call citizens back only."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from ivr.calllog import CallRows, call_rows, write_entry
from ivr.models import MissedCall
from tests.agent_console.harness import Console
from tests.agent_console.seed_cockpit import move_console_to
from tests.ivr.callback_support import AGENT, MONDAY_10AM, TZ
from tests.ivr.test_missed_calls import abandoned
from tickets.services import TicketDraft, create_ticket


async def test_missed_calls_list_shows_outcomes_and_the_ticket(console: Console) -> None:
    async with console.sessionmaker() as session:
        calls = [
            abandoned("1.1"),
            abandoned("1.2", number="13800138000"),
            abandoned("1.3", number=""),
        ]
        await write_entry(session, CallRows(tuple(call_rows(calls, MONDAY_10AM))), TZ, MONDAY_10AM)
        await session.execute(
            update(MissedCall)
            .where(MissedCall.number == "13800138000")
            .values(
                state="reached_agent",
                attempts=1,
                outcome="missed: reached_agent",
                reached_call="callback-x",
            )
        )
        await session.commit()
        draft = TicketDraft(
            channel="phone",
            caller_phone="13800138000",
            content="回拨时反映小区停水两天了",
            call_id="callback-x",
        )
        ticket = await create_ticket(
            session, draft, AGENT, now=MONDAY_10AM, settings=console.settings
        )
    move_console_to(console, MONDAY_10AM + timedelta(hours=2))
    agent = await console.logged_in("agent")
    resp = await agent.request("GET", "/api/v1/console/missed-calls")
    assert resp.status == 200, await resp.text()
    tasks = {t["number"]: t for t in (await resp.json())["tasks"]}
    assert (tasks["13912345678"]["state"], tasks["13912345678"]["calls"]) == ("open", 1)
    assert (tasks["13800138000"]["state_label"], tasks["13800138000"]["ticket_no"]) == (
        "已转坐席",
        ticket.ticket_no,
    )
    assert (tasks[""]["state"], tasks[""]["calls"]) == ("withheld", 1)
    page = await agent.request("GET", "/missed-calls")
    html = await page.text()
    assert (
        page.status == 200
        and f'href="/tickets/{ticket.ticket_no}"' in html
        and "未显示号码" in html
    )
    assert (
        await (await console.logged_in("leader")).request("GET", "/api/v1/console/missed-calls")
    ).status == 403
    move_console_to(console, MONDAY_10AM + timedelta(days=8))  # older than the 7 days shown
    later = await console.logged_in("dispatcher")
    assert (await (await later.request("GET", "/api/v1/console/missed-calls")).json())[
        "tasks"
    ] == []
