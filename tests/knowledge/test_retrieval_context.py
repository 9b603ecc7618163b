"""Retrieval for a dialogue: the runner-up offered when two entries are close (clarifying question), and a
follow-up question (追问) understood in the context of the answer before — while a new question stays new."""

from __future__ import annotations

import pytest

from config import Settings
from config.settings import replace_settings
from knowledge.retrieval import IndexedEntry, KnowledgeIndex

HUKOU = "市公安局户政管理处"


def entry(id_: int, question: str, answer: str, department: str, *alt: str) -> IndexedEntry:
    return IndexedEntry(id_, question, answer, answer, department, alt)


LOST = entry(1, "居民身份证丢了怎么补办", "到派出所申请补领。", HUKOU, "身份证丢失怎么补领")
REPORT = entry(8, "身份证丢了怎么挂失", "拨打派出所电话挂失。", HUKOU)
MATERIALS = entry(3, "补办身份证需要带什么材料", "带户口簿和近期照片。", HUKOU)
FUND = entry(5, "住房公积金怎么提取", "购房、租房、退休可以提取。", "市住房公积金管理中心")
ENTRIES = (
    LOST,
    entry(2, "身份证快到期了怎么换领", "到期前三个月内换领。", HUKOU),
    MATERIALS,
    entry(4, "结婚登记需要带什么材料", "双方带户口簿和身份证。", "市民政局"),
    FUND,
    entry(6, "个体户营业执照怎么办理", "到政务服务中心办理。", "市市场监督管理局"),
    entry(7, "怎么申请低保", "到街道提出申请。", "市民政局"),
)


def index_of(
    settings: Settings, entries: tuple[IndexedEntry, ...], **knowledge: float
) -> KnowledgeIndex:
    return KnowledgeIndex.from_settings(
        replace_settings(settings, {"knowledge": knowledge}), entries
    )


@pytest.fixture(scope="module")
def index(settings: Settings) -> KnowledgeIndex:
    return index_of(settings, ENTRIES)


def test_two_close_plausible_entries_carry_the_runner_up(settings: Settings) -> None:
    answer = index_of(settings, (*ENTRIES, REPORT)).ask("身份证丢了怎么办")
    assert not answer.confident
    assert {answer.answer_id, *(c.entry.id for c in answer.alternatives)} == {LOST.id, REPORT.id}
    assert answer.to_json()["alternatives"] == [
        {"answer_id": c.entry.id, "question": c.entry.question} for c in answer.alternatives
    ]


def test_no_runner_up_when_clarifying_is_off_or_one_entry_is_clearly_meant(
    settings: Settings, index: KnowledgeIndex
) -> None:
    off = index_of(settings, (*ENTRIES, REPORT), clarify_threshold=1.0).ask("身份证丢了怎么办")
    assert not off.confident and off.alternatives == ()
    clear = index.ask("身份证丢了怎么办")  # no entry about reporting the loss: 补办 is meant
    assert (clear.answer_id, clear.confident, clear.alternatives) == (LOST.id, True, ())
    assert "alternatives" not in clear.to_json()  # the shape callers know


def test_a_follow_up_is_answered_in_the_context_of_the_answer_before(index: KnowledgeIndex) -> None:
    before = index.ask("居民身份证丢了怎么补办")
    assert before.answer_id == LOST.id
    alone = index.ask("那要带什么材料？")  # on its own: 结婚登记, or nothing sure
    assert alone.answer_id != MATERIALS.id or not alone.confident
    followed = index.ask("那要带什么材料？", context=before)
    assert (followed.answer_id, followed.confident) == (MATERIALS.id, True)


@pytest.mark.parametrize("question", ["住房公积金怎么提取", "公积金怎么取"])
def test_a_new_question_after_an_answer_stays_new(index: KnowledgeIndex, question: str) -> None:
    before = index.ask("居民身份证丢了怎么补办")
    answer = index.ask(question, context=before)
    assert (answer.answer_id, answer.confident) == (FUND.id, True)
