"""The bot's misses grouped by similarity, and a group added to an entry as an alternative question."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from knowledge import services
from knowledge.errors import InvalidInput, MissNotFound
from knowledge.miss_groups import MissGrouper
from knowledge.models import KnowledgeMiss
from knowledge.schemas import validate_content

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def miss(i: int, text: str, best: int | None = None) -> KnowledgeMiss:
    return KnowledgeMiss(
        id=i,
        question_text=text,
        best_entry_id=best,
        score=0.3,
        reason="low_confidence",
        at=T0 - timedelta(minutes=i),
    )


@pytest.fixture(scope="module")
def grouper(settings: Settings) -> MissGrouper:
    return MissGrouper.from_settings(settings)


def test_similar_questions_form_one_group_with_count_examples_and_the_most_frequent_closest_entry(
    grouper: MissGrouper,
) -> None:
    misses = [
        miss(1, "社保卡丢了怎么补办", 7),
        miss(2, "垃圾清运车早上五点就来太吵了", 3),
        miss(3, "我的设保卡掉了咋补啊", 9),
        miss(4, "社保卡丢了去哪里补", 7),
        miss(5, "垃圾车天天早上五点来吵死了"),
        miss(6, "楼下烧烤店油烟太大"),
    ]
    groups = grouper.group(misses)
    assert [sorted(g.miss_ids) for g in groups] == [[1, 3, 4], [2, 5], [6]]
    social = groups[0]
    assert social.count == 3 and social.best_entry_id == 7 and social.candidate_entry_ids == [7, 9]
    assert set(social.examples) == {
        "社保卡丢了怎么补办",
        "我的设保卡掉了咋补啊",
        "社保卡丢了去哪里补",
    }
    assert social.question == social.examples[0] and social.latest == T0 - timedelta(minutes=1)
    assert groups[1].best_entry_id == 3 and groups[2].best_entry_id is None


def test_the_same_words_asked_twice_are_one_example(grouper: MissGrouper) -> None:
    groups = grouper.group(
        [miss(1, "公积金怎么提取"), miss(2, "公积金怎么提取"), miss(3, "住房公积金能取出来吗")]
    )
    assert len(groups) == 1 and groups[0].count == 3
    assert sorted(groups[0].examples) == sorted(["公积金怎么提取", "住房公积金能取出来吗"])
    assert grouper.group([]) == []


async def test_adding_a_group_as_alternative_question_writes_history_and_marks_it_handled(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as s:
        entry = await services.create_entry(
            s,
            validate_content(
                {
                    "question": "社保卡丢失如何补办",
                    "answer_speech": "带身份证到社保经办机构补办。",
                    "answer_text": "带身份证到社保经办机构补办。",
                    "department": "市人社局",
                }
            ),
            "甲",
            now=T0,
        )
        first = await services.record_miss(
            s, "社保卡丢了怎么补办", entry.id, 0.4, "low_confidence", now=T0
        )
        second = await services.record_miss(s, "社保卡掉了去哪补", None, None, "unanswered", now=T0)
        other = await services.record_miss(s, "我家猫丢了", None, None, "unanswered", now=T0)
        entry_id, ids, other_id = (
            entry.id,
            [first.id, second.id],
            other.id,
        )  # a refusal rolls back: rows expire
        with pytest.raises(MissNotFound):  # a miss out of the department's scope refuses the whole
            await services.add_alternative(
                s, entry_id, "社保卡丢了怎么补办", ids, "乙", department="市人社局", now=T0
            )
        added = await services.add_alternative(s, entry_id, "社保卡丢了怎么补办", ids, "乙", now=T0)
        assert (
            added.alt_questions == ["社保卡丢了怎么补办"]
            and added.version == 2
            and added.updated_by == "乙"
        )
        history = await services.entry_history(s, entry_id)
        assert (history[-1].action, history[-1].actor, history[-1].previous["alt_questions"]) == (  # type: ignore[index]
            services.ALTERNATIVE,
            "乙",
            [],
        )
        open_misses = await services.list_misses(s, handled=False)
        assert [m.id for m in open_misses] == [other_id]
        done = await services.list_misses(s, handled=True)
        assert {(m.id, m.handled_by, m.handled_entry_id) for m in done} == {
            (i, "乙", entry_id) for i in ids
        }
        with pytest.raises(MissNotFound):  # a handled group cannot be added twice
            await services.add_alternative(s, entry_id, "社保卡掉了去哪补", ids[:1], "乙", now=T0)
        with pytest.raises(InvalidInput) as err:
            await services.add_alternative(
                s, entry_id, "社保卡丢了怎么补办", [other_id], "乙", now=T0
            )
        assert err.value.code == "kb.duplicate_alternative"
        assert [m.id for m in await services.list_misses(s, handled=False)] == [other_id]
        assert (await services.get_entry(s, entry_id)).version == 2
