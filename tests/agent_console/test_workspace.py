"""The agent workspace: status buttons through CallControl, the screen pop over /ws, knowledge panel, dispatch
suggestions, and the plain-form ticket intake."""

from __future__ import annotations

import re

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console.calls import publish_screen_pop
from config import Settings
from hotline.wiring import console_desk, remote_switchboard
from knowledge.retrieval import Answer
from tests.agent_console.harness import (
    Browser,
    Console,
    console_settings,
    start_console,
    stop_console,
)
from tests.agent_console.tickets_support import PHONE, draft, json_of, recording_desk
from tests.conftest import SQLITE_ONLY


async def test_status_buttons_pause_the_agents_queue_membership(desk: Console) -> None:
    agent = await desk.logged_in("agent")
    body = {"state": "paused", "reason": "培训"}
    out = await json_of(agent, "POST", "/api/v1/console/workspace/state", body)
    assert out == {
        "state": "paused",
        "reason": "培训",
        "label": "示忙（培训）",
        "interface": "PJSIP/agent",
    }
    form = await agent.request(
        "POST", "/workspace/state", data={"state": "ready", "csrf_token": await agent.csrf()}
    )
    assert form.status == 303 and form.headers["Location"] == "/workspace?state=ready"
    assert desk.control.states == [("PJSIP/agent", "paused", "培训"), ("PJSIP/agent", "ready", "")]  # type: ignore[attr-defined]
    bad = await agent.write("POST", "/api/v1/console/workspace/state", {"state": "asleep"})
    assert bad.status == 422


async def test_pause_offers_the_centres_reasons_and_refuses_any_other(desk: Console) -> None:
    agent = await desk.logged_in("agent")
    page = await (await agent.request("GET", "/workspace")).text()
    assert re.findall(r'<select name="reason".*?</select>', page)[0].count("<option>") == 5
    for body in (
        {"state": "paused", "reason": "打游戏"},
        {"state": "paused"},
        {"state": "ready", "reason": "休息"},
    ):
        resp = await agent.write("POST", "/api/v1/console/workspace/state", body)
        error = (await resp.json())["error"]
        assert resp.status == 422 and error["code"] == "console.unknown_pause_reason", body
        assert error["details"][0]["field"] == "reason"
    refused = await agent.request(
        "POST",
        "/workspace/state",
        data={"state": "paused", "reason": "<b>x</b>", "csrf_token": await agent.csrf()},
    )
    assert refused.status == 422
    assert "示忙原因只能是：休息、培训、会议、用餐、其他" in await refused.text()
    form = await agent.request(
        "POST",
        "/workspace/state",
        data={"state": "paused", "reason": "用餐", "csrf_token": await agent.csrf()},
    )
    assert form.status == 303
    shown = await (await agent.request("GET", form.headers["Location"])).text()
    assert '<strong id="current-state">示忙（用餐）</strong>' in shown
    assert desk.control.states == [("PJSIP/agent", "paused", "用餐")]  # type: ignore[attr-defined]


@SQLITE_ONLY
async def test_status_without_telephony_is_a_clear_503(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """`hotline console` on SQLite: no controller in its process, no command channel to one."""
    own = console_settings(settings)
    desk = console_desk(own, remote_switchboard(own, sessionmaker))
    console = await start_console(own, sessionmaker, desk=desk)
    try:
        agent = await console.logged_in("agent")
        resp = await agent.write("POST", "/api/v1/console/workspace/state", {"state": "ready"})
        assert resp.status == 503 and "未接入电话系统" in (await resp.json())["error"]["message"]
    finally:
        await stop_console(console)


async def _subscribed(b: Browser, topic: str) -> object:
    ws = await b.http.ws_connect(b.url("/ws"))
    assert (await ws.receive_json(timeout=5))["type"] == "hello"
    await ws.send_json({"type": "subscribe", "topics": [topic]})
    return ws


async def test_screen_pop_reaches_only_that_agent_with_history_and_transcript(
    desk: Console,
) -> None:
    agent = await desk.logged_in("agent")
    await json_of(agent, "POST", "/api/v1/console/tickets", draft(), 201)
    ws = await _subscribed(agent, "screenpop:agent")
    assert (await ws.receive_json(timeout=5))["type"] == "subscribed"  # type: ignore[attr-defined]
    snoop = await _subscribed(await desk.logged_in("dispatcher"), "screenpop:agent")
    assert (await snoop.receive_json(timeout=5))["code"] == "console.forbidden_topic"  # type: ignore[attr-defined]
    delivered = await publish_screen_pop(
        desk.hub,
        desk.sessionmaker,
        "agent",
        PHONE,
        call_id="1700000000.42",
        transcript=["我要投诉小区垃圾没人清理", "我要转人工"],
        from_bot=True,
    )
    assert delivered == 1
    event = await ws.receive_json(timeout=5)  # type: ignore[attr-defined]
    pop = event["data"]
    assert event["topic"] == "screenpop:agent" and pop["phone"] == PHONE and pop["from_bot"] is True
    assert pop["transcript"] == "我要投诉小区垃圾没人清理\n我要转人工"
    assert len(pop["earlier"]) == 1 and pop["earlier"][0]["state_label"] == "受理"
    assert "1 件未办结" in pop["repeat_warning"]
    await ws.close()  # type: ignore[attr-defined]
    await snoop.close()  # type: ignore[attr-defined]


async def test_knowledge_panel_uses_the_injected_lookup(desk: Console) -> None:
    unwired = await (await desk.logged_in("agent")).request(
        "GET", "/api/v1/console/knowledge?q=社保卡怎么补办"
    )
    assert unwired.status == 503
    asked: list[str] = []

    def ask(text: str) -> Answer:
        asked.append(text)
        return Answer(
            7,
            "社保卡丢了怎么补办？",
            "请携带身份证…",
            "请携带身份证到社保网点补办。",
            "市人社局",
            0.91,
            True,
        )

    wired = await start_console(
        desk.settings,
        desk.sessionmaker,
        seed=False,
        desk=recording_desk(desk.settings, knowledge_ask=ask),
    )  # same database and users
    try:
        agent = await wired.logged_in("agent")
        out = await json_of(agent, "GET", "/api/v1/console/knowledge?q=社保卡怎么补办")
        assert (
            out["answer_id"] == 7
            and out["answer"] == "请携带身份证到社保网点补办。"
            and asked == ["社保卡怎么补办"]
        )
        page = await agent.request("GET", "/workspace?q=社保卡怎么补办")
        assert "请携带身份证到社保网点补办。" in await page.text()
    finally:
        await stop_console(wired)


async def test_dispatch_suggestions_name_departments_with_reasons(desk: Console) -> None:
    agent = await desk.logged_in("agent")
    out = await json_of(
        agent, "GET", "/api/v1/console/dispatch-suggestions?text=学校门口补课机构违规招生"
    )
    assert out["suggestions"] and out["suggestions"][0]["department"] == "市教育局"
    assert "补课" in out["suggestions"][0]["why"]


async def test_plain_form_intake_and_errors_keep_the_input(desk: Console) -> None:
    agent = await desk.logged_in("agent")
    form = (
        {"csrf_token": await agent.csrf()}
        | {k: v for k, v in draft().items()}
        | {"category": "住房安居/物业服务"}
    )
    resp = await agent.request("POST", "/workspace/tickets", data=form)
    assert resp.status == 303 and re.fullmatch(
        r"/tickets/12345-\d{8}-\d{5}\?created=1", resp.headers["Location"]
    )
    bad = await agent.request("POST", "/workspace/tickets", data=form | {"caller_phone": "110abc"})
    html = await bad.text()
    assert bad.status == 422 and "来电号码格式不正确" in html and "幸福小区门口垃圾堆积" in html
    page = await agent.request("GET", "/workspace")
    assert page.status == 200 and 'data-topic="screenpop:agent"' in await page.text()
