"""The TTS bench's model of what a caller hears between pieces (bench/tts.py)."""

from __future__ import annotations

from bench.tts import playback_stall_ms


def test_a_piece_still_being_synthesised_when_the_one_before_ends_is_heard_as_silence() -> None:
    # 0.5 s to the first audio; the second piece takes 2 s, started when the first was handed over (0.5 s):
    # ready at 2.5 s, the first ended at 1.5 s → 1 s of silence; the third is ready before the second ends.
    assert playback_stall_ms([500, 2000, 100], [1.0, 1.0, 1.0]) == 1000
    assert playback_stall_ms([500, 900, 900], [1.0, 1.0, 1.0]) == 0
    assert playback_stall_ms([300], [2.0]) == 0
