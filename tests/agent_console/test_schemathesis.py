"""Schemathesis against the running console's own OpenAPI document: logged in as an administrator (with the
CSRF header), on SQLite with seed data, every documented operation gets generated requests; no answer may be
a 5xx and every answer must match its documented schema.

Left out: ``POST /logout`` (it would end the run's own session) and ``GET /ws`` (a WebSocket, not HTTP).
The console is wired as ``hotline run`` wires it: a knowledge index and a call-control recorder standing in for
the AMI controller (the real controller is exercised against Asterisk in tests/e2e).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from xml.etree import ElementTree

import pytest

from config import Settings
from hotline.db import create_schema, make_engine, make_sessionmaker
from knowledge import services as kb
from knowledge.retrieval import KnowledgeIndex
from knowledge.schemas import EntryContent
from tests.agent_console.harness import Console, console_settings, start_console, stop_console
from tests.agent_console.seed_cockpit import NOW, move_console_to, seed_cockpit
from tests.agent_console.tickets_support import recording_desk
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
MAX_EXAMPLES = 6
TIMEOUT_S = 150
EXCLUDED_PATHS = ("/logout", "/ws")


@pytest.fixture
async def seeded_console(settings: Settings, tmp_path: Path) -> AsyncIterator[Console]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'schemathesis.db'}")
    await create_schema(engine)
    sessionmaker = make_sessionmaker(engine)
    index = KnowledgeIndex.from_settings(settings)  # filled below, after the seed
    own = console_settings(settings)
    console = await start_console(
        own, sessionmaker, desk=recording_desk(own, knowledge_ask=index.ask)
    )
    await seed_cockpit(sessionmaker)
    async with sessionmaker() as db:
        content = EntryContent(
            question="占道经营怎么投诉",
            answer_speech="请拨打城管热线。",
            answer_text="请拨打城管热线。",
            department="市城市管理局",
        )
        entry = await kb.create_entry(db, content, "admin")
        await kb.publish_entry(db, entry.id, "admin")
        await kb.record_miss(db, "垃圾车太早来", entry.id, 0.3, "low_confidence")
        await kb.refresh_index(db, index, NOW.date())
    move_console_to(console, NOW)
    yield console
    await stop_console(console)
    await engine.dispose()


async def test_api_matches_its_schema_and_never_fails(
    seeded_console: Console, tmp_path: Path
) -> None:
    admin = await seeded_console.logged_in("admin")
    token = await admin.csrf()
    cookie = admin.cookie("hotline_session")
    cmd = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        admin.url("/api/v1/openapi.json"),
        "--checks",
        "not_a_server_error,response_schema_conformance",
        "--header",
        f"Cookie: hotline_session={cookie}",
        "--header",
        f"X-CSRF-Token: {token}",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--phases",
        "examples,coverage,fuzzing",
        "--seed",
        "12345",
        "--no-shrink",
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--warnings",
        "off",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path / "report"),
    ]
    for path in EXCLUDED_PATHS:
        cmd += ["--exclude-path", path]
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=os.environ | {"NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""},
    )
    async with asyncio.timeout(TIMEOUT_S):
        out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "schemathesis.txt").write_text(text)
    failing = failed_operations(tmp_path / "report")
    assert not failing, f"schemathesis failures: {sorted(failing)}\n{text[-6000:]}"
    assert "API Operations:" in text and proc.returncode in (0, 1), text[-3000:]


def failed_operations(report_dir: Path) -> set[str]:
    """Operations (``METHOD /path``) with a failure or error in schemathesis's JUnit report."""
    (report,) = report_dir.glob("junit-*.xml")
    root = ElementTree.parse(report).getroot()
    return {
        case.get("name", "")
        for case in root.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    }
