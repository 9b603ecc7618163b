"""The blocklist in the console: the duty office (administrators, dispatchers) adds and lifts, leaders read with
numbers masked, every change is audited, candidates come from the call log; the page escapes what it shows."""

from __future__ import annotations

import re
from datetime import timedelta

from agent_console.app import FEATURES
from agent_console.roles import Role
from agent_console.routing import RouteRegistry
from agent_console.views.blocklist import EDITORS, VIEWERS
from ivr.blocklist import block_events
from ivr.models import CallRecord
from tests.agent_console.harness import Console

NUMBER = "13812345678"


def test_the_blocklist_is_edited_by_the_duty_office_and_read_by_leaders() -> None:
    routes = [r for r in RouteRegistry.of(FEATURES).routes if "blocklist" in r.path]
    assert {(r.method, r.path) for r in routes} >= {
        ("GET", "/api/v1/blocklist"),
        ("POST", "/api/v1/blocklist"),
        ("POST", "/api/v1/blocklist/{block_id}/lift"),
        ("GET", "/api/v1/blocklist/candidates"),
        ("GET", "/blocklist"),
    }
    assert EDITORS == {Role.ADMIN, Role.DISPATCHER} and VIEWERS == EDITORS | {Role.LEADER}
    assert all(r.roles == (VIEWERS if r.method == "GET" else EDITORS) for r in routes)


async def test_add_list_lift_with_audit_and_masking(console: Console) -> None:
    dispatcher = await console.logged_in("dispatcher")
    until = (console.clock() + timedelta(days=7)).isoformat()
    created = await dispatcher.write(
        "POST",
        "/api/v1/blocklist",
        {"phone": "+86 138 1234 5678", "reason": "一天无效来电50次", "expires_at": until},
    )
    assert created.status == 201, await created.text()
    entry = await created.json()
    assert entry["phone"] == NUMBER and entry["active"] and entry["created_by"] == "dispatcher"
    again = await dispatcher.write("POST", "/api/v1/blocklist", {"phone": NUMBER, "reason": "再加"})
    assert again.status == 409 and (await again.json())["error"]["code"] == "blocklist.duplicate"
    too_long = await dispatcher.write(
        "POST", "/api/v1/blocklist", {"phone": "13912345678", "reason": "长" * 201}
    )
    assert too_long.status == 422
    bad_phone = await dispatcher.write("POST", "/api/v1/blocklist", {"phone": "110", "reason": "x"})
    assert (
        bad_phone.status == 422
        and (await bad_phone.json())["error"]["code"] == "blocklist.invalid_input"
    )

    leader = await console.logged_in("leader")
    listed = await (await leader.request("GET", "/api/v1/blocklist")).json()
    assert [e["phone"] for e in listed["entries"]] == ["138****5678"]
    assert (await leader.write("POST", f"/api/v1/blocklist/{entry['id']}/lift", {})).status == 403

    admin = await console.logged_in("admin")
    lifted = await admin.write(
        "POST", f"/api/v1/blocklist/{entry['id']}/lift", {"note": "核实为误报"}
    )
    assert lifted.status == 200 and (await lifted.json())["active"] is False
    twice = await admin.write("POST", f"/api/v1/blocklist/{entry['id']}/lift", {})
    assert (
        twice.status == 409 and (await twice.json())["error"]["code"] == "blocklist.already_lifted"
    )
    missing = await admin.write("POST", "/api/v1/blocklist/999999/lift", {})
    assert missing.status == 404
    assert (await (await admin.request("GET", "/api/v1/blocklist")).json())["entries"] == []
    everything = await (
        await admin.request("GET", "/api/v1/blocklist?include_inactive=true")
    ).json()
    assert [e["id"] for e in everything["entries"]] == [entry["id"]]
    async with console.sessionmaker() as db:
        trail = await block_events(db, entry["id"])
    assert [(e.action, e.actor, e.role, e.note) for e in trail] == [
        ("add", "dispatcher", "dispatcher", "一天无效来电50次"),
        ("lift", "admin", "admin", "核实为误报"),
    ]


async def test_candidates_and_the_page(console: Console) -> None:
    now = console.clock()
    async with console.sessionmaker() as db:
        db.add_all(
            CallRecord(
                uniqueid=f"c{i}",
                linkedid=f"c{i}",
                caller_number="13900001111",
                started_at=now - timedelta(minutes=i),
                outcome="abandoned",
                updated_at=now,
            )
            for i in range(console.settings.blocklist.candidate_min_calls)
        )
        await db.commit()
    leader = await console.logged_in("leader")
    found = await (await leader.request("GET", "/api/v1/blocklist/candidates")).json()
    assert found["candidates"] == [{"phone": "139****1111", "calls": 20, "withdrawn": 0}]
    assert "小时内呼入不少于" in found["rule"]
    page = await (await leader.request("GET", "/blocklist")).text()
    assert "139****1111" in page and 'id="block-form"' not in page and "13900001111" not in page

    dispatcher = await console.logged_in("dispatcher")
    form_page = await (await dispatcher.request("GET", "/blocklist")).text()
    token = re.search(r'name="csrf_token" value="([^"]+)"', form_page).group(1)  # type: ignore[union-attr]
    added = await dispatcher.request(
        "POST",
        "/blocklist",
        data={
            "csrf_token": token,
            "phone": "13900001111",
            "reason": "<script>x</script>",
            "duration": "7",
        },
    )
    assert added.status == 303 and added.headers["Location"].startswith("/blocklist?added=")
    page = await (await dispatcher.request("GET", "/blocklist")).text()
    assert "&lt;script&gt;x&lt;/script&gt;" in page and "<script>x</script>" not in page
    assert (await (await dispatcher.request("GET", "/api/v1/blocklist/candidates")).json())[
        "candidates"
    ] == []
    duplicate = await dispatcher.request(
        "POST",
        "/blocklist",
        data={"csrf_token": token, "phone": "13900001111", "reason": "再加", "duration": "7"},
    )
    assert duplicate.status == 409 and "已在黑名单" in await duplicate.text()
    no_token = await dispatcher.request(
        "POST", "/blocklist", data={"phone": "13900002222", "reason": "x"}
    )
    assert no_token.status == 403
