"""AMI header injection: no value that reaches ``AmiClient.action`` can add a header line or a second action.

AMI is line-framed: ``Key: value`` lines, a blank line ends an action. A leader's name such as
``李明\\r\\n\\r\\nAction: Hangup\\r\\nChannel: /./`` used to become a second action re-sent every tick.
"""

from __future__ import annotations

from datetime import date, time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from panoramisk.actions import Action

from ivr.ami import AmiInvalidAction, checked_action
from ivr.leaders import InvalidShift, ShiftInput, on_duty, validate_shift
from ivr.models import LeaderShift
from tests.ivr.amitools import attach, new_client

ATTACK = "李明\r\n\r\nAction: Hangup\r\nChannel: /./"
# anything a browser can send, weighted towards what breaks a line-framed protocol
hostile_text = st.text(
    alphabet=st.one_of(st.characters(), st.sampled_from("\r\n\x00\x0b\x0c\x1b\x7f\x85\u2028:")),
    max_size=40,
)


def frames(action: dict[str, object]) -> list[list[str]]:
    """The actions Asterisk would read from what panoramisk writes for ``action``: header lines per action
    (call it inside the event loop: panoramisk's Action makes a future)."""
    wire = str(Action(checked_action(action), as_list=False))
    return [block.split("\r\n") for block in wire.split("\r\n\r\n") if block]


async def test_an_injected_line_break_is_refused_and_nothing_is_written() -> None:
    client = new_client()
    _protocol, transport = attach(client)
    for value in (
        ATTACK,
        "示忙\nAction: Logoff",
        "a\rb",
        "x\x00",
        ["A=1", "B=2\r\nAction: Hangup"],
    ):
        with pytest.raises(AmiInvalidAction) as err:
            await client.action(
                {
                    "Action": "QueueAdd",
                    "Queue": "hotline",
                    "Interface": "PJSIP/6009",
                    "MemberName": value,
                }
            )
        assert err.value.code == "ami.invalid_action"
    with pytest.raises(AmiInvalidAction):
        await client.action({"Action": "Ping", "Bad Header": "x"})
    assert transport.written == b""


@given(
    values=st.dictionaries(
        st.sampled_from(["MemberName", "Reason", "Channel", "CallerID", "Value"]),
        st.one_of(hostile_text, st.lists(hostile_text, max_size=3)),
        max_size=5,
    )
)
async def test_whatever_the_values_one_action_with_only_our_headers_is_written(
    values: dict[str, object],
) -> None:
    action = {"Action": "QueueAdd", "ActionID": "t-1", **values}
    try:
        written = frames(action)
    except AmiInvalidAction:
        return
    assert len(written) == 1
    headers = [line.split(": ", 1)[0] for line in written[0]]
    expected = [
        "Action",
        "ActionID",
        *(k for k, v in values.items() for _ in (v if isinstance(v, list) else [v])),
    ]
    assert sorted(headers) == sorted(expected)


@given(
    name=hostile_text,
    title=hostile_text,
    department=hostile_text,
    interface=hostile_text,
    account=hostile_text,
)
async def test_a_shift_the_schedule_accepts_always_passes_the_ami_check(
    name: str, title: str, department: str, interface: str, account: str
) -> None:
    """Validation at the edit is at least as strict as the AMI choke point, so a bad window is refused with a
    message to the duty office instead of being refused by the controller on every tick."""
    shift = ShiftInput(
        date(2026, 12, 7), time(9), time(11), name, f"PJSIP/{interface}", title, department, account
    )
    try:
        valid = validate_shift(shift)
    except InvalidShift:
        return
    row = LeaderShift(
        day=valid.day,
        start=valid.start,
        end=valid.end,
        leader_name=valid.leader_name,
        title=valid.title,
        department=valid.department,
        interface=valid.interface,
        account=valid.account,
    )
    (duty,) = on_duty([row])
    assert (
        len(
            frames(
                {
                    "Action": "QueueAdd",
                    "Queue": "hotline",
                    "Interface": duty.interface,
                    "MemberName": duty.member_name,
                    "StateInterface": duty.interface,
                }
            )
        )
        == 1
    )


def test_the_reported_attack_is_refused_at_the_schedule() -> None:
    with pytest.raises(InvalidShift) as err:
        validate_shift(ShiftInput(date(2026, 12, 7), time(9), time(11), ATTACK, "PJSIP/6009"))
    assert "控制字符" in err.value.message
