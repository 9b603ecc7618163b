"""The supervisors' board of a console on several PBXs (RemoteSwitchboard.board): one row per queue member,
though the member is in the queues of two PBXs (a leader added by both controllers, an agent logged into both)."""

from __future__ import annotations

from typing import Any, cast
from zoneinfo import ZoneInfo

from agent_console.command_channel import CommandClient
from agent_console.switchboard import RemoteSwitchboard
from ivr.callcontrol import AgentOnBoard

TZ = ZoneInfo("Asia/Shanghai")


def row(interface: str, state: str, label: str, uniqueid: str | None = None) -> AgentOnBoard:
    return AgentOnBoard(interface, interface, state, label, uniqueid, 3.0 if uniqueid else None, 4)


class Boards:
    """The command channel's client as the board uses it: the PBXs announced, and each one's board."""

    def __init__(self, boards: dict[str, list[AgentOnBoard]]) -> None:
        self.boards = boards
        self.target = ""

    async def live_pbxes(self) -> list[str]:
        return sorted(self.boards)

    async def call_on(self, pbx: str, kind: str, **_: Any) -> list[AgentOnBoard]:
        assert kind == "board"
        return self.boards[pbx]


async def test_a_member_in_the_queues_of_two_pbxes_is_listed_once_in_its_busiest_state() -> None:
    boards = {
        "a": [row("PJSIP/6009", "ready", "空闲"), row("PJSIP/6001", "ready", "空闲")],
        "b": [
            row("PJSIP/6009", "talking", "通话中", "1741.7"),
            row("PJSIP/6101", "paused", "示忙"),
        ],
    }
    board = await RemoteSwitchboard(cast(CommandClient, Boards(boards))).board(TZ)
    assert board is not None
    assert [(a.interface, a.state, a.uniqueid) for a in board] == [
        ("PJSIP/6009", "talking", "1741.7"),  # its call is on b
        ("PJSIP/6001", "ready", None),
        ("PJSIP/6101", "paused", None),
    ]
