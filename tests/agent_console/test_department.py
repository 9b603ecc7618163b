"""The department inbox (sign-for countdown, signing by form), reply attachments, and call-backs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from agent_console.desk import files as desk_files
from tests.agent_console.harness import Console
from tests.agent_console.tickets_support import DEPT_B, PNG, act, dispatched_ticket, json_of, upload


async def test_inbox_shows_own_tickets_with_countdown_and_signs_by_form(desk: Console) -> None:
    mine = await dispatched_ticket(desk)
    theirs = await dispatched_ticket(desk, DEPT_B, content="电梯停运")
    handler = await desk.logged_in("handler")
    html = await (await handler.request("GET", "/department")).text()
    assert mine["ticket_no"] in html and theirs["ticket_no"] not in html
    assert 'class="countdown" data-due="' in html
    form = {
        "csrf_token": await handler.csrf(),
        "action": "sign",
        "expected_version": str(mine["version"]),
        "next": f"/tickets/{mine['ticket_no']}",
    }
    resp = await handler.request("POST", f"/tickets/{mine['ticket_no']}/act", data=form)
    assert resp.status == 303 and resp.headers["Location"] == f"/tickets/{mine['ticket_no']}"
    again = await handler.request(
        "POST", f"/tickets/{mine['ticket_no']}/act", data=form
    )  # stale version now
    assert again.status == 409 and "已被他人修改" in await again.text()
    now = await json_of(handler, "GET", f"/api/v1/console/tickets/{mine['ticket_no']}")
    assert now["state"] == "signed"


async def test_reply_attachments_are_checked_stored_and_downloadable(
    desk: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = await dispatched_ticket(desk)
    handler = await desk.logged_in("handler")
    early = await upload(handler, t["ticket_no"], "现场.png", PNG)
    assert early.status == 409  # not signed yet
    t = await act(handler, t, "sign")
    ok = await upload(handler, t["ticket_no"], "现场.png", PNG)
    assert ok.status == 201, await ok.text()
    meta = await ok.json()
    assert meta["content_type"] == "image/png" and meta["size"] == len(PNG)
    fake = await upload(handler, t["ticket_no"], "恶意.png", b"<script>alert(1)</script>")
    assert fake.status == 422 and (await fake.json())["error"]["details"][0]["field"] == "file"
    monkeypatch.setattr(desk_files, "MAX_ATTACHMENT_BYTES", 32)
    big = await upload(handler, t["ticket_no"], "大.png", PNG)
    assert big.status == 422 and "不能超过" in (await big.json())["error"]["message"]
    other = await desk.logged_in("handler_b")
    assert (await upload(other, t["ticket_no"], "x.png", PNG)).status == 404
    async with handler.http.get(handler.url(meta["url"])) as got:
        assert got.status == 200 and await got.read() == PNG
        assert got.headers["Content-Disposition"].startswith("attachment;")
    detail = await json_of(
        await desk.logged_in("dispatcher"), "GET", f"/api/v1/console/tickets/{t['ticket_no']}"
    )
    assert [a["file_name"] for a in detail["attachments"]] == ["现场.png"]
    stored = Path(desk.settings.data_dir) / "attachments"
    assert [p.name for p in stored.iterdir()] == [
        hashlib.sha256(PNG).hexdigest()
    ]  # rejected ones left nothing


async def test_callbacks_start_the_automatic_call_and_take_manual_results(desk: Console) -> None:
    t = await dispatched_ticket(desk)
    handler, dispatcher, agent = [
        await desk.logged_in(u) for u in ("handler", "dispatcher", "agent")
    ]
    early = await agent.write("POST", f"/api/v1/console/callbacks/{t['ticket_no']}/start")
    assert early.status == 409  # not verified yet
    for action, extra in (("sign", {}), ("reply", {"reply": "已处理"})):
        t = await act(handler, t, action, **extra)
    t = await act(dispatcher, t, "verify")
    listed = await json_of(dispatcher, "GET", "/api/v1/console/callbacks")
    assert [x["ticket_no"] for x in listed["tickets"]] == [t["ticket_no"]]
    started = await json_of(
        dispatcher, "POST", f"/api/v1/console/callbacks/{t['ticket_no']}/start", status=202
    )
    assert started["status"] == "started" and desk.control.callbacks == [t["ticket_no"]]  # type: ignore[attr-defined]
    html = await (await agent.request("GET", "/callbacks")).text()
    assert t["ticket_no"] in html and "发起回访" in html
    form = {
        "csrf_token": await agent.csrf(),
        "result": "unreachable",
        "expected_version": str(t["version"]),
    }
    resp = await agent.request("POST", f"/callbacks/{t['ticket_no']}/result", data=form)
    assert resp.status == 303
    t = await json_of(agent, "GET", f"/api/v1/console/tickets/{t['ticket_no']}")
    assert t["state"] == "callback" and t["callback_attempts"] == 1
    t = await json_of(
        agent,
        "POST",
        f"/api/v1/console/callbacks/{t['ticket_no']}/result",
        {"result": "unsatisfied", "expected_version": t["version"]},
    )
    assert t["state"] == "dispatched"  # 二次派单 back to the department
    assert (
        await dispatcher.write(
            "POST",
            f"/api/v1/console/callbacks/{t['ticket_no']}/result",
            {"result": "satisfied", "expected_version": t["version"]},
        )
    ).status == 403


async def test_pages_render_for_their_roles(desk: Console) -> None:
    t = await dispatched_ticket(desk)
    for user, path, needle in (
        ("dispatcher", "/dispatch", "派单台"),
        ("agent", "/tickets", t["ticket_no"]),
        ("leader", f"/tickets/{t['ticket_no']}", "办理记录"),
        ("handler", f"/tickets/{t['ticket_no']}", "138****5678"),
    ):
        b = await desk.logged_in(user)
        resp = await b.request("GET", path)
        assert resp.status == 200 and needle in await resp.text(), (user, path)
