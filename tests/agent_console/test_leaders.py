"""Leader answering days: the duty office edits the schedule, leaders read it; a leader on the line sees the
caller masked with their earlier tickets and opens a ticket on channel leader-line."""

from __future__ import annotations

import re
from datetime import UTC, timedelta

from agent_console.models import ConsoleController
from agent_console.roles import Role
from ivr.calllog import get_call
from ivr.models import CallRecord
from tests.agent_console.harness import Console
from tests.agent_console.seed_cockpit import NOW, move_console_to, seed_cockpit
from tickets.services import get_ticket

SHIFT = {
    "day": "2025-03-19",
    "start": "14:00",
    "end": "16:00",
    "leader_name": "领导leader",
    "title": "副市长",
    "department": "市政府",
    "interface": "PJSIP/6009",
    "account": "leader",
}


async def test_schedule_is_edited_by_the_duty_office_and_read_by_leaders(console: Console) -> None:
    move_console_to(console, NOW)
    dispatcher = await console.logged_in("dispatcher")
    created = await dispatcher.write("POST", "/api/v1/leader-shifts", SHIFT)
    assert created.status == 201, await created.text()
    shift = await created.json()
    assert shift["on_duty"] is True and shift["start"] == "14:00:00"
    clash = await dispatcher.write(
        "POST", "/api/v1/leader-shifts", SHIFT | {"start": "15:00", "end": "17:00"}
    )
    assert clash.status == 409 and (await clash.json())["error"]["code"] == "leader.overlap"
    backwards = await dispatcher.write(
        "POST", "/api/v1/leader-shifts", SHIFT | {"day": "2025-03-20", "end": "13:00"}
    )
    assert backwards.status == 422 and "必须晚于" in (await backwards.json())["error"]["message"]

    leader = await console.logged_in("leader")
    listed = await (
        await leader.request("GET", "/api/v1/leader-shifts?day_from=2025-03-19&day_to=2025-03-19")
    ).json()
    assert [(s["leader_name"], s["interface"], s["account"]) for s in listed["shifts"]] == [
        ("领导leader", "PJSIP/6009", "leader")
    ]
    page = await (await leader.request("GET", "/leaders")).text()
    assert "副市长" in page and "接听中" in page and 'id="shift-form"' not in page
    assert (
        await leader.write("POST", "/api/v1/leader-shifts", SHIFT | {"day": "2025-03-21"})
    ).status == 403

    form_page = await dispatcher.request("GET", "/leaders")
    token = re.search(r'name="csrf_token" value="([^"]+)"', await form_page.text()).group(1)  # type: ignore[union-attr]
    added = await dispatcher.request(
        "POST", "/leaders", data={"csrf_token": token, **SHIFT, "day": "2025-03-21"}
    )
    assert added.status == 303
    bad = await dispatcher.request(
        "POST", "/leaders", data={"csrf_token": token, **SHIFT, "interface": "电话"}
    )
    assert bad.status == 422 and "接听终端格式不正确" in await bad.text()
    for account in (
        "nobody",
        "agent",
    ):  # the window's account must be a leader's (or an admin's) login
        refused = await dispatcher.write(
            "POST", "/api/v1/leader-shifts", SHIFT | {"day": "2025-03-22", "account": account}
        )
        assert (
            refused.status == 422
            and (await refused.json())["error"]["code"] == "leader.invalid_shift"
        )
    injected = await dispatcher.write(
        "POST",
        "/api/v1/leader-shifts",
        SHIFT | {"day": "2025-03-23", "leader_name": "李明\r\n\r\nAction: Hangup\r\nChannel: /./"},
    )
    assert injected.status == 422 and "控制字符" in await injected.text()
    removed = await dispatcher.request(
        "DELETE",
        f"/api/v1/leader-shifts/{shift['id']}",
        headers={"X-CSRF-Token": await dispatcher.csrf()},
    )
    assert removed.status == 200
    left = await (await leader.request("GET", "/api/v1/leader-shifts")).json()
    assert [s["day"] for s in left["shifts"]] == ["2025-03-21"]
    gone = await dispatcher.request(
        "DELETE",
        f"/api/v1/leader-shifts/{shift['id']}",
        headers={"X-CSRF-Token": await dispatcher.csrf()},
    )
    assert gone.status == 404


async def test_leader_on_the_line_sees_a_masked_caller_and_opens_a_ticket(console: Console) -> None:
    numbers = await seed_cockpit(console.sessionmaker)
    move_console_to(console, NOW)
    leader = await console.logged_in("leader")
    idle = await (await leader.request("GET", "/api/v1/leader-line/current")).json()
    assert idle == {"call": None, "earlier": []}
    started = NOW.astimezone(UTC) - timedelta(minutes=3)
    async with (
        console.sessionmaker() as db
    ):  # the AMI controller's call-log row of the call the leader answered
        db.add(
            CallRecord(
                uniqueid="1742367420.7",
                linkedid="1742367420.7",
                caller_number="13900000001",
                dialled_number="12345",
                started_at=started,
                answered_at=started + timedelta(seconds=20),
                outcome="leader",
                answered_by="leader",
                leader_name="领导leader",
                leader_account="leader",
                updated_at=started,
            )
        )
        await db.commit()
    view = await (await leader.request("GET", "/api/v1/leader-line/current")).json()
    assert view["call"]["caller"] == "139****0001"
    assert [t["ticket_no"] for t in view["earlier"]] == [
        numbers["T3"],
        numbers["T1"],
    ]  # newest first
    page = await (await leader.request("GET", "/leader-line")).text()
    assert "139****0001" in page and "13900000001" not in page and numbers["T1"] in page

    created = await leader.write(
        "POST",
        "/api/v1/leader-line/tickets",
        {
            "call_id": "1742367420.7",
            "content": "反映小区电梯长期故障，物业推诿",
            "kind": "投诉",
            "district": "城北区",
            "street": "北站街道",
        },
    )
    assert created.status == 201, await created.text()
    ticket_no = (await created.json())["ticket_no"]
    async with console.sessionmaker() as db:
        ticket = await get_ticket(db, ticket_no)
        assert (ticket.channel, ticket.caller_phone, ticket.leader_name, ticket.call_id) == (
            "leader-line",
            "13900000001",
            "领导leader",
            "1742367420.7",
        )
        assert (await get_call(db, "1742367420.7")).ticket_no == ticket_no  # type: ignore[union-attr]
    wrong = await leader.write(
        "POST", "/api/v1/leader-line/tickets", {"call_id": "other", "content": "x"}
    )
    assert wrong.status == 404
    admin_view = await (
        await (await console.logged_in("admin")).request("GET", "/api/v1/leader-line/current")
    ).json()
    assert admin_view["call"] is None  # the view is per leader: the admin is on no call
    # another leader with the same 姓名 is not on this call: the call log names the account, not the name
    await console.add_user("leader2", Role.LEADER, display_name="领导leader")
    namesake = await (
        await (await console.logged_in("leader2")).request("GET", "/api/v1/leader-line/current")
    ).json()
    assert namesake["call"] is None
    assert (await (await console.logged_in("agent")).request("GET", "/leader-line")).status == 403


async def test_with_several_pbxs_the_duty_office_chooses_the_pbx_of_a_window(
    console: Console,
) -> None:
    """One PBX: no choice, the window goes to the console's PBX (""). Once the controllers of PBX a and b have
    announced themselves, the page offers them and the window keeps the one chosen."""
    move_console_to(console, NOW)
    dispatcher = await console.logged_in("dispatcher")
    single = await (await dispatcher.request("GET", "/leaders")).text()
    assert 'name="pbx"' not in single
    plain = await dispatcher.write("POST", "/api/v1/leader-shifts", SHIFT)
    assert plain.status == 201 and (await plain.json())["pbx"] == ""

    async with console.sessionmaker() as db, db.begin():
        db.add_all(ConsoleController(pbx=p, name=f"ivr-{p}", heartbeat_at=NOW) for p in "ab")
    page = await (await dispatcher.request("GET", "/leaders")).text()
    options = re.findall(r'<option value="([^"]*)"', page)
    assert options == ["", "a", "b"] and "接听所在PBX" in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    added = await dispatcher.request(
        "POST", "/leaders", data={"csrf_token": token, **SHIFT, "day": "2025-03-20", "pbx": "b"}
    )
    assert added.status == 303
    api = await dispatcher.write(
        "POST", "/api/v1/leader-shifts", SHIFT | {"day": "2025-03-21", "pbx": "a"}
    )
    assert api.status == 201
    listed = await (await dispatcher.request("GET", "/api/v1/leader-shifts")).json()
    assert [(s["day"], s["pbx"]) for s in listed["shifts"]] == [
        ("2025-03-19", ""),
        ("2025-03-20", "b"),
        ("2025-03-21", "a"),
    ]
    assert listed["pbxes"] == ["", "a", "b"]
