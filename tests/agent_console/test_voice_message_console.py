"""A voice message's ticket in the console: the recording to listen to (served inline, for those who may see the
ticket), its transcription state with the 无语音 mark, and the caller's number masked by role as everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from config.settings import replace_settings
from tests.agent_console.harness import console_settings, start_console, stop_console
from tests.ivr.callback_support import MONDAY_10AM
from tickets.voice_messages import LeftMessage, file_message, record_transcript

CALLER = "13812345678"
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt "


@pytest.mark.parametrize("spoken", ["小区门口的路灯坏了一个月", None])
async def test_the_ticket_page_plays_the_message_and_marks_no_speech(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
    spoken: str | None,
) -> None:
    message = LeftMessage("1741053600.7", f"1741053600.7-{CALLER}.wav", CALLER, "DTMF")
    (tmp_path / message.file).write_bytes(WAV)
    console = await start_console(
        replace_settings(console_settings(settings), {"message": {"folder": str(tmp_path)}}),
        sessionmaker,
    )
    try:
        async with sessionmaker() as session:
            filed = await file_message(
                session, message, settings=console.settings, now=MONDAY_10AM, sms=False
            )
            await record_transcript(session, message.call_id, spoken, now=MONDAY_10AM)
        agent = await console.logged_in("agent")
        page = await agent.request("GET", f"/tickets/{filed.ticket_no}")
        html = await page.text()
        assert page.status == 200, html
        url = f"/api/v1/console/tickets/{filed.ticket_no}/message"
        assert f'src="{url}"' in html and ("无语音" in html) == (spoken is None)
        assert message.file not in html  # the file name (with the number) is never shown
        leader_html = await (
            await (await console.logged_in("leader")).request("GET", f"/tickets/{filed.ticket_no}")
        ).text()
        assert (
            CALLER not in leader_html and "138****5678" in leader_html
        )  # masked for a leader, as elsewhere
        async with agent.http.get(agent.url(url)) as audio:
            assert audio.status == 200 and await audio.read() == WAV
            assert audio.headers["Content-Type"] == "audio/wav"
            assert CALLER not in audio.headers["Content-Disposition"]
        handler = await console.logged_in(
            "handler"
        )  # not this department's ticket: nothing, not even its audio
        assert (await handler.request("GET", url)).status == 404
        assert (
            await agent.request("GET", "/api/v1/console/tickets/12345-20250303-99999/message")
        ).status == 404
    finally:
        await stop_console(console)
