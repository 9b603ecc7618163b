"""The dialogue asks when it is not sure (issue #12): a clarifying question between two close entries, answered
by key or by words; a follow-up question answered in the context of the answer before while a new question
stays new; a long answer spoken in short form with its full text sent by SMS through the outbox."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from asr import intents
from asr.audiosocket_server import Dtmf
from asr.bot import HotlineDesk
from asr.dialogue import BotOutcome, Desk, Dialogue, DialogueConfig, Intake, brief
from asr.prompts import Prompts, load_prompts
from config import Settings
from config.pii import mask_phone
from config.settings import BotSettings, replace_settings
from knowledge import services as kb
from knowledge.retrieval import Answer, Candidate, IndexedEntry, KnowledgeIndex
from knowledge.schemas import EntryContent
from tests.asr.fakes import FakeDesk, FakeRecogniser, FakeTts, ScriptedLine
from tickets.models import OutboxMessage

CALLER = "13800138000"
HUKOU = "市公安局户政管理处"
FAST = BotSettings(silence_timeout_s=0.05, end_of_turn_s=0.01, dtmf_timeout_s=0.3, follow_ups=2)


def entry(id_: int, question: str, answer: str, department: str = HUKOU) -> IndexedEntry:
    return IndexedEntry(id_, question, answer, answer, department)


LOST = entry(1, "居民身份证丢了怎么补办", "请到户籍所在地派出所申请补领。")
RENEW = entry(2, "身份证快到期了怎么换领", "请在到期前三个月内到派出所换领。")
MATERIALS = entry(3, "补办身份证需要带什么材料", "请带户口簿和近期照片。")
WEDDING = entry(4, "结婚登记需要带什么材料", "双方带户口簿和身份证。", "市民政局")
FUND = entry(5, "住房公积金怎么提取", "购房、租房、退休可以提取公积金。", "市住房公积金管理中心")
LICENCE = entry(6, "个体户营业执照怎么办理", "到政务服务中心办理。", "市市场监督管理局")


class ScriptedDesk(FakeDesk):
    """A knowledge base that gives ``answers`` by question (else nothing); 即办 closes recorded."""

    def __init__(self, answers: dict[str, Answer] | None = None) -> None:
        super().__init__()
        self.answers = answers or {}
        self.asked: list[tuple[str, int | None]] = []  # (text, answer id of the context)
        self.instant: list[Answer] = []

    async def ask(self, text: str, context: Answer | None = None) -> Answer:
        self.asked.append((text, context.answer_id if context else None))
        return self.answers.get(text) or await super().ask(text)

    async def close_instant(self, intake: Intake, answer: Answer) -> str:
        self.instant.append(answer)
        return "12345-20250303-00001"


class IndexDesk(ScriptedDesk):
    """The real retrieval (:class:`KnowledgeIndex`) over a few entries."""

    def __init__(self, index: KnowledgeIndex) -> None:
        super().__init__()
        self.index = index

    async def ask(self, text: str, context: Answer | None = None) -> Answer:
        self.asked.append((text, context.answer_id if context else None))
        return self.index.ask(text, context=context)


async def call(
    settings: Settings,
    line: ScriptedLine,
    desk: Desk,
    bot: BotSettings = FAST,
    caller: str = CALLER,
) -> BotOutcome:
    async def caller_for(_call_id: str) -> str | None:
        return caller

    dialogue = Dialogue(
        line,  # type: ignore[arg-type]
        FakeRecogniser(*line.said()),  # type: ignore[arg-type]
        tts=FakeTts(),  # type: ignore[arg-type]
        desk=desk,
        prompts=load_prompts(settings),
        cfg=DialogueConfig.from_settings(bot),
        caller_for=caller_for,
        trace=line.asked_for_number,
    )
    return await dialogue.run()


# --- clarifying question ------------------------------------------------------------------------------------

UNSURE = "身份证的事怎么办"
CLOSE = replace(
    Answer.of(LOST, 0.6, False),
    alternatives=(Candidate(RENEW, relevance=0.9, coverage=0.5, explained=0.5),),
)


def clarification(prompts: Prompts) -> str:
    return prompts.clarification("居民身份证丢了怎么补办", "身份证快到期了怎么换领")


@pytest.mark.parametrize(
    ("reply", "meant"),
    [
        (Dtmf("1"), LOST),
        (Dtmf("2"), RENEW),
        ("第二个", RENEW),
        ("前面那个", LOST),
        ("快到期了要换", RENEW),  # words of the second question
    ],
)
async def test_two_close_entries_are_settled_by_asking_which_one(
    settings: Settings, reply: str | Dtmf, meant: IndexedEntry
) -> None:
    desk = ScriptedDesk({UNSURE: CLOSE})
    line = ScriptedLine((None, UNSURE), ("clarify", reply), ("answer", Dtmf("1")))
    outcome = await call(settings, line, desk)
    prompts = load_prompts(settings)
    assert (outcome.next, outcome.reason, outcome.answer_id) == ("hangup", "solved", meant.id)
    assert clarification(prompts) in outcome.transcript
    assert f"机器人：{meant.answer_speech}" in outcome.transcript
    [closed] = desk.instant
    assert (closed.answer_id, closed.confident) == (meant.id, True)
    assert desk.miss_log == [
        (UNSURE, meant.id, "ambiguous")
    ]  # the miss log: a clarification was needed


@pytest.mark.parametrize("reply", ["都不是", None])
async def test_neither_or_nothing_is_not_understood_and_becomes_a_ticket(
    settings: Settings, reply: str | None
) -> None:
    desk = ScriptedDesk({UNSURE: CLOSE})
    steps: list[tuple[str | None, str | Dtmf]] = [(None, UNSURE)]
    if reply is not None:
        steps.append(("clarify", reply))
    steps.append(("ask_matter", "就在幸福路派出所"))
    outcome = await call(settings, ScriptedLine(*steps), desk)
    prompts = load_prompts(settings)
    assert (outcome.next, outcome.reason, outcome.answer_id) == ("hangup", "ticket", None)
    assert clarification(prompts) in outcome.transcript and desk.instant == []
    assert (
        LOST.answer_speech not in outcome.transcript
        and RENEW.answer_speech not in outcome.transcript
    )
    assert desk.miss_log == [(UNSURE, LOST.id, "ambiguous")]
    assert desk.tickets[0].content.startswith(UNSURE)


def test_long_questions_are_named_shortly_in_the_clarifying_question() -> None:
    assert brief("居民身份证丢了怎么补办？") == "居民身份证丢了怎么补办"
    assert brief("退休人员住房公积金怎么提取，需要带哪些材料") == "退休人员住房公积金怎么提取"
    assert (
        brief("退休以后住房公积金账户里剩下的钱怎么全部提取出来")
        == "退休以后住房公积金账户里剩下的钱"
    )


def test_which_of_two_questions_the_caller_means() -> None:
    questions = (LOST.question, RENEW.question)
    said = ["第一个", "第二个", "前面那个", "后面那个", "换领", "我是丢了", "都不是", "嗯"]
    assert [intents.pick(text, questions) for text in said] == [0, 1, 0, 1, 1, 0, None, None]
    assert [intents.pick_key(d) for d in "123"] == [0, 1, None]
    assert intents.neither("两个都不是") and not intents.neither("第一个")


# --- follow-up in context -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def index(settings: Settings) -> KnowledgeIndex:
    return KnowledgeIndex.from_settings(settings, [LOST, RENEW, MATERIALS, WEDDING, FUND, LICENCE])


async def test_a_follow_up_is_answered_in_the_context_of_the_answer_before(
    settings: Settings, index: KnowledgeIndex
) -> None:
    desk = IndexDesk(index)
    line = ScriptedLine(
        (None, LOST.question), ("answer", "那要带什么材料？"), ("answer", Dtmf("1"))
    )
    outcome = await call(settings, line, desk)
    assert (outcome.reason, outcome.answer_id) == ("solved", MATERIALS.id)
    assert desk.asked == [(LOST.question, None), ("那要带什么材料？", LOST.id)]
    assert outcome.transcript.index(LOST.answer_speech) < outcome.transcript.index(
        MATERIALS.answer_speech
    )
    assert WEDDING.answer_speech not in outcome.transcript
    assert [a.answer_id for a in desk.instant] == [MATERIALS.id] and desk.misses == []


async def test_a_new_question_after_an_answer_is_answered_as_new(
    settings: Settings, index: KnowledgeIndex
) -> None:
    desk = IndexDesk(index)
    line = ScriptedLine((None, LOST.question), ("answer", FUND.question), ("answer", Dtmf("1")))
    outcome = await call(settings, line, desk)
    assert (outcome.reason, outcome.answer_id) == ("solved", FUND.id)
    assert FUND.answer_speech in outcome.transcript


async def test_without_follow_ups_a_question_after_the_answer_is_not_taken(
    settings: Settings, index: KnowledgeIndex
) -> None:
    desk = IndexDesk(index)
    line = ScriptedLine((None, LOST.question), ("answer", "那要带什么材料？"))
    outcome = await call(settings, line, desk, FAST.model_copy(update={"follow_ups": 0}))
    assert MATERIALS.answer_speech not in outcome.transcript
    assert desk.asked == [(LOST.question, None)]
    assert (outcome.reason, outcome.answer_id) == ("ticket", LOST.id)
    assert desk.miss_log == [(LOST.question, LOST.id, "not_solved")]


# --- long answers: short form, SMS ---------------------------------------------------------------------------

LONG_SPEECH = (
    "身份证丢失的，应当申请补领。一般本人到户籍所在地派出所办理，现场采集照片和指纹。"
    "领证前如果急用，可以同时申请临时身份证。具体材料以当地窗口要求为准。"
)
SHORT = "身份证丢失的，应当申请补领。一般本人到户籍所在地派出所办理，现场采集照片和指纹。"
LINK = "https://zwfw.example.gov.cn/sfz"
WRITTEN = LONG_SPEECH + f"网上预约：{LINK}（依据：《居民身份证法》第十一条）"


async def long_answer_call(
    settings: Settings, db: async_sessionmaker[AsyncSession], *, sms: bool, caller: str = CALLER
) -> tuple[BotOutcome, list[OutboxMessage]]:
    bot = FAST.model_copy(update={"long_answer_chars": 45, "answer_sms": sms})
    settings = replace_settings(settings, {"asr": {"bot": bot.model_dump()}})
    async with db() as session:
        created = await kb.create_entry(
            session,
            EntryContent(question=LOST.question, answer_speech=LONG_SPEECH, answer_text=WRITTEN),
            "测试",
        )
        await kb.publish_entry(session, created.id, "测试")
    desk = await HotlineDesk.load(settings, db)
    # the caller asks the same again: answered again, not texted again
    line = ScriptedLine((None, LOST.question), ("answer", LOST.question), ("answer", Dtmf("1")))
    outcome = await call(settings, line, desk, bot, caller)
    async with db() as session:
        return outcome, list(await session.scalars(select(OutboxMessage)))


async def test_a_long_answer_is_spoken_short_and_sent_in_full_by_sms_once(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="asr.dialogue"):
        outcome, queued = await long_answer_call(settings, sessionmaker, sms=True)
    prompts = load_prompts(settings)
    assert f"机器人：{SHORT}\n机器人：{prompts.answer_by_sms}" in outcome.transcript
    assert LONG_SPEECH not in outcome.transcript
    assert outcome.transcript.count(prompts.answer_by_sms) == 1
    assert outcome.transcript.count(SHORT) == 2
    [sms] = queued
    assert (sms.channel, sms.recipient, sms.status) == ("sms", CALLER, "pending")
    assert LINK in sms.body and LOST.question in sms.body
    logged = [r.getMessage() for r in caplog.records]
    assert any(mask_phone(CALLER) in line for line in logged)
    assert not any(CALLER in line for line in logged)  # the number only masked


@pytest.mark.parametrize(
    ("sms", "caller"),
    [(False, CALLER), (True, "010-12345678")],
    ids=["no_sms_sender", "landline_caller"],
)
async def test_without_an_sms_sender_or_a_mobile_the_short_answer_says_nothing_of_sms(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], sms: bool, caller: str
) -> None:
    outcome, queued = await long_answer_call(settings, sessionmaker, sms=sms, caller=caller)
    assert f"机器人：{SHORT}" in outcome.transcript and LONG_SPEECH not in outcome.transcript
    assert "短信" not in outcome.transcript
    assert queued == []


async def test_the_miss_log_keeps_that_a_clarification_was_needed(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session:
        chosen = await kb.create_entry(
            session,
            EntryContent(
                question=RENEW.question,
                answer_speech=RENEW.answer_speech,
                answer_text=RENEW.answer_text,
            ),
            "测试",
        )
    desk = await HotlineDesk.load(settings, sessionmaker)
    await desk.record_miss(UNSURE, Answer.of(replace(RENEW, id=chosen.id), 0.6, True), "ambiguous")
    async with sessionmaker() as session:
        [miss] = await kb.list_misses(session)
    assert (miss.question_text, miss.reason, miss.best_entry_id) == (UNSURE, "ambiguous", chosen.id)
