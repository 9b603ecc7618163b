"""Knowledge-base pages and API: department ownership, publish/archive, history, the bot's misses, and the
bot's index refreshed after every change."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console.views.knowledge import _form_of
from config import Settings
from knowledge import services as kb
from knowledge.io import import_file
from knowledge.retrieval import KnowledgeIndex
from knowledge.schemas import validate_content
from tests.agent_console.harness import Console, console_settings, start_console, stop_console

OWN = "市城市管理局"  # the handler's department (tests.agent_console.harness.PLACEMENT)
OTHER = "市民政局"
GOV_FAQ = Path(__file__).parents[1] / "knowledge" / "data" / "gov_faq.csv"


def entry(question: str, **extra: object) -> dict:
    return {
        "question": question,
        "answer_speech": "请拨打城管服务热线，工作人员会在两个工作日内上门处理。",
        "answer_text": "请拨打城管服务热线，工作人员会在两个工作日内上门处理。",
    } | extra


@pytest.fixture
async def bot_index(settings: Settings) -> KnowledgeIndex:
    return KnowledgeIndex.from_settings(settings)


@pytest.fixture
async def kb_console(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], bot_index: KnowledgeIndex
) -> AsyncIterator[Console]:
    """The console whose knowledge hook rebuilds a real retrieval index, as the bot's would."""
    refreshes: list[datetime] = []

    async def refresh() -> None:
        async with sessionmaker() as db:
            await kb.refresh_index(db, bot_index, datetime.now().date())
        refreshes.append(datetime.now())

    c = await start_console(console_settings(settings), sessionmaker, on_knowledge_change=refresh)
    c.refreshes = refreshes  # type: ignore[attr-defined]
    yield c
    await stop_console(c)


async def test_handler_edits_only_own_department_and_the_bot_answers_after_publish(
    kb_console: Console, bot_index: KnowledgeIndex
) -> None:
    handler = await kb_console.logged_in("handler")
    admin = await kb_console.logged_in("admin")

    created = await handler.write("POST", "/api/v1/knowledge/entries", entry("占道经营怎么投诉"))
    assert created.status == 201, await created.text()
    mine = await created.json()
    assert mine["department"] == OWN and mine["status"] == "draft" and mine["editable"] is True

    assert bot_index.ask("占道经营怎么投诉").answer_id is None  # a draft is not served
    published = await handler.write(
        "POST",
        f"/api/v1/knowledge/entries/{mine['id']}/publish",
        {"expected_version": mine["version"]},
    )
    assert published.status == 200, await published.text()
    assert (await published.json())["status"] == "published"
    assert (
        bot_index.ask("占道经营怎么投诉").answer_id == mine["id"]
    )  # the hook refreshed the bot's index

    foreign = await handler.write(
        "POST", "/api/v1/knowledge/entries", entry("低保怎么申请", department=OTHER)
    )
    assert foreign.status == 403
    other = await admin.write(
        "POST", "/api/v1/knowledge/entries", entry("低保怎么申请", department=OTHER)
    )
    assert other.status == 201
    theirs = await other.json()
    listed = await (await handler.request("GET", "/api/v1/knowledge/entries")).json()
    editable = {e["question"]: e["editable"] for e in listed["entries"]}
    assert editable == {"占道经营怎么投诉": True, "低保怎么申请": False}
    refused = await handler.write(
        "PUT",
        f"/api/v1/knowledge/entries/{theirs['id']}",
        entry("低保怎么申请", expected_version=1, department=OTHER),
    )
    assert refused.status == 403
    assert (
        await handler.write(
            "POST", f"/api/v1/knowledge/entries/{theirs['id']}/archive", {"expected_version": 1}
        )
    ).status == 403
    unchanged = await (
        await admin.request("GET", f"/api/v1/knowledge/entries/{theirs['id']}")
    ).json()
    assert unchanged["version"] == 1 and unchanged["status"] == "draft"


async def test_update_conflict_history_and_archive(
    kb_console: Console, bot_index: KnowledgeIndex
) -> None:
    handler = await kb_console.logged_in("handler")
    first = await (
        await handler.write("POST", "/api/v1/knowledge/entries", entry("井盖丢了找谁"))
    ).json()
    eid = first["id"]
    published = await handler.write(
        "POST", f"/api/v1/knowledge/entries/{eid}/publish", {"expected_version": 1}
    )
    assert published.status == 200
    changed = await handler.write(
        "PUT",
        f"/api/v1/knowledge/entries/{eid}",
        entry("井盖丢失找哪个部门", expected_version=2, keywords=["井盖"]),
    )
    assert changed.status == 200, await changed.text()
    assert (await changed.json())["version"] == 3
    stale = await handler.write(
        "PUT", f"/api/v1/knowledge/entries/{eid}", entry("井盖", expected_version=2)
    )
    assert stale.status == 409
    assert (await stale.json())["error"]["code"] == "kb.version_conflict"
    assert bot_index.ask("井盖丢失找哪个部门").answer_id == eid
    archived = await handler.write(
        "POST", f"/api/v1/knowledge/entries/{eid}/archive", {"expected_version": 3}
    )
    assert archived.status == 200
    assert (
        bot_index.ask("井盖丢失找哪个部门").answer_id is None
    )  # archived entries leave the bot's index
    again = await handler.write(
        "POST", f"/api/v1/knowledge/entries/{eid}/archive", {"expected_version": 4}
    )
    assert again.status == 409 and (await again.json())["error"]["code"] == "kb.illegal_status"
    history = await (
        await handler.request("GET", f"/api/v1/knowledge/entries/{eid}/history")
    ).json()
    assert [(r["version"], r["action"]) for r in history["revisions"]] == [
        (1, "create"),
        (2, "publish"),
        (3, "update"),
        (4, "archive"),
    ]
    assert history["revisions"][2]["previous"]["question"] == "井盖丢了找谁"
    bad = await handler.write(
        "POST", "/api/v1/knowledge/entries", entry("有网址的答案", answer_speech="详见 http://x.cn")
    )
    assert bad.status == 422 and "语音答案" in (await bad.json())["error"]["message"]
    assert len(kb_console.refreshes) == 4  # type: ignore[attr-defined]


async def test_pages_create_publish_and_show_history(kb_console: Console) -> None:
    handler = await kb_console.logged_in("handler")
    form = await handler.request("GET", "/knowledge/new")
    assert form.status == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', await form.text()).group(1)  # type: ignore[union-attr]
    assert f'value="{OWN}" readonly' in await form.text()
    posted = await handler.request(
        "POST",
        "/knowledge/new",
        data={
            "csrf_token": token,
            "question": "夜间施工噪音扰民",
            "alt_questions": "工地晚上施工太吵\n半夜施工",
            "answer_speech": "夜间施工须经审批，无许可施工可由城管部门查处。",
            "answer_text": "夜间施工须经审批。",
            "keywords": "噪音，夜间施工",
            "department": OWN,
            "source": "",
            "valid_from": "",
            "valid_to": "",
        },
    )
    assert posted.status == 303, await posted.text()
    location = posted.headers["Location"]
    page = await (await handler.request("GET", location)).text()
    assert "已保存" in page and "工地晚上施工太吵\n半夜施工" in page
    eid = int(re.search(r"/knowledge/(\d+)", location).group(1))  # type: ignore[union-attr]
    published = await handler.request(
        "POST", f"/knowledge/{eid}/publish", data={"csrf_token": token, "expected_version": "1"}
    )
    assert published.status == 303
    page = await (await handler.request("GET", f"/knowledge/{eid}")).text()
    assert 'id="kb-status">已发布' in page and "发布" in page and "新建" in page
    stale = await handler.request(
        "POST", f"/knowledge/{eid}/archive", data={"csrf_token": token, "expected_version": "1"}
    )
    assert stale.status == 409 and "已被他人修改" in await stale.text()
    bad = await handler.request(
        "POST",
        f"/knowledge/{eid}",
        data={
            "csrf_token": token,
            "expected_version": "2",
            "question": "夜间施工噪音扰民",
            "answer_speech": "",
            "answer_text": "x",
        },
    )
    assert bad.status == 422 and "语音答案" in await bad.text()
    agent_view = await (await kb_console.logged_in("agent")).request("GET", f"/knowledge/{eid}")
    assert agent_view.status == 200 and 'id="kb-form"' not in await agent_view.text()


async def test_misses_page_offers_an_entry_from_the_question(kb_console: Console) -> None:
    async with kb_console.sessionmaker() as db:
        refuse = await kb.create_entry(
            db, validate_content(entry("垃圾清运时间", department=OWN)), "admin"
        )
        miss = await kb.record_miss(
            db, "垃圾清运车早上五点就来太吵了", refuse.id, 0.31, "low_confidence"
        )
    handler = await kb_console.logged_in("handler")
    page = await (await handler.request("GET", "/knowledge/misses")).text()
    assert "垃圾清运车早上五点就来太吵了" in page and f"/knowledge/new?miss={miss.id}" in page
    form = await (await handler.request("GET", f"/knowledge/new?miss={miss.id}")).text()
    assert 'name="question" required maxlength="200" value="垃圾清运车早上五点就来太吵了"' in form
    assert (await handler.request("GET", "/knowledge/new?miss=999999")).status == 404
    assert (
        await handler.request("GET", "/knowledge/%C2%B2")
    ).status == 404  # "²" is a digit to str.isdigit
    api = await (
        await handler.request("GET", "/api/v1/knowledge/misses?reason=low_confidence")
    ).json()
    assert [m["question_text"] for m in api["misses"]] == ["垃圾清运车早上五点就来太吵了"]
    assert (
        await (await kb_console.logged_in("agent")).request("GET", "/knowledge/misses")
    ).status == 403


async def test_misses_are_read_only_by_their_curators_with_numbers_masked(
    kb_console: Console,
) -> None:
    """A handler sees the misses whose closest entry is their department's, an administrator all; a
    dispatcher, who does not edit the knowledge base, none (the callers' words are personal data)."""
    async with kb_console.sessionmaker() as db:
        own = await kb.create_entry(
            db, validate_content(entry("占道经营怎么投诉", department=OWN)), "admin"
        )
        other = await kb.create_entry(
            db, validate_content(entry("低保怎么申请", department=OTHER)), "admin"
        )
        mine = await kb.record_miss(
            db, "我是13812345678，门口有人占道摆摊", own.id, 0.4, "low_confidence"
        )
        theirs = await kb.record_miss(
            db, "我妈住幸福路十八号，低保怎么办", other.id, 0.4, "low_confidence"
        )
        nobodys = await kb.record_miss(db, "我家猫丢了", None, None, "unanswered")
    handler = await kb_console.logged_in("handler")
    listed = (await (await handler.request("GET", "/api/v1/knowledge/misses")).json())["misses"]
    assert [m["question_text"] for m in listed] == ["我是138****5678，门口有人占道摆摊"]
    page = await (await handler.request("GET", "/knowledge/misses")).text()
    assert "138****5678" in page and "幸福路" not in page and "猫" not in page
    for other_miss in (theirs, nobodys):
        assert (await handler.request("GET", f"/knowledge/new?miss={other_miss.id}")).status == 404
    admin = await kb_console.logged_in("admin")
    every = (await (await admin.request("GET", "/api/v1/knowledge/misses")).json())["misses"]
    assert {m["id"] for m in every} == {mine.id, theirs.id, nobodys.id}
    assert (await admin.request("GET", f"/knowledge/new?miss={theirs.id}")).status == 200
    dispatcher = await kb_console.logged_in("dispatcher")
    assert (await dispatcher.request("GET", "/api/v1/knowledge/misses")).status == 403
    assert (
        'href="/knowledge/misses"'
        not in await (await dispatcher.request("GET", "/knowledge")).text()
    )


async def test_misses_grouped_by_similarity_are_added_as_an_alternative_question_in_one_click(
    kb_console: Console, bot_index: KnowledgeIndex
) -> None:
    async with kb_console.sessionmaker() as db:
        own = await kb.create_entry(
            db, validate_content(entry("社保卡丢失如何补办", department=OWN)), "admin"
        )
        theirs = await kb.create_entry(
            db, validate_content(entry("社保卡怎么激活", department=OTHER)), "admin"
        )
        await kb.publish_entry(db, own.id, "admin")
        first = await kb.record_miss(db, "社保卡丢了怎么补办", own.id, 0.4, "low_confidence")
        second = await kb.record_miss(db, "我的社保卡掉了咋补啊", own.id, 0.3, "low_confidence")
        foreign = await kb.record_miss(db, "社保卡丢了去哪里补办", theirs.id, 0.3, "low_confidence")
        own_id, theirs_id = own.id, theirs.id
    handler = await kb_console.logged_in("handler")
    groups = (await (await handler.request("GET", "/api/v1/knowledge/miss-groups")).json())[
        "groups"
    ]
    assert [(sorted(g["miss_ids"]), g["count"], g["best_entry"]) for g in groups] == [
        ([first.id, second.id], 2, {"id": own_id, "question": "社保卡丢失如何补办"})
    ]
    ids = ",".join(map(str, groups[0]["miss_ids"]))
    page = await (await handler.request("GET", "/knowledge/misses")).text()
    assert (
        "社保卡丢了怎么补办" in page
        and "我的社保卡掉了咋补啊" in page
        and "社保卡丢了去哪里补办" not in page
    )
    assert (
        f'value="{ids}"' in page
        and f'value="{own_id}"></label>' in page
        and "添加为相似问法" in page
    )
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    form = {
        "csrf_token": token,
        "entry_id": str(own_id),
        "question": "社保卡丢了怎么补办",
        "miss_ids": ids,
    }

    for role in ("agent", "dispatcher"):
        refused = await (await kb_console.logged_in(role)).write(
            "POST",
            "/api/v1/knowledge/misses/alternative",
            {"entry_id": own_id, "question": "社保卡丢了怎么补办", "miss_ids": [first.id]},
        )
        assert refused.status == 403
    no_csrf = await handler.request(
        "POST", "/knowledge/misses/alternative", data={**form, "csrf_token": "x"}
    )
    assert no_csrf.status == 403
    other_department = await handler.request(
        "POST", "/knowledge/misses/alternative", data={**form, "entry_id": str(theirs_id)}
    )
    assert other_department.status == 403 and "只能编辑本单位" in await other_department.text()
    not_curated = await handler.request(
        "POST",
        "/knowledge/misses/alternative",
        data={**form, "miss_ids": f"{first.id},{foreign.id}"},
    )
    assert not_curated.status == 404 and "不存在或已处理" in await not_curated.text()
    for bad in ("0", "x", ""):
        assert (
            await handler.request(
                "POST", "/knowledge/misses/alternative", data={**form, "miss_ids": bad}
            )
        ).status == 422

    added = await handler.request("POST", "/knowledge/misses/alternative", data=form)
    assert added.status == 303 and added.headers["Location"] == f"/knowledge/misses?added={own_id}"
    after = await (await handler.request("GET", added.headers["Location"])).text()
    assert 'id="kb-added"' in after and "我的社保卡掉了咋补啊" not in after  # the group is handled
    saved = await (await handler.request("GET", f"/api/v1/knowledge/entries/{own_id}")).json()
    assert saved["alt_questions"] == ["社保卡丢了怎么补办"] and saved["version"] == 3
    history = await (
        await handler.request("GET", f"/api/v1/knowledge/entries/{own_id}/history")
    ).json()
    last = history["revisions"][-1]
    assert (last["action"], last["action_label"], last["actor"]) == (
        "alternative",
        "添加相似问法",
        "handler",
    )
    handled = (
        await (await handler.request("GET", "/api/v1/knowledge/misses?handled=true")).json()
    )["misses"]
    assert {(m["id"], m["handled_by"], m["handled_entry_id"]) for m in handled} == {
        (first.id, "handler", own_id),
        (second.id, "handler", own_id),
    }
    assert bot_index.ask("社保卡丢了怎么补办").answer_id == own_id  # the bot's index was refreshed
    again = await handler.request(
        "POST", "/knowledge/misses/alternative", data={**form, "question": "社保卡掉了咋补"}
    )
    assert again.status == 404  # the group is handled already


async def test_an_imported_entry_with_a_derived_spoken_answer_is_marked_until_an_editor_saves_it(
    kb_console: Console,
) -> None:
    async with kb_console.sessionmaker() as db:
        await import_file(db, GOV_FAQ, "导入员")
        fee = await kb.find_by_question(db, "办理身份证要交多少钱")
        assert fee is not None
        eid = fee.id
    admin = await kb_console.logged_in("admin")
    listing = await (await admin.request("GET", "/knowledge?text=身份证要交")).text()
    assert "自动生成，请审核" in listing
    page = await (await admin.request("GET", f"/knowledge/{eid}")).text()
    assert 'id="kb-speech-derived"' in page
    assert (await (await admin.request("GET", f"/api/v1/knowledge/entries/{eid}")).json())[
        "speech_derived"
    ] is True
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    async with kb_console.sessionmaker() as db:
        form = {
            "csrf_token": token,
            "expected_version": "1",
            **_form_of(await kb.get_entry(db, eid)),
        }
    assert (await admin.request("POST", f"/knowledge/{eid}", data=form)).status == 303
    page = await (await admin.request("GET", f"/knowledge/{eid}")).text()
    assert 'id="kb-speech-derived"' not in page
    assert (
        "自动生成，请审核"
        not in await (await admin.request("GET", "/knowledge?text=身份证要交")).text()
    )
