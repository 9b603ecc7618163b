"""Personal data (PIPL) kept out of the logs: phone numbers masked, the caller's words left out, no query strings
in the console's access log, and the masking filter that `hotline` puts under every log handler."""

from __future__ import annotations

import argparse
import io
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from asr.dialogue import Dialogue, DialogueConfig
from config import Settings
from config.pii import MaskPhones, mask_phone, mask_phones
from config.settings import BotSettings
from hotline.commands import console
from hotline.db import make_engine
from tests.asr.fakes import FakeDesk, FakeLine, FakeRecogniser, fake_dialogue

MOBILE = "13812345678"
SPEECH = f"我的电话是{MOBILE}，小区门口的路灯坏了一个月"
MATTER = "就在幸福路十八号门口"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (MOBILE, "138****5678"),
        ("call 138 1234 5678 now", "call 138 **** 5678 now"),
        ("+8613812345678", "+86138****5678"),
        ("0931-1234567", "0931-***4567"),
        ("010-12345678 或 02112345678", "010-****5678 或 021****5678"),
        (
            "电话一三八一二三四五六七八",
            "电话一三八****五六七八",
        ),  # as the recogniser may write a spoken number
        ("１３８１２３４５６７８", "１３８****５６７８"),
        ("Local/13912345678@test-citizen-00000001;1", "Local/139****5678@test-citizen-00000001;1"),
    ],
)
def test_phone_numbers_in_text_are_masked(text: str, masked: str) -> None:
    assert mask_phones(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "12345-20250303-00001",
        "uniqueid 1741000000.12",
        "2025-03-03 10:00:00,123",
        "拨打12345或110",
        "138123456789",
    ],
)
def test_other_numbers_are_left_alone(text: str) -> None:
    assert mask_phones(text) == text


def test_one_number_is_masked_down_to_its_last_four_digits() -> None:
    assert [mask_phone(n) for n in (MOBILE, "+447911123456", "12345", None)] == [
        "138****5678",
        "********3456",
        "12345",
        "",
    ]


def test_log_filter_masks_message_arguments_and_tracebacks() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(MaskPhones())
    logger = logging.getLogger("tests.pii.filter")
    logger.addHandler(handler)
    try:
        logger.warning("AMI event handler failed for %r", {"CallerIDNum": MOBILE})
        try:
            raise ValueError("来电号码格式不正确：'0931-1234567'")
        except ValueError:
            logger.exception("ticket for %s failed", "010 12345678")
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert (
        "'CallerIDNum': '138****5678'" in text and "0931-***4567" in text and "010 ****5678" in text
    )
    assert MOBILE not in text and "1234567'" not in text and "12345678" not in text


def test_the_hotline_command_logs_through_the_filter() -> None:
    script = (
        "import logging; from hotline.cli import configure_logging; configure_logging(); "
        f"logging.getLogger('ivr.ami').warning('frame %r', 'CallerIDNum: {MOBILE}')"
    )
    err = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stderr
    assert "CallerIDNum: 138****5678" in err and MOBILE not in err


async def test_console_access_log_keeps_the_path_without_the_query(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    served: dict = {}

    def run_app(app: object, **options: object) -> None:
        app.close()  # type: ignore[attr-defined]  # the app factory's coroutine, not started here
        served.update(options)

    monkeypatch.setattr(
        web, "run_app", run_app
    )  # the console command imports aiohttp's web when it serves
    console._serve(settings, argparse.Namespace(host=None, port=None))
    access = {k: v for k, v in served.items() if k.startswith("access_log")}

    async def progress(_request: web.Request) -> web.Response:
        return web.json_response({"state": "办理中"})

    app = web.Application()
    app.router.add_get("/api/v1/tickets/{ticket_no}", progress)
    with caplog.at_level(logging.INFO, logger=console.log.name):
        server = TestServer(app)
        await server.start_server(**access)  # the runner the console's web.run_app would make
        async with TestClient(server) as client:
            resp = await client.get(
                f"/api/v1/tickets/12345-20250303-00001?phone={MOBILE}",
                headers={"Referer": f"http://console/tickets?phone={MOBILE}"},
            )
            assert resp.status == 200
    [line] = [
        r.getMessage()
        for r in caplog.records
        if r.name == console.log.name and "GET" in r.getMessage()
    ]
    assert '"GET /api/v1/tickets/12345-20250303-00001" 200' in line
    assert "phone" not in line and MOBILE not in line


# --- the speech bot's dialogue -----------------------------------------------------------------------------


def dialogue(
    settings: Settings, line: FakeLine, recogniser: FakeRecogniser, caller_id: str
) -> Dialogue:
    """Ticket services that are down, and a 10 ms wait for keys."""
    cfg = DialogueConfig.from_settings(BotSettings(end_of_turn_s=0.01, dtmf_timeout_s=0.01))
    return fake_dialogue(
        settings, line, recogniser, desk=FakeDesk(tickets_down=True), caller_id=caller_id, cfg=cfg
    )


async def test_dialogue_logs_neither_the_callers_words_nor_numbers(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The caller hangs up and filing the ticket fails; another caller's id is not a callback number."""
    with caplog.at_level(logging.INFO, logger="asr.dialogue"):
        gone = await dialogue(
            settings, FakeLine(1, hang_up=True), FakeRecogniser(SPEECH), MOBILE
        ).run()
        foreign = await dialogue(
            settings, FakeLine(2, hang_up=False), FakeRecogniser(SPEECH, MATTER), "+447911123456"
        ).run()
    assert (gone.reason, foreign.reason) == ("caller_gone", "no_number")
    messages = "\n".join(r.getMessage() for r in caplog.records if r.name == "asr.dialogue")
    assert (
        "ticket for a caller who left failed" in messages
        and "caller id ********3456 is not" in messages
    )
    for said in (SPEECH, "路灯", MATTER, MOBILE, "7911123456"):
        assert said not in caplog.text


async def test_database_errors_carry_no_statement_parameters(tmp_path: Path) -> None:
    """A failed write's error (logged with its traceback) must not repeat the caller's number or words."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (phone TEXT UNIQUE)"))
            await conn.execute(text("INSERT INTO t VALUES (:p)"), {"p": MOBILE})
        with pytest.raises(IntegrityError) as err:
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO t VALUES (:p)"), {"p": MOBILE})
        assert MOBILE not in str(err.value)
    finally:
        await engine.dispose()
