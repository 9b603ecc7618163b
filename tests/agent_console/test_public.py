"""The citizens' API: file without login, follow progress by number + phone, no leaks, abuse limits, replays."""

from __future__ import annotations

from tests.agent_console.harness import Console
from tests.agent_console.tickets_support import DEPT_A, SUBMISSION, act, json_of, submit


async def test_citizen_files_and_follows_a_request_without_login(desk: Console) -> None:
    citizen = desk.browser()
    status, out = await submit(citizen, SUBMISSION)
    assert status == 201 and out["duplicate"] is False and "已受理" in out["message"]
    no = out["ticket_no"]
    resp = await citizen.request("GET", f"/api/v1/tickets/{no}?phone=137-0000-1234")
    progress = await resp.json()
    assert resp.status == 200 and progress["state_label"] == "受理" and progress["reply"] is None
    assert "caller_phone" not in progress and "content" not in progress
    assert "Access-Control-Allow-Origin" not in resp.headers  # CORS closed
    # the ticket is in the staff's queue, filed by the caller
    staff = await json_of(
        await desk.logged_in("dispatcher"), "GET", f"/api/v1/console/tickets/{no}"
    )
    assert staff["channel"] == "web" and staff["events"][0]["role"] == "caller"


async def test_wrong_phone_looks_exactly_like_an_unknown_ticket(desk: Console) -> None:
    citizen = desk.browser()
    _, out = await submit(citizen, SUBMISSION)
    wrong = await citizen.request("GET", f"/api/v1/tickets/{out['ticket_no']}?phone=13900009999")
    unknown = await citizen.request("GET", "/api/v1/tickets/12345-20000101-00001?phone=13700001234")
    malformed = await citizen.request("GET", f"/api/v1/tickets/{out['ticket_no']}?phone=abc")
    bodies = [await r.json() for r in (wrong, unknown, malformed)]
    assert [r.status for r in (wrong, unknown, malformed)] == [404, 404, 404]
    expected = {
        "error": {"code": "console.not_found", "message": "未找到该工单，请核对工单编号和手机号码"}
    }
    assert bodies[0] == bodies[1] == bodies[2] == expected


async def test_reply_is_shown_once_closed(desk: Console) -> None:
    citizen = desk.browser()
    _, out = await submit(citizen, SUBMISSION)
    dispatcher, handler, agent = [
        await desk.logged_in(u) for u in ("dispatcher", "handler", "agent")
    ]
    t = await json_of(dispatcher, "GET", f"/api/v1/console/tickets/{out['ticket_no']}")
    t = await act(dispatcher, t, "review")
    t = await act(dispatcher, t, "dispatch", lead_department=DEPT_A)
    t = await act(handler, t, "sign")
    t = await act(handler, t, "reply", reply="已更换损坏的路灯控制器，路灯恢复照明。")
    replied = await json_of(citizen, "GET", f"/api/v1/tickets/{out['ticket_no']}?phone=13700001234")
    assert replied["state_label"] == "反馈" and replied["reply"] is None  # not before it is closed
    t = await act(dispatcher, t, "verify")
    await json_of(
        agent,
        "POST",
        f"/api/v1/console/callbacks/{t['ticket_no']}/result",
        {"result": "satisfied", "expected_version": t["version"]},
    )
    closed = await json_of(citizen, "GET", f"/api/v1/tickets/{out['ticket_no']}?phone=13700001234")
    assert (
        closed["state_label"] == "办结"
        and closed["reply"] == "已更换损坏的路灯控制器，路灯恢复照明。"
    )


async def test_replays_return_the_same_ticket(desk: Console) -> None:
    citizen = desk.browser()
    first_status, first = await submit(citizen, SUBMISSION)
    again_status, again = await submit(citizen, SUBMISSION)
    assert (first_status, again_status) == (201, 200)
    assert again == {
        "ticket_no": first["ticket_no"],
        "duplicate": True,
        "message": "该诉求已受理，请勿重复提交",
    }
    _, keyed = await submit(
        citizen, SUBMISSION | {"content": "小区噪音扰民"}, **{"Idempotency-Key": "k-1"}
    )
    _, replay = await submit(
        citizen, SUBMISSION | {"content": "小区噪音扰民（重发）"}, **{"Idempotency-Key": "k-1"}
    )
    assert replay["ticket_no"] == keyed["ticket_no"] and replay["duplicate"] is True
    listed = await json_of(await desk.logged_in("dispatcher"), "GET", "/api/v1/console/tickets")
    assert len(listed["tickets"]) == 2


async def test_abuse_limit_per_address(desk: Console) -> None:
    limit = desk.settings.console.public_rate_per_minute
    citizen = desk.browser()
    for n in range(limit):
        status, _ = await submit(citizen, SUBMISSION | {"caller_phone": f"1370000{n:04d}"})
        assert status == 201
    status, body = await submit(citizen, SUBMISSION | {"caller_phone": "13800000000"})
    assert status == 429 and body["error"]["message"] == "请求过于频繁，请一分钟后再试"
    desk.clock.advance(61)  # a new minute: allowed again
    status, _ = await submit(citizen, SUBMISSION | {"caller_phone": "13800000000"})
    assert status == 201


async def test_abuse_limit_per_phone_whatever_the_address(desk: Console) -> None:
    """One number submitting from many machines is refused past the limit; other numbers are not."""
    limit = desk.settings.console.public_rate_per_minute
    phone = "13700009999"
    for n in range(limit):
        status, _ = await submit(
            desk.browser(f"127.0.0.{10 + n}"),
            SUBMISSION | {"caller_phone": phone, "content": f"第{n}次：路灯不亮"},
        )
        assert status == 201
    elsewhere = desk.browser("127.0.0.200")
    status, body = await submit(
        elsewhere, SUBMISSION | {"caller_phone": phone, "content": "又一次：路灯不亮"}
    )
    assert status == 429 and body["error"]["message"] == "请求过于频繁，请一分钟后再试"
    status, _ = await submit(elsewhere, SUBMISSION | {"caller_phone": "13700008888"})
    assert status == 201  # the address itself is not over its limit
    listed = await json_of(
        await desk.logged_in("dispatcher"), "GET", f"/api/v1/console/tickets?phone={phone}"
    )
    assert len(listed["tickets"]) == limit  # the refused one was not filed
    desk.clock.advance(61)  # a new minute: allowed again
    status, _ = await submit(
        desk.browser("127.0.0.201"), SUBMISSION | {"caller_phone": phone, "content": "新的一分钟"}
    )
    assert status == 201


async def test_bad_input_is_422_with_the_field_and_nothing_is_filed(desk: Console) -> None:
    citizen = desk.browser()
    status, body = await submit(citizen, SUBMISSION | {"content": "长" * 4001})
    assert status == 422 and body["error"]["details"][0]["field"] == "content"
    status, body = await submit(citizen, SUBMISSION | {"channel": "phone"})
    assert status == 422 and body["error"]["details"][0]["field"] == "channel"
    status, body = await submit(citizen, SUBMISSION | {"caller_phone": "12345"})
    assert status == 422 and body["error"]["details"][0]["field"] == "caller_phone"
    listed = await json_of(await desk.logged_in("dispatcher"), "GET", "/api/v1/console/tickets")
    assert listed["tickets"] == []
