"""Entry services on SQLite and PostgreSQL: versions, history, conflicts, validity, misses."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from knowledge import services
from knowledge.errors import (
    DuplicateQuestion,
    IllegalStatus,
    InvalidInput,
    NotFound,
    VersionConflict,
)
from knowledge.retrieval import KnowledgeIndex
from knowledge.schemas import validate_content

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def content(question: str = "护照丢了怎么补办", **over: object):  # type: ignore[no-untyped-def]
    data = {
        "question": question,
        "answer_speech": "带身份证到出入境大厅申请补发。",
        "answer_text": "带身份证到出入境大厅申请补发。",
        "department": "市公安局出入境管理支队",
        "alt_questions": ["护照遗失怎么办"],
        "keywords": ["护照"],
        "source": "《中华人民共和国护照法》第十一条",
    }
    data.update(over)
    return validate_content(data)


async def test_create_update_publish_archive_keep_versions_and_history(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as s:
        entry = await services.create_entry(s, content(), "张编辑", now=T0)
        assert (entry.status, entry.version) == ("draft", 1)
        entry = await services.update_entry(
            s, entry.id, content(answer_text="新的文字答案"), "李编辑", expected_version=1, now=T0
        )
        assert entry.version == 2 and entry.answer_text == "新的文字答案"
        entry = await services.publish_entry(s, entry.id, "李编辑", expected_version=2, now=T0)
        entry = await services.archive_entry(s, entry.id, "王主任", now=T0)
        assert (entry.status, entry.version) == ("archived", 4)
        history = await services.entry_history(s, entry.id)
    assert [(h.action, h.version, h.actor) for h in history] == [
        ("create", 1, "张编辑"),
        ("update", 2, "李编辑"),
        ("publish", 3, "李编辑"),
        ("archive", 4, "王主任"),
    ]
    assert history[0].previous is None
    assert history[1].previous["answer_text"] == "带身份证到出入境大厅申请补发。"
    assert history[1].previous["version"] == 1
    assert history[3].previous["status"] == "published"
    assert history[2].at == T0


async def test_stale_update_is_a_version_conflict_and_changes_nothing(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as s:
        entry = await services.create_entry(s, content(), "甲")
        await services.update_entry(
            s, entry.id, content(answer_text="甲的修改"), "甲", expected_version=1
        )
    async with sessionmaker() as s:
        with pytest.raises(VersionConflict) as err:
            await services.update_entry(
                s, entry.id, content(answer_text="乙的修改"), "乙", expected_version=1
            )
        assert err.value.code == "kb.version_conflict" and "版本" in err.value.message
    async with sessionmaker() as s:
        fresh = await services.get_entry(s, entry.id)
        assert (fresh.answer_text, fresh.version) == ("甲的修改", 2)
        assert len(await services.entry_history(s, entry.id)) == 2


async def test_errors_have_codes(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as s:
        with pytest.raises(NotFound) as nf:
            await services.get_entry(s, 999)
        assert nf.value.code == "kb.not_found"
        entry_id = (await services.create_entry(s, content(), "甲")).id
        with pytest.raises(DuplicateQuestion):
            await services.create_entry(s, content(), "甲")
        await services.publish_entry(s, entry_id, "甲")
        with pytest.raises(IllegalStatus) as ill:
            await services.publish_entry(s, entry_id, "甲")
        assert ill.value.code == "kb.illegal_status"
        assert (await services.get_entry(s, entry_id)).version == 2


def test_content_rules_are_checked_with_chinese_messages() -> None:
    with pytest.raises(InvalidInput, match="问题"):
        content("问" * 201)
    with pytest.raises(InvalidInput, match="网址或括号"):
        content(answer_speech="详见 https://example.org")
    with pytest.raises(InvalidInput, match="生效日期晚于失效日期"):
        content(valid_from=date(2025, 2, 1), valid_to=date(2025, 1, 1))
    with pytest.raises(InvalidInput, match="语音答案超过"):
        validate_content({"question": "问", "answer_speech": "很长" * 200, "answer_text": "短"})


async def test_list_filters_and_published_on_a_date(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    async with sessionmaker() as s:
        a = await services.create_entry(s, content("护照丢了怎么补办"), "甲")
        b = await services.create_entry(
            s,
            content(
                "社保卡丢了怎么补办",
                department="市人力资源和社会保障局",
                valid_from=date(2025, 1, 1),
                valid_to=date(2025, 6, 30),
            ),
            "甲",
        )
        await services.create_entry(s, content("草稿问题"), "甲")
        await services.publish_entry(s, a.id, "甲")
        await services.publish_entry(s, b.id, "甲")
        assert [
            e.question for e in await services.list_entries(s, department="市人力资源和社会保障局")
        ] == ["社保卡丢了怎么补办"]
        assert {e.question for e in await services.list_entries(s, status="draft")} == {"草稿问题"}
        assert [e.question for e in await services.list_entries(s, text="社保")] == [
            "社保卡丢了怎么补办"
        ]
        assert {e.id for e in await services.published_on(s, date(2025, 3, 1))} == {a.id, b.id}
        assert {e.id for e in await services.published_on(s, date(2025, 7, 1))} == {a.id}
        index = KnowledgeIndex.from_settings(settings)
        await services.refresh_index(s, index, date(2025, 7, 1))
        assert index.ask("社保卡丢了怎么补办").answer_id != b.id
        await services.refresh_index(s, index, date(2025, 3, 1))
        assert index.ask("社保卡丢了怎么补办").answer_id == b.id
        count, latest = await services.change_stamp(s)
        assert count == 3 and latest is not None


async def test_missed_questions_are_recorded_and_listed(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as s:
        entry = await services.create_entry(s, content(), "甲")
        await services.record_miss(s, "我家猫丢了", None, None, "unanswered", now=T0)
        await services.record_miss(
            s,
            "护照咋整",
            entry.id,
            0.41,
            "low_confidence",
            now=datetime(2025, 3, 3, 10, 0, tzinfo=UTC),
        )
        with pytest.raises(InvalidInput) as bad:
            await services.record_miss(s, "问题", None, None, "bored")
        assert bad.value.code == "kb.bad_miss_reason"
        misses = await services.list_misses(s)
        assert [(m.question_text, m.best_entry_id, m.reason) for m in misses] == [
            ("护照咋整", entry.id, "low_confidence"),
            ("我家猫丢了", None, "unanswered"),
        ]
        assert [m.question_text for m in await services.list_misses(s, reason="unanswered")] == [
            "我家猫丢了"
        ]
        assert misses[0].at == datetime(2025, 3, 3, 10, 0, tzinfo=UTC)


async def test_missed_questions_keep_no_phone_number(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as s:
        miss = await services.record_miss(
            s,
            "我电话13812345678，座机0931-1234567，就是一三九一二三四五六七八，护照丢了",
            None,
            None,
            "unanswered",
        )
        [stored] = await services.list_misses(s)
    assert stored.id == miss.id
    assert (
        stored.question_text
        == "我电话138****5678，座机0931-***4567，就是一三九****五六七八，护照丢了"
    )


async def test_missed_questions_by_the_department_of_their_closest_entry(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as s:
        passport = await services.create_entry(s, content(), "甲")
        pension = await services.create_entry(
            s, content("养老保险怎么交", department="市人社局"), "甲"
        )
        near_passport = await services.record_miss(
            s, "护照咋整", passport.id, 0.41, "low_confidence", now=T0
        )
        near_pension = await services.record_miss(
            s, "养老金咋交", pension.id, 0.38, "low_confidence", now=T0
        )
        nowhere = await services.record_miss(s, "我家猫丢了", None, None, "unanswered", now=T0)
        police = "市公安局出入境管理支队"
        assert [m.id for m in await services.list_misses(s, department=police)] == [
            near_passport.id
        ]
        assert [m.id for m in await services.list_misses(s, department="市民政局")] == []
        assert {m.id for m in await services.list_misses(s)} == {
            near_passport.id,
            near_pension.id,
            nowhere.id,
        }
        assert await services.get_miss(s, near_passport.id, department=police) is not None
        assert await services.get_miss(s, near_pension.id, department=police) is None
        assert await services.get_miss(s, nowhere.id, department=police) is None
        assert (await services.get_miss(s, nowhere.id)) is not None
