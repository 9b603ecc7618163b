"""Playwright on Debian's Chromium against a console on a free loopback port (SQLite, one account per role).

Never runs `playwright install`: the browser is /usr/bin/chromium (Debian package `chromium`; Chinese glyphs
need `fonts-noto-cjk`). Screenshots go to test-artifacts/ (gitignored).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

from config import Settings
from hotline.db import create_schema, make_engine, make_sessionmaker
from tests.agent_console.harness import (
    Console,
    console_settings,
    password_of,
    start_console,
    stop_console,
)
from tests.agent_console.tickets_support import recording_desk
from tests.conftest import ROOT, missing

CHROMIUM = "/usr/bin/chromium"
NOTO_CJK = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 10_000


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium, and the CJK fonts without which Chinese renders as boxes."""
    if not Path(CHROMIUM).exists():
        missing("Debian chromium not installed (apt-get install chromium fonts-noto-cjk)")
    if not Path(NOTO_CJK).exists():
        missing("fonts-noto-cjk not installed: Chinese text would render as boxes")
    return CHROMIUM


@contextlib.asynccontextmanager
async def chromium_hearing(chromium_path: str, microphone: str) -> AsyncIterator[Browser]:
    """Chromium whose microphone plays ``microphone`` (a WAV file, ``%noloop`` appended: once), with fake
    media devices and no permission prompt."""
    media = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}",
        "--autoplay-policy=no-user-gesture-required",
    ]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS + media
        )
        yield browser
        await browser.close()


@pytest.fixture(scope="session")
async def chromium(chromium_path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        await browser.close()


@pytest.fixture
async def live_console(settings: Settings, tmp_path: Path) -> AsyncIterator[Console]:
    """The console on a free loopback port with a fresh SQLite database, one account per role and its telephony
    recorded (:class:`tests.agent_console.tickets_support.RecordingCallControl`)."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'console.db'}")
    await create_schema(engine)
    own = console_settings(settings)
    console = await start_console(own, make_sessionmaker(engine), desk=recording_desk(own))
    yield console
    await stop_console(console)
    await engine.dispose()


@dataclass
class UserPage:
    """A logged-in tab and everything the browser complained about (console errors, CSP violations)."""

    page: Page
    errors: list[str] = field(default_factory=list)

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
async def page_for(
    chromium: Browser, live_console: Console
) -> AsyncIterator[Callable[[str], Awaitable[UserPage]]]:
    """``await page_for("agent")``: a fresh browser context logged in through the login form as that role."""
    contexts = []

    async def open_as(username: str) -> UserPage:
        context = await chromium.new_context(
            locale="zh-CN", viewport={"width": 1280, "height": 800}
        )
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = await context.new_page()
        user_page = UserPage(page)

        def on_console(msg: ConsoleMessage) -> None:
            if msg.type == "error":
                user_page.errors.append(msg.text)

        page.on("console", on_console)
        page.on("pageerror", lambda exc: user_page.errors.append(str(exc)))
        await page.goto(str(live_console.server.make_url("/login")))
        await page.fill("#username", username)
        await page.fill("#password", password_of(username))
        await page.click("#login-submit")
        await page.wait_for_url(str(live_console.server.make_url("/")))
        return user_page

    yield open_as
    for context in contexts:
        await context.close()
