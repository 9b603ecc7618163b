"""The AudioSocket frame codec: round trips, split reads, malformed input, fuzzing."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asr.audiosocket import (
    Frame,
    FramePacer,
    FrameParser,
    Kind,
    ProtocolError,
    audio_frame,
    dtmf_frame,
    encode,
    error_frame,
    hangup_frame,
    parse_dtmf,
    parse_error,
    parse_uuid,
    uuid_frame,
)

CALL_ID = uuid.UUID("6f1c2a9e-3b7d-4c11-9a55-0d2e8f4b7c61")
PCM = bytes(range(256)) + bytes(64)  # 320 bytes, not silence


def a_call() -> bytes:
    return (
        uuid_frame(CALL_ID)
        + audio_frame(PCM)
        + dtmf_frame("5")
        + audio_frame(PCM[:160])
        + hangup_frame()
    )


def test_wire_format_matches_the_protocol() -> None:
    assert hangup_frame() == b"\x00\x00\x00"
    assert uuid_frame(CALL_ID) == b"\x01\x00\x10" + CALL_ID.bytes
    assert dtmf_frame("#") == b"\x03\x00\x01#"
    assert audio_frame(PCM)[:3] == b"\x10\x01\x40"  # 320, big-endian
    assert error_frame(0x01) == b"\xff\x00\x01\x01"


def test_round_trip_of_a_whole_call() -> None:
    frames = FrameParser().feed(a_call())
    assert [f.kind for f in frames] == [Kind.UUID, Kind.AUDIO, Kind.DTMF, Kind.AUDIO, Kind.HANGUP]
    assert parse_uuid(frames[0]) == CALL_ID
    assert frames[1].payload == PCM
    assert parse_dtmf(frames[2]) == "5"
    assert frames[3].payload == PCM[:160]
    assert b"".join(f.encode() for f in frames) == a_call()


def test_every_split_point_gives_the_same_frames() -> None:
    data = a_call()
    expected = FrameParser().feed(data)
    for cut in range(len(data) + 1):
        parser = FrameParser()
        assert parser.feed(data[:cut]) + parser.feed(data[cut:]) == expected, cut
        parser.finish()


def test_byte_by_byte_feeding() -> None:
    parser = FrameParser()
    frames: list[Frame] = []
    for byte in a_call():
        frames += parser.feed(bytes((byte,)))
    assert frames == FrameParser().feed(a_call())


def test_error_frame_payload_is_optional() -> None:
    assert parse_error(FrameParser().feed(error_frame(0x02))[0]) == 0x02
    assert parse_error(FrameParser().feed(encode(Kind.ERROR))[0]) is None


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\x02\x00\x00", "audiosocket.unknown_kind"),
        (b"\x11\x01\x40", "audiosocket.unknown_kind"),  # 16 kHz slin: chan_audiosocket only
        (b"\x10\x01\x41" + bytes(321), "audiosocket.bad_audio"),  # odd length
        (b"\x10\x00\x00", "audiosocket.bad_audio"),  # Asterisk rejects empty audio too
        (b"\x01\x00\x04abcd", "audiosocket.bad_uuid"),
        (b"\x03\x00\x01\x00", "audiosocket.bad_dtmf"),
        (b"\x03\x00\x0212", "audiosocket.bad_dtmf"),
    ],
)
def test_malformed_frames_raise_a_typed_error(data: bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as err:
        FrameParser().feed(data)
    assert err.value.code == code
    assert err.value.message  # Chinese text for logs and the console


def test_length_bound_is_checked_from_the_header_alone() -> None:
    parser = FrameParser(max_payload=640)
    assert parser.feed(audio_frame(bytes(640)))  # at the bound: fine
    with pytest.raises(ProtocolError) as err:
        parser.feed(b"\x10\x02\x82")  # 642 announced; no payload needed to refuse it
    assert err.value.code == "audiosocket.payload_too_long"


def test_a_failed_parser_keeps_failing() -> None:
    parser = FrameParser()
    with pytest.raises(ProtocolError):
        parser.feed(b"\x42\x00\x00")
    with pytest.raises(ProtocolError):
        parser.feed(hangup_frame())


def test_stream_ending_inside_a_frame_is_truncated() -> None:
    parser = FrameParser()
    parser.feed(audio_frame(PCM)[:100])
    assert parser.buffered == 100
    with pytest.raises(ProtocolError) as err:
        parser.finish()
    assert err.value.code == "audiosocket.truncated"
    FrameParser().finish()  # a clean end is fine


def test_builders_refuse_what_asterisk_would_reject() -> None:
    with pytest.raises(ProtocolError):
        audio_frame(b"")
    with pytest.raises(ProtocolError):
        audio_frame(b"\x00")
    with pytest.raises(ProtocolError):
        dtmf_frame("12")
    with pytest.raises(ProtocolError):
        encode(Kind.AUDIO, bytes(65536))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=400), max_size=8))
def test_random_bytes_only_ever_raise_protocol_error(chunks: list[bytes]) -> None:
    parser = FrameParser(max_payload=1000)
    try:
        for chunk in chunks:
            for frame in parser.feed(chunk):
                assert len(frame.payload) <= 1000
        parser.finish()
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(min_size=1, max_size=200).filter(lambda b: len(b) % 2 == 0).map(audio_frame),
            st.sampled_from("0123456789*#ABCD").map(dtmf_frame),
            st.uuids().map(uuid_frame),
        ),
        max_size=10,
    ),
    st.data(),
)
def test_valid_streams_survive_any_chunking(frames: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    parser = FrameParser()
    got: list[Frame] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += parser.feed(stream[start:end])
    parser.finish()
    assert b"".join(f.encode() for f in got) == stream


def test_pacer_schedules_against_the_start_not_the_last_send() -> None:
    now = [100.0]
    pacer = FramePacer(clock=lambda: now[0])
    delays = []
    for _ in range(5):
        delays.append(pacer.delay())
        now[0] += 0.005 + delays[-1]  # each send takes 5 ms on top of the wait
    assert delays[0] == 0
    assert delays[1:] == pytest.approx([0.015] * 4)  # the 5 ms is absorbed, not accumulated
    assert pacer.end() == pytest.approx(100.1)


def test_pacer_restarts_instead_of_bursting_after_a_stall() -> None:
    now = [0.0]
    pacer = FramePacer(clock=lambda: now[0])
    pacer.delay()
    now[0] = 1.0  # the loop stalled for a second
    assert pacer.delay() == 0
    assert pacer.delay() == pytest.approx(0.02)  # no catch-up burst of 49 frames
    assert pacer.restarts == 1
