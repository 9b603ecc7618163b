"""Random console and citizen input into every field that reaches AMI, a phone number, a log line or an
export: no injection, no 5xx, no unmasked number in the logs, no formula in the export (Hypothesis)."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook
from panoramisk.actions import Action
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from ivr.ami import checked_action
from ivr.leaders import on_duty
from ivr.models import LeaderShift
from tests.agent_console.harness import Console, console_settings, start_console, stop_console
from tickets import models as m

MOBILES = ("13912345678", "18600001111", "15011112222")
FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
hostile = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from("\r\n\x00\x07\x0b\x1b\x7f\u2028=+-@<>\"'&/\\:"),
    ),
    max_size=60,
)
phone = st.one_of(
    st.sampled_from(MOBILES),
    st.sampled_from(MOBILES).map(lambda n: n.translate(FULLWIDTH)),
    st.sampled_from(MOBILES).map(lambda n: f"+86 {n[:3]}-{n[3:7]}-{n[7:]}"),
    hostile,
)


@pytest.fixture
async def fuzzed(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Console]:
    console = await start_console(
        console_settings(settings, public_rate_per_minute=100_000), sessionmaker
    )
    yield console
    await stop_console(console)


def one_action(action: dict[str, Any]) -> bool:
    wire = str(Action(checked_action(action), as_list=False))
    return wire.count("\r\n\r\n") == 1 and wire.endswith("\r\n\r\n")


def no_full_number(records: list[logging.LogRecord]) -> None:
    for record in records:
        text = record.getMessage()
        assert not any(n in text for n in MOBILES), f"unmasked number in log: {text!r}"


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    leader=st.fixed_dictionaries(
        {
            "leader_name": hostile,
            "title": hostile,
            "department": hostile,
            "interface": hostile.map(lambda s: "PJSIP/" + s),
            "account": hostile,
        }
    ),
    user=st.fixed_dictionaries({"display_name": hostile}),
    citizen=st.fixed_dictionaries(
        {
            "caller_phone": phone,
            "content": hostile,
            "address": hostile,
            "caller_name": hostile,
            "channel": st.sampled_from(["web", "wechat"]),
        }
    ),
    intake=st.fixed_dictionaries(
        {"caller_phone": phone, "content": hostile, "address": hostile, "district": hostile}
    ),
    lookup=phone,
)
async def test_random_input_never_breaks_ami_logs_or_the_server(
    fuzzed: Console,
    caplog: pytest.LogCaptureFixture,
    leader: dict[str, str],
    user: dict[str, str],
    citizen: dict[str, str],
    intake: dict[str, str],
    lookup: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="aiosqlite")  # every SQL statement, with no parameters
    dispatcher = await fuzzed.logged_in("dispatcher")
    admin = await fuzzed.logged_in("admin")
    agent = await fuzzed.logged_in("agent")
    shift = await dispatcher.write(
        "POST",
        "/api/v1/leader-shifts",
        {"day": "2026-12-07", "start": "09:00", "end": "09:01", **leader},
    )
    assert shift.status < 500, await shift.text()
    made = await admin.write(
        "POST",
        "/api/v1/users",
        {"username": "fuzz", "role": "agent", "password": "Fuzz-pass-12345678", **user},
    )
    assert made.status < 500, await made.text()
    filed = await fuzzed.browser().request("POST", "/api/v1/tickets", json=citizen)
    assert filed.status < 500, await filed.text()
    taken = await agent.write("POST", "/api/v1/console/tickets", intake)
    assert taken.status < 500, await taken.text()
    if filed.status in (200, 201):
        number = (await filed.json())["ticket_no"]
        progress = await fuzzed.browser().request(
            "GET", f"/api/v1/tickets/{number}", params={"phone": lookup}
        )
        assert progress.status < 500, await progress.text()

    async with fuzzed.sessionmaker() as db:
        for row in (
            await db.scalars(select(LeaderShift))
        ).all():  # what the controller sends as QueueAdd
            for duty in on_duty([row]):
                assert one_action(
                    {
                        "Action": "QueueAdd",
                        "Queue": "hotline",
                        "Interface": duty.interface,
                        "MemberName": duty.member_name,
                        "StateInterface": duty.interface,
                    }
                )
        for stored in (await db.scalars(select(m.Ticket.caller_phone))).all():
            assert re.fullmatch(r"[0-9-]+", stored), (
                stored
            )  # ASCII digits only: limits and repeats see one number
    async with admin.http.get(admin.url("/reports/tickets.xlsx")) as export:
        assert export.status == 200
        sheet = load_workbook(io.BytesIO(await export.read())).active
    assert sheet is not None and all(
        c.data_type != "f" for row in sheet.iter_rows() for c in row
    )  # no formula
    no_full_number(caplog.records)
