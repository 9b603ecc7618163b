"""Ticket lists and searches for the console: filters, keyset pagination, the caller's history."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.settings_support import SETTINGS
from tests.tickets.loop_support import AGENT, DISPATCHER, MONDAY_10AM, step
from tickets.errors import InvalidInput
from tickets.queries import caller_history, list_tickets
from tickets.services import create_ticket
from tickets.warnings import scan_warnings

HOUR = timedelta(hours=1)


async def seven(session, draft) -> list:
    """Seven tickets an hour apart (oldest first) with different callers, places, categories and departments."""
    specs = [
        dict(
            caller_phone="13800000001",
            content="楼道灯坏了",
            category="城乡建设/道路照明",
            district="城关区",
        ),
        dict(
            caller_phone="13800000002",
            content="噪音扰民_夜间施工",
            category="生态环境/噪声污染",
            district="七里河区",
        ),
        dict(
            caller_phone="13800000001",
            content="楼道灯还是坏的",
            category="城乡建设",
            district="城关区",
        ),
        dict(
            caller_phone="0931-1234567",
            content="医保报销比例咨询",
            category="健康医疗/医保报销",
            district="西固区",
            kind="咨询",
        ),
        dict(
            caller_phone="13800000003",
            content="垃圾清运不及时 100%没人管",
            category="生态环境/垃圾清运",
            district="七里河区",
        ),
        dict(
            caller_phone="13800000004",
            content="公交线路调整建议",
            category="交通出行/公交地铁",
            district="城关区",
            kind="建议",
        ),
        dict(
            caller_phone="13800000005",
            content="小区停车位被占",
            category="交通出行/停车管理",
            district="西固区",
        ),
    ]
    out = []
    for i, spec in enumerate(specs):
        out.append(
            await create_ticket(
                session, draft(**spec), AGENT, now=MONDAY_10AM + i * HOUR, settings=SETTINGS
            )
        )
    for t, lead, co in ((out[1], "hbj", []), (out[4], "zjj", ["hbj"]), (out[6], "cgj", [])):
        t = await step(session, t, "review", DISPATCHER, now=t.created_at)
        await step(
            session,
            t,
            "dispatch",
            DISPATCHER,
            lead_department=lead,
            co_departments=co,
            mode="joint" if co else "direct",
            now=t.created_at,
        )
    return out


def nos(page) -> list[str]:
    return [t.ticket_no for t in page.items]


async def test_newest_first_and_keyset_pages_cover_everything_once(session, draft) -> None:
    tickets = await seven(session, draft)
    newest_first = [t.ticket_no for t in reversed(tickets)]
    assert nos(await list_tickets(session)) == newest_first
    seen, cursor = [], None
    while True:
        page = await list_tickets(session, limit=3, cursor=cursor)
        seen += nos(page)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == newest_first
    assert (await list_tickets(session, limit=7)).next_cursor is None
    with pytest.raises(InvalidInput) as err:
        await list_tickets(session, cursor="not-a-cursor")
    assert err.value.code == "ticket.invalid_cursor"


async def test_filters(session, draft) -> None:
    t = await seven(session, draft)
    no = [x.ticket_no for x in t]
    assert nos(await list_tickets(session, state="dispatched")) == [no[6], no[4], no[1]]
    assert nos(await list_tickets(session, states=["accepted"], district="城关区")) == [
        no[5],
        no[2],
        no[0],
    ]
    assert nos(await list_tickets(session, department="hbj")) == [
        no[4],
        no[1],
    ]  # co-handler of no[4], lead of no[1]
    assert nos(await list_tickets(session, caller_phone="138 0000 0001")) == [no[2], no[0]]
    assert nos(await list_tickets(session, caller_phone="(0931)1234567")) == [no[3]]
    assert nos(await list_tickets(session, text="楼道灯")) == [no[2], no[0]]
    assert nos(await list_tickets(session, text="100%")) == [
        no[4]
    ]  # LIKE wildcards are searched literally
    assert nos(await list_tickets(session, text="噪音扰民_")) == [no[1]]
    assert nos(await list_tickets(session, category="生态环境")) == [no[4], no[1]]
    assert nos(await list_tickets(session, category="城乡建设/道路照明")) == [no[0]]
    assert nos(await list_tickets(session, ticket_no=no[3])) == [no[3]]
    assert nos(await list_tickets(session, ticket_no="12345-20250303-0000")) == list(reversed(no))
    assert nos(await list_tickets(session, ticket_no="12345-20250304")) == []
    window = await list_tickets(
        session, created_from=MONDAY_10AM + HOUR, created_to=MONDAY_10AM + 3 * HOUR
    )
    assert nos(window) == [no[2], no[1]]
    summary = (await list_tickets(session, ticket_no=no[4])).items[0]
    assert (summary.state_label, summary.lead_department) == ("派发", "zjj")
    assert summary.summary == "垃圾清运不及时 100%没人管"
    with pytest.raises(InvalidInput):
        await list_tickets(session, state="lost")
    with pytest.raises(InvalidInput) as err:
        await list_tickets(session, caller_phone="12")
    assert err.value.code == "ticket.invalid_phone"
    with pytest.raises(InvalidInput):
        await list_tickets(session, limit=0)


async def test_warning_filter_and_level(session, draft, catalogue) -> None:
    t = await seven(session, draft)
    await scan_warnings(
        session,
        now=MONDAY_10AM + 6 * HOUR + 50 * timedelta(minutes=1),
        catalogue=catalogue,
        settings=SETTINGS,
    )
    # Signing was due at 12:00 (no[1]) and 15:00 (no[4]): red; no[6], dispatched at 16:00, is in the last quarter
    # of its sign-for hour: yellow; no[2] repeats a complaint of the same caller: red.
    red = await list_tickets(session, warning="red")
    assert nos(red) == [t[4].ticket_no, t[2].ticket_no, t[1].ticket_no]
    assert [(s.warning, s.is_repeat) for s in red.items] == [
        ("red", False),
        ("red", True),
        ("red", False),
    ]
    yellow = await list_tickets(session, warning="yellow")
    assert nos(yellow) == [t[6].ticket_no] and yellow.items[0].warning == "yellow"
    assert nos(await list_tickets(session, warning="any", department="cgj")) == [t[6].ticket_no]
    assert (await list_tickets(session, ticket_no=t[0].ticket_no)).items[0].warning is None
    with pytest.raises(InvalidInput):
        await list_tickets(session, warning="green")


async def test_caller_history_shows_earlier_tickets_with_the_repeat_flag(session, draft) -> None:
    t = await seven(session, draft)
    history = await caller_history(session, "+86 138 0000 0001")
    assert [(h.ticket_no, h.is_repeat) for h in history] == [
        (t[2].ticket_no, True),
        (t[0].ticket_no, False),
    ]
    assert await caller_history(session, "13899999999") == []
