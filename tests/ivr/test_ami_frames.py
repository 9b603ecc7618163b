"""ivr.ami.parse_frame builds panoramisk messages from its storage (AmiMessage.from_store): every recorded frame
reads exactly as panoramisk's own ``Message.from_line`` reads it, down to the instance's attributes."""

from __future__ import annotations

import pytest
from panoramisk.message import Message

from ivr.ami import AmiMessage, parse_frame
from tests.ivr.amitools import FIXTURES, fixture_bytes

FRAMES = (
    [
        frame
        for path in sorted(FIXTURES.glob("*.ami"))
        for frame in fixture_bytes(path.name).decode("utf-8").split("\r\n\r\n")
        if frame.strip() and not frame.startswith("Asterisk Call Manager")
    ]
    + [
        "Event: Hangup\r\nUniqueid: 1.1\r\nChanVariable: A=1\r\nChanVariable: B=2\r\nChanVariable: C=3",  # repeated
        "Response: Success\r\nActionID: 7\r\nResult: %22quoted%20value%22%20",  # Result is unquoted
    ]
)


def test_the_recorded_streams_give_frames_to_compare() -> None:
    assert len(FRAMES) > 50


@pytest.mark.parametrize("text", FRAMES)
def test_a_parsed_frame_is_panoramisks_own_message(text: str) -> None:
    ours, theirs = parse_frame(text), Message.from_line(text)
    assert isinstance(ours, AmiMessage) and theirs is not None
    assert vars(ours) == vars(theirs)  # the same storage: panoramisk 1.4's _store and manager
    assert list(ours.items()) == list(theirs.items())
    for key in [*theirs.keys(), "NoSuchHeader"]:
        for name in (key, key.lower(), key.upper()):
            assert ours.get(name) == theirs.get(name) and getattr(ours, name) == getattr(
                theirs, name
            )
            assert (name in ours) == (name in theirs)
    assert (ours.id, ours.success) == (theirs.id, theirs.success)


def test_a_frame_without_event_or_response_is_no_message() -> None:
    assert parse_frame("Uniqueid: 1.1\r\nChannel: PJSIP/6001-00000001") is None
