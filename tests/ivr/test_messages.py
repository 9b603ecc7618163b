"""Voice messages (留言), the controller's side: the dialplan's UserEvent parsed, the message filed as one ticket
whatever replays, its number set on the caller's channel, and files whose event was lost filed by the sweep."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from ivr import events as ev
from ivr.ami import AmiActionError
from ivr.controller import HotlineController
from ivr.messages import MESSAGE_FAMILY, MessageFiler, parse_file
from ivr.state import Call
from tickets.models import Ticket, VoiceMessage

NOW = datetime(2025, 3, 3, 2, 0, tzinfo=UTC)
CALLER = "13812345678"
CHANNEL = "PJSIP/trunk-00000007"


class FakeAmi:
    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.connected.set()
        self.actions: list[dict[str, Any]] = []

    async def action(self, action: dict[str, Any]) -> None:
        self.actions.append(action)
        if action["Channel"] == "gone":
            raise AmiActionError("No such channel")


class FakeState:
    def __init__(self) -> None:
        self.calls: dict[str, Call] = {}


class FakeController:
    """What the filer uses of the controller: AMI Setvar, AstDB, the live calls, the call-log flush."""

    def __init__(self, astdb: dict[str, str]) -> None:
        self.ami = FakeAmi()
        self.state = FakeState()
        self.astdb = astdb
        self.linked: dict[str, str] = {}  # call → ticket linked in the call log

    async def link_ticket(self, uniqueid: str, ticket_no: str) -> None:
        self.linked[uniqueid] = ticket_no

    async def astdb_get(self, family: str, key: str) -> str | None:
        assert family == MESSAGE_FAMILY
        return self.astdb.get(key)

    async def flush(self) -> None:
        return None


def filer_for(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    folder: Path,
    astdb: dict[str, str] | None = None,
) -> tuple[MessageFiler, FakeController]:
    controller = FakeController(astdb or {})
    return MessageFiler(
        cast(HotlineController, controller), sessionmaker, settings, folder, clock=lambda: NOW
    ), controller


def message_event(
    uniqueid: str, channel: str = CHANNEL, status: str = "SILENCE", caller: str = CALLER
) -> ev.DomainEvent | None:
    digits = "".join(c for c in caller if c.isdigit())  # as the dialplan's FILTER() names the file
    return ev.parse_event(
        {
            "Event": "UserEvent",
            "UserEvent": "HotlineMessage",
            "Uniqueid": uniqueid,
            "Linkedid": uniqueid,
            "Channel": channel,
            "CallerIDNum": caller,
            "Context": "hotline-message-report",
            "Exten": "s",
            "File": f"{uniqueid}-{digits}.wav",
            "Status": status,
            "CallerIdNum": caller,
        },
        NOW,
    )


async def tickets(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> list[tuple[str, str | None, str]]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(Ticket.ticket_no, Ticket.call_id, Ticket.channel).order_by(Ticket.id)
        )
        return [tuple(r) for r in rows.all()]  # type: ignore[misc]


def test_the_dialplan_report_is_parsed() -> None:
    event = message_event("1741053600.7", status="HANGUP")
    assert isinstance(event, ev.MessageLeft)
    assert (event.file, event.record_status, event.caller_number, event.chan.channel) == (
        f"1741053600.7-{CALLER}.wav",
        "HANGUP",
        CALLER,
        CHANNEL,
    )
    no_file = ev.parse_event(
        {"Event": "UserEvent", "UserEvent": "HotlineMessage", "Uniqueid": "1"}, NOW
    )
    assert no_file is None


def test_message_file_names_carry_the_call_and_the_caller(tmp_path: Path) -> None:
    (tmp_path / f"e2e-msg-1-{CALLER}.wav").write_bytes(b"")
    (tmp_path / "notes.txt").write_bytes(b"")
    (tmp_path / "nocaller.wav").write_bytes(b"")
    found = parse_file(tmp_path / f"e2e-msg-1-{CALLER}.wav")
    assert found is not None and (found.call_id, found.caller_number) == ("e2e-msg-1", CALLER)
    assert (
        parse_file(tmp_path / "notes.txt") is None and parse_file(tmp_path / "nocaller.wav") is None
    )


async def test_a_message_event_files_one_ticket_and_sets_its_number_on_the_channel(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    filer, controller = filer_for(settings, sessionmaker, tmp_path)
    event = message_event("1741053600.7")
    for _ in range(
        3
    ):  # the event replayed (a reconnect re-delivers, a second controller hears it too)
        work = filer.on_event(event)  # type: ignore[arg-type]
        assert work is not None
        await work
    [(ticket_no, call_id, channel)] = await tickets(sessionmaker)
    assert (call_id, channel, filer.filed) == ("1741053600.7", "message", 1)
    setvar = {
        "Action": "Setvar",
        "Channel": CHANNEL,
        "Variable": "MESSAGE_TICKET",
        "Value": ticket_no.replace("-", ""),
    }
    assert controller.ami.actions == [setvar] * 3  # read back whichever copy arrives first
    assert controller.linked == {
        "1741053600.7": ticket_no
    }  # the call log shows it: no missed-call call-back
    assert filer.on_event(ev.AsteriskBooted(NOW)) is None


async def test_a_caller_gone_before_the_read_back_still_has_the_ticket(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    filer, _ = filer_for(settings, sessionmaker, tmp_path)
    await filer.on_event(message_event("1741053600.8", channel="gone", status="HANGUP"))  # type: ignore[arg-type,misc]
    assert [r[1] for r in await tickets(sessionmaker)] == ["1741053600.8"]


async def test_the_sweep_files_a_message_whose_event_was_lost(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    reported = (
        tmp_path / f"1741053600.9-{CALLER}.wav"
    )  # the dialplan stored it in AstDB; the event never came
    recording = tmp_path / f"1741053601.1-{CALLER}.wav"  # no AstDB entry yet: still being recorded
    old = (
        tmp_path / f"1741050000.1-{CALLER}.wav"
    )  # no AstDB entry, older than any recording (AMI lost it all)
    for path in (reported, recording, old):
        path.write_bytes(b"RIFF")
    stamp = (NOW - timedelta(hours=1)).timestamp()
    os.utime(old, (stamp, stamp))
    os.utime(recording, (NOW.timestamp(), NOW.timestamp()))
    filer, controller = filer_for(settings, sessionmaker, tmp_path, astdb={"1741053600.9": "DTMF"})
    controller.state.calls["1741053600.9"] = Call(
        "1741053600.9", "1741053600.9", CHANNEL, CALLER, "12345", NOW
    )

    filed = await filer.sweep()
    assert len(filed) == 2 and await filer.sweep() == []  # once
    async with sessionmaker() as session:
        rows = (await session.scalars(select(VoiceMessage).order_by(VoiceMessage.call_id))).all()
        assert [(r.call_id, r.record_status, r.file) for r in rows] == [
            ("1741050000.1", "SWEPT", old.name),
            ("1741053600.9", "DTMF", reported.name),
        ]
        assert await session.scalar(select(func.count()).select_from(Ticket)) == 2
    # the caller still on the line hears the number
    assert [a["Channel"] for a in controller.ami.actions] == [CHANNEL]


async def test_sweeps_at_once_file_and_read_back_each_message_once(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """The reconnect's sweep and the periodic one may start together (as at start-up): one of them files."""
    for uniqueid in ("1741053600.9", "1741053600.10"):
        (tmp_path / f"{uniqueid}-{CALLER}.wav").write_bytes(b"RIFF")
    astdb = {"1741053600.9": "DTMF", "1741053600.10": "SILENCE"}
    filer, controller = filer_for(settings, sessionmaker, tmp_path, astdb=astdb)
    controller.state.calls["1741053600.9"] = Call(
        "1741053600.9", "1741053600.9", CHANNEL, CALLER, "12345", NOW
    )

    first, second = await asyncio.gather(filer.sweep(), filer.sweep())
    assert len(first) + len(second) == 2 and len(set(first + second)) == 2
    assert [a["Channel"] for a in controller.ami.actions] == [CHANNEL]  # the number is said once


async def test_a_message_from_a_withheld_or_invalid_number_is_a_ticket_without_one(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    filer, controller = filer_for(
        settings,
        sessionmaker,
        tmp_path,
        astdb={"1741053600.5": "SILENCE", "1741053600.6": "HANGUP"},
    )
    (tmp_path / "1741053600.5-12.wav").write_bytes(b"RIFF")  # an invalid number
    (tmp_path / "1741053600.6-.wav").write_bytes(b"RIFF")  # withheld: the file name has no digits
    controller.state.calls["1741053600.5"] = Call(
        "1741053600.5", "1741053600.5", CHANNEL, "12", "12345", NOW
    )
    assert len(await filer.sweep()) == 2 and await filer.sweep() == []
    await filer.on_event(message_event("1741053600.4", caller="anonymous"))  # type: ignore[arg-type,misc]
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                select(
                    Ticket.call_id, Ticket.caller_phone, Ticket.content, Ticket.ticket_no
                ).order_by(Ticket.call_id)
            )
        ).all()
    assert [(r.call_id, r.caller_phone, r.content) for r in rows] == [
        (call, "", "【未显示号码，无法回电】语音留言（转写中）")
        for call in ("1741053600.4", "1741053600.5", "1741053600.6")
    ]
    # the number is read back to the callers still on the line, and every call is linked to its ticket
    assert [(a["Channel"], a["Value"]) for a in controller.ami.actions] == [
        (CHANNEL, rows[1].ticket_no.replace("-", "")),
        (CHANNEL, rows[0].ticket_no.replace("-", "")),
    ]
    assert controller.linked == {r.call_id: r.ticket_no for r in rows}
