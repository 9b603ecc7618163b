"""The bot's dialogue on fakes (tests/asr/fakes.py), in milliseconds: the branches the real-time tests in
test_dialogue.py reach only slowly or not at all — a number keyed in, no number, a failing recogniser, ticket
services that are down."""

from __future__ import annotations

import logging

import pytest

from asr.dialogue import BotOutcome, DialogueConfig
from asr.prompts import load_prompts
from config import Settings
from config.settings import BotSettings
from tests.asr.fakes import FakeDesk, FakeLine, FakeRecogniser, fake_dialogue

QUESTION = "小区门口的路灯坏了一个月"
MATTER = "就在幸福路十八号门口"
KEYED = "13800138000"
# Short waits: a caller who stays silent is taken as silent after 50 ms, a number ends 300 ms after the last key.
FAST = DialogueConfig.from_settings(
    BotSettings(silence_timeout_s=0.05, end_of_turn_s=0.01, dtmf_timeout_s=0.3, filler_after_ms=500)
)


async def call(
    settings: Settings,
    line: FakeLine,
    recogniser: FakeRecogniser,
    desk: FakeDesk,
    caller_id: str | None = None,
) -> BotOutcome:
    return await fake_dialogue(
        settings, line, recogniser, desk=desk, caller_id=caller_id, cfg=FAST
    ).run()


async def test_an_unknown_caller_keys_in_a_number_and_gets_a_ticket_read_back(
    settings: Settings,
) -> None:
    desk = FakeDesk()
    line = FakeLine(2, hang_up=False, keys=f"{KEYED}#", connected=True)
    outcome = await call(settings, line, FakeRecogniser(QUESTION, MATTER), desk)
    assert (outcome.next, outcome.reason, outcome.caller) == ("hangup", "ticket", KEYED)
    [intake] = desk.tickets
    assert (intake.caller_phone, intake.content) == (KEYED, f"{QUESTION}；{MATTER}")
    assert desk.misses == [QUESTION]
    prompts = load_prompts(settings)
    assert prompts.ask_phone in outcome.transcript and outcome.ticket_no == "12345-20250303-00001"


async def test_star_starts_the_number_again(settings: Settings) -> None:
    desk = FakeDesk()
    line = FakeLine(1, hang_up=False, keys=f"139*{KEYED}#", connected=True)
    outcome = await call(settings, line, FakeRecogniser(QUESTION), desk)
    assert outcome.reason == "ticket" and desk.tickets[0].caller_phone == KEYED


async def test_no_number_keyed_sends_the_caller_to_a_human_without_a_ticket(
    settings: Settings,
) -> None:
    desk = FakeDesk()
    outcome = await call(
        settings, FakeLine(2, hang_up=False, connected=True), FakeRecogniser(QUESTION, MATTER), desk
    )
    prompts = load_prompts(settings)
    assert (outcome.next, outcome.reason, outcome.ticket_no, outcome.caller) == (
        "queue",
        "no_number",
        None,
        None,
    )
    assert desk.tickets == [] and desk.misses == [QUESTION]
    # asked once, told the number was wrong once, then handed over
    assert (
        outcome.transcript.count(prompts.ask_phone) == 1 and prompts.bad_phone in outcome.transcript
    )
    assert outcome.transcript.endswith(prompts.to_human)


async def test_a_wrong_number_twice_is_no_number(settings: Settings) -> None:
    desk = FakeDesk()
    line = FakeLine(
        1, hang_up=False, keys="12#", connected=True
    )  # the second try times out with nothing keyed
    outcome = await call(settings, line, FakeRecogniser(QUESTION), desk)
    assert (outcome.next, outcome.reason) == ("queue", "no_number") and desk.tickets == []


async def test_a_failing_recogniser_apologises_and_hands_over(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    desk = FakeDesk()
    with caplog.at_level(logging.ERROR, logger="asr.dialogue"):
        outcome = await call(
            settings, FakeLine(1, hang_up=False, connected=True), FakeRecogniser(broken=True), desk
        )
    assert (outcome.next, outcome.reason) == ("queue", "error")
    assert outcome.transcript.endswith(load_prompts(settings).apology)
    assert desk.tickets == [] and desk.misses == []
    assert any("recogniser failed" in r.getMessage() for r in caplog.records)


async def test_ticket_services_down_during_the_call_apologise_and_hand_over(
    settings: Settings,
) -> None:
    desk = FakeDesk(tickets_down=True)
    outcome = await call(
        settings,
        FakeLine(1, hang_up=False, connected=True),
        FakeRecogniser(QUESTION),
        desk,
        caller_id=KEYED,
    )
    assert (outcome.next, outcome.reason, outcome.ticket_no) == ("queue", "error", None)
    assert outcome.transcript.endswith(load_prompts(settings).apology)


async def test_a_turn_is_timed_from_the_end_of_speech_to_the_first_frame_of_the_reply(
    settings: Settings,
) -> None:
    """The caller's question ends as the frame arrives; the reply's speech takes 0.4 s to synthesise: one turn of
    0.4 s (plus the milliseconds the fakes take)."""
    import time

    from asr.dialogue import Dialogue
    from tests.asr.fakes import FakeTts

    skew = [0.0]

    class SlowTts(FakeTts):
        async def asynthesize(self, _text: str) -> bytes:
            skew[0] += 0.4
            return b""

    turns: list[float] = []
    line = FakeLine(1, hang_up=False, connected=True)
    dialogue = Dialogue(
        line,
        FakeRecogniser(QUESTION),
        tts=SlowTts(),
        desk=FakeDesk(),  # type: ignore[arg-type]
        prompts=load_prompts(settings),
        cfg=FAST,
        turns=turns.append,
        clock=lambda: time.monotonic() + skew[0],
    )
    await dialogue.run()
    [turn] = turns
    assert 0.4 <= turn < 0.5
