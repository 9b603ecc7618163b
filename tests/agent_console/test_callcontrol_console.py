"""Transfers and supervision in the console: the routes hand the right target and people to the switchboard,
record nothing themselves, tell a monitored agent when the centre's policy says so, and answer clearly without
telephony. (Who may call each route: tests/agent_console/test_role_matrix.py.)"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console.hub import Owner
from config import Settings
from ivr.models import CallTransfer
from tests.agent_console.harness import Console, console_settings, start_console, stop_console
from tests.agent_console.switchboard_support import NOW, FakeSwitchboard
from tests.agent_console.tickets_support import draft, json_of
from tests.conftest import SQLITE_ONLY


@pytest.fixture
async def wired(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[tuple[Console, FakeSwitchboard]]:
    switchboard = FakeSwitchboard()
    console = await start_console(console_settings(settings), sessionmaker, switchboard=switchboard)
    yield console, switchboard
    await stop_console(console)


TICKET_NO = "12345-20250303-00001"


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("mode", "target_kind", "target", "ticket_no", "mode_label", "dialled", "label"),
    [
        # a department's hotline from the catalogue, for a ticket
        ("blind", "department", "市教育局", TICKET_NO, "直接转接", "66010003", "市教育局"),
        ("three_way", "emergency", "120", None, "三方通话", "120", "医疗急救"),  # one key
    ],
)
async def test_an_agent_transfers_to_the_number_the_target_stands_for(
    wired: tuple[Console, FakeSwitchboard],
    mode: str,
    target_kind: str,
    target: str,
    ticket_no: str | None,
    mode_label: str,
    dialled: str,
    label: str,
) -> None:
    console, switchboard = wired
    agent = await console.logged_in("agent")
    resp = await agent.write(
        "POST",
        "/api/v1/console/calls/transfer",
        {"mode": mode, "target_kind": target_kind, "target": target, "ticket_no": ticket_no},
    )
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert (body["mode_label"], body["target"], body["outcome_label"]) == (
        mode_label,
        dialled,
        "呼叫中",
    )
    [(interface, sent, sent_mode, by, sent_ticket)] = switchboard.transfers
    assert (interface, sent_mode, by, sent_ticket) == ("PJSIP/agent", mode, "agent", ticket_no)
    assert (sent.kind, sent.target, sent.label) == (target_kind, dialled, label)


@SQLITE_ONLY
async def test_an_attended_transfer_is_offered_to_agents_only_and_the_mode_is_validated(
    wired: tuple[Console, FakeSwitchboard],
) -> None:
    console, switchboard = wired
    body = {"mode": "attended", "target_kind": "emergency", "target": "120"}
    agent = await console.logged_in("agent")
    resp = await agent.write("POST", "/api/v1/console/calls/transfer", body)
    assert resp.status == 201 and (await resp.json())["mode_label"] == "咨询转接"
    refused = await agent.write(
        "POST", "/api/v1/console/calls/transfer", body | {"mode": "consult"}
    )
    assert refused.status == 422
    supervisor = await console.logged_in("supervisor")
    resp = await supervisor.write("POST", "/api/v1/console/calls/transfer", body)
    assert resp.status == 403
    assert [m for _, _, m, _, _ in switchboard.transfers] == ["attended"]


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("target_kind", "target", "status", "code"),
    [
        ("department", "不存在的单位", 404, "console.not_found"),
        ("emergency", "12345", 422, "callcontrol.invalid_target"),
        ("agent", "leader", 404, "console.not_found"),  # a leader is no transfer target
    ],
)
async def test_unknown_transfer_targets_are_refused(
    wired: tuple[Console, FakeSwitchboard], target_kind: str, target: str, status: int, code: str
) -> None:
    console, switchboard = wired
    agent = await console.logged_in("agent")
    resp = await agent.write(
        "POST",
        "/api/v1/console/calls/transfer",
        {"mode": "three_way", "target_kind": target_kind, "target": target},
    )
    assert resp.status == status and (await resp.json())["error"]["code"] == code
    assert switchboard.transfers == []


@SQLITE_ONLY
async def test_the_transfer_targets_offered(wired: tuple[Console, FakeSwitchboard]) -> None:
    console, _ = wired
    agent = await console.logged_in("agent")
    targets = await (await agent.request("GET", "/api/v1/console/transfer-targets")).json()
    assert {"number": "120", "label": "医疗急救"} in targets["emergency"]
    assert {"department": "市教育局", "phone": "66010003"} in targets["departments"]


@SQLITE_ONLY
async def test_a_supervisor_whispers_to_an_agent_who_is_told_by_policy(
    wired: tuple[Console, FakeSwitchboard],
) -> None:
    console, switchboard = wired
    told = console.hub.subscribe(Owner(user_id=0, session_id=0))
    told.topics.add("user:agent")
    supervisor = await console.logged_in("supervisor")
    resp = await supervisor.write(
        "POST", "/api/v1/console/supervision", {"action": "whisper", "agent": "agent"}
    )
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["label"] == "密语"
    assert switchboard.spies == [
        {
            "interface": "PJSIP/agent",
            "action": "whisper",
            "agent": "agent",
            "supervisor": "supervisor",
            "role": "supervisor",
            "phone": "PJSIP/supervisor",
        }
    ]
    event = await told.next()
    assert event is not None and event.data["message"] == "班长正在密语您的通话"
    refused = await supervisor.write(
        "POST", "/api/v1/console/supervision", {"action": "barge", "agent": "dispatcher"}
    )
    assert refused.status == 404  # only agents are spied on


@SQLITE_ONLY
async def test_the_board_lists_each_agents_state_call_and_calls_today(
    wired: tuple[Console, FakeSwitchboard],
) -> None:
    console, _ = wired
    supervisor = await console.logged_in("supervisor")
    board = await (await supervisor.request("GET", "/api/v1/console/supervision/board")).json()
    assert board["connected"] and board["agents"][0]["state_label"] == "通话中"
    assert (board["agents"][0]["talk_s"], board["agents"][0]["calls_today"]) == (12.5, 7)
    assert (
        board["agents"][0]["agent"] == "agent"
    )  # the account behind PJSIP/agent: whom to listen to
    page = await supervisor.request("GET", "/supervision")
    assert page.status == 200 and "班长席" in await page.text()


@SQLITE_ONLY
async def test_without_telephony_the_board_is_empty_and_buttons_answer_503(
    console: Console,
) -> None:
    leader = await console.logged_in("leader")
    board = await (await leader.request("GET", "/api/v1/console/supervision/board")).json()
    assert board == {"connected": False, "agents": []}
    resp = await (await console.logged_in("agent")).write(
        "POST",
        "/api/v1/console/calls/transfer",
        {"mode": "blind", "target_kind": "emergency", "target": "110"},
    )
    assert resp.status == 503 and "未接入电话系统" in (await resp.json())["error"]["message"]


@SQLITE_ONLY
async def test_a_tickets_transfers_are_listed_for_its_readers(
    console: Console,
) -> None:
    async with console.sessionmaker() as db, db.begin():
        db.add(
            CallTransfer(
                uniqueid="1741000000.1",
                ticket_no="12345-20250303-00001",
                mode="three_way",
                target_kind="department",
                target="66010003",
                target_label="市教育局",
                by_user="agent",
                at=NOW,
                outcome="answered",
                outcome_at=NOW,
            )
        )
    dispatcher = await console.logged_in("dispatcher")
    listed = await (
        await dispatcher.request("GET", "/api/v1/console/transfers?ticket_no=12345-20250303-00001")
    ).json()
    assert [
        (t["mode_label"], t["target_label"], t["outcome_label"]) for t in listed["transfers"]
    ] == [("三方通话", "市教育局", "已接通")]


async def test_the_ticket_page_shows_its_transfers_escaped_to_their_readers(desk: Console) -> None:
    agent = await desk.logged_in("agent")
    ticket = await json_of(agent, "POST", "/api/v1/console/tickets", draft(), 201)
    async with desk.sessionmaker() as db, db.begin():
        db.add(
            CallTransfer(
                uniqueid="1741000000.1",
                ticket_no=ticket["ticket_no"],
                mode="blind",
                target_kind="agent",
                target="agent2",
                target_label="<b>李娜</b>",
                by_user="agent",
                at=NOW,
                outcome="answered",
                outcome_at=NOW,
            )
        )
    for reader in ("agent", "supervisor"):
        b = await desk.logged_in(reader)
        page = await (await b.request("GET", f"/tickets/{ticket['ticket_no']}")).text()
        row = re.search(r'<table class="table" id="transfers">.*?</table>', page, re.S)
        assert row, reader
        cells = re.findall(r"<td>(.*?)</td>", row.group(0))
        assert cells == [
            "2025-03-03 10:00",
            "agent",
            "&lt;b&gt;李娜&lt;/b&gt;",
            "直接转接",
            "已接通",
        ]
