"""Counting clarifying questions honestly (issue #12): the development-set evaluation counts a question as
resolved by one clarifying question exactly when the bot would ask it and name the right entry; the spoken bench
splits the right answers into outright and after the caller pressed 1 or 2. Small hand-made inputs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from asr.dialogue import BotOutcome, Dialogue, DialogueConfig, brief
from asr.prompts import load_prompts
from bench.containment import Call, Question, choice, figures, offer
from bench.devset_eval import clarify_figures, offered
from config import Settings
from config.settings import BotSettings
from knowledge.evaluation import EvalItem
from knowledge.retrieval import NO_ANSWER, Answer, Candidate, IndexedEntry
from tests.asr.fakes import FakeDesk, FakeRecogniser, FakeTts, ScriptedLine

FAST = BotSettings(silence_timeout_s=0.05, end_of_turn_s=0.01, dtmf_timeout_s=0.05)
LOST = IndexedEntry(
    1, "居民身份证丢了怎么补办", "请到派出所申请补领。", "请到派出所申请补领。", "户政"
)
RENEW = IndexedEntry(2, "身份证快到期了怎么换领", "请在到期前换领。", "请在到期前换领。", "户政")
FUND = IndexedEntry(
    3, "住房公积金怎么提取", "购房、租房可以提取。", "购房、租房可以提取。", "公积金"
)


def close(first: IndexedEntry, second: IndexedEntry, *, confident: bool = False) -> Answer:
    """The index's answer when ``first`` and ``second`` fit about equally well."""
    return Answer.of(first, 0.6, confident, (Candidate(second, 0.9, 0.5, 0.5),))


SURE = Answer.of(FUND, 0.95, True)
UNSURE = Answer.of(FUND, 0.3, False)


# --- the evaluation asks when the dialogue asks ------------------------------------------------------------


class OneAnswerDesk(FakeDesk):
    def __init__(self, answer: Answer) -> None:
        super().__init__()
        self.answer = answer

    async def ask(self, text: str, context: Answer | None = None) -> Answer:
        return self.answer if context is None else NO_ANSWER


@pytest.mark.parametrize(
    "answer",
    [
        close(LOST, RENEW),
        close(RENEW, LOST),
        close(LOST, RENEW, confident=True),
        SURE,
        UNSURE,
        NO_ANSWER,
    ],
    ids=["close", "close-reversed", "confident-with-runner-up", "confident", "unsure", "nothing"],
)
async def test_the_evaluation_counts_a_clarifying_question_where_the_dialogue_asks_one(
    settings: Settings, answer: Answer
) -> None:
    prompts = load_prompts(settings)
    line = ScriptedLine((None, "身份证的事怎么办"))
    dialogue = Dialogue(
        line,  # type: ignore[arg-type]
        FakeRecogniser(*line.said()),  # type: ignore[arg-type]
        tts=FakeTts(),  # type: ignore[arg-type]
        desk=OneAnswerDesk(answer),
        prompts=prompts,
        cfg=DialogueConfig.from_settings(FAST),
        trace=line.asked_for_number,
    )
    outcome = await dialogue.run()

    named = offered(answer)
    assert ("clarify" in line.marks) == (named is not None)
    if named is not None:
        assert prompts.clarification(*map(brief, named)) in outcome.transcript


def test_resolved_neither_and_out_of_scope_shares_of_the_clarifying_questions() -> None:
    answers = {
        "丢了身份证": close(LOST, RENEW),  # right entry named first
        "证件到期": close(LOST, RENEW),  # right entry named second
        "身份证的事": close(LOST, RENEW),  # neither named is right
        "公积金": SURE,  # answered outright: not a clarifying question
        "天气怎么样": close(LOST, RENEW),  # out of scope, given one
        "几点了": UNSURE,  # out of scope, not given one
    }
    items = [
        EvalItem("丢了身份证", LOST.question),
        EvalItem("证件到期", RENEW.question),
        EvalItem("身份证的事", FUND.question),
        EvalItem("公积金", FUND.question),
        EvalItem("天气怎么样", None),
        EvalItem("几点了", None),
    ]

    shares = clarify_figures(answers.__getitem__, items)

    assert shares == {
        "clarify_resolved": 2 / 4,
        "clarify_neither": 1 / 4,
        "out_of_scope_clarified": 1 / 2,
    }


# --- the spoken bench: outright and after a clarifying question ------------------------------------------


def call(
    expected: str | None, answer_id: int | None, *, asked: bool = False, pressed: str | None = None
) -> Call:
    transcript = (
        "机器人：您是想问居民身份证丢了怎么补办，还是身份证快到期了怎么换领？" if asked else ""
    )
    outcome = BotOutcome("hangup", "caller_gone", transcript, answer_id=answer_id)
    named = ("居民身份证丢了怎么补办", "身份证快到期了怎么换领") if asked else None
    return Call(Question("问", expected, b"", 0), outcome, "问", 0.5, named, pressed)


IDS = {LOST.question: 1, RENEW.question: 2, FUND.question: 3}


def test_containment_is_answered_outright_plus_answered_after_a_clarifying_question() -> None:
    calls = [
        call(FUND.question, 3),  # outright, right
        call(FUND.question, 1),  # outright, wrong
        call(LOST.question, None),  # nothing confident
        call(RENEW.question, 2, asked=True, pressed="2"),  # right after pressing 2
        call(FUND.question, None, asked=True),  # asked, neither named is right
        call(None, None, asked=True),  # out of scope, asked
        call(None, 1),  # out of scope, answered: wrong
        replace(call(LOST.question, None, asked=True), offered=None),  # asked, not understood
    ]

    f = figures(calls, IDS, "您是想问")

    assert f["answered_outright"] == round(1 / 6, 4)
    assert f["answered_after_clarifying"] == round(1 / 6, 4)
    assert f["containment"] == round(2 / 6, 4)
    assert f["confident_but_wrong"] == round(2 / 8, 4)
    assert (f["clarifying_questions"], f["clarifying_named_right"]) == (4, 1)
    assert (f["clarifying_named_neither"], f["clarifying_not_understood"]) == (2, 1)


# --- the simulated caller's answer -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "key"),
    [(LOST.question, "1"), (RENEW.question, "2"), (FUND.question, None), (None, None)],
)
def test_the_caller_presses_the_key_of_the_entry_it_means_when_it_is_named(
    settings: Settings, expected: str | None, key: str | None
) -> None:
    prompts = load_prompts(settings)
    said = "请稍等。" + prompts.clarification(brief(LOST.question), brief(RENEW.question))

    named = offer(said, prompts.clarify)

    assert named == (brief(LOST.question), brief(RENEW.question))
    assert choice(named, expected) == key


def test_a_clarifying_question_not_heard_is_not_answered(settings: Settings) -> None:
    prompts = load_prompts(settings)
    assert offer("请问解决您的问题了吗？", prompts.clarify) is None
    assert choice(None, LOST.question) is None
