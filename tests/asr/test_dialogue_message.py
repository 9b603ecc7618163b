"""The caller declines the bot for a voice message (留言): saying so ends the dialogue with ``message`` (the dialplan
records it); a 9 keyed as part of a phone number stays a digit."""

from __future__ import annotations

from asr import intents
from asr.dialogue import DialogueConfig
from config import Settings
from config.settings import BotSettings
from tests.asr.fakes import FakeDesk, FakeLine, FakeRecogniser, fake_dialogue

FAST = DialogueConfig.from_settings(
    BotSettings(silence_timeout_s=0.05, end_of_turn_s=0.01, dtmf_timeout_s=0.3, filler_after_ms=500)
)


def test_message_words() -> None:
    assert intents.wants_message("我还是留个言吧。") and intents.wants_message("我要留言")
    assert not intents.wants_message("我要转人工") and not intents.wants_message("路灯坏了")


async def test_a_caller_who_asks_to_leave_a_message_leaves_the_bot_without_a_ticket(
    settings: Settings,
) -> None:
    desk = FakeDesk()
    line = FakeLine(1, hang_up=False, connected=True)
    outcome = await fake_dialogue(
        settings,
        line,
        FakeRecogniser("我不想和机器说，我要留言"),
        desk=desk,
        caller_id="13800138000",
        cfg=FAST,
    ).run()
    assert (outcome.next, outcome.reason, outcome.ticket_no) == ("message", "message", None)
    assert desk.tickets == [] and desk.misses == []


async def test_a_nine_in_a_keyed_number_is_a_digit(settings: Settings) -> None:
    desk = FakeDesk()
    line = FakeLine(2, hang_up=False, keys="13900139000#", connected=True)
    outcome = await fake_dialogue(
        settings,
        line,
        FakeRecogniser("小区门口的路灯坏了一个月", "就在幸福路十八号"),
        desk=desk,
        caller_id=None,
        cfg=FAST,
    ).run()
    assert (outcome.next, outcome.reason, outcome.caller) == ("hangup", "ticket", "13900139000")
