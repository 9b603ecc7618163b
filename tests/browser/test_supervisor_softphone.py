"""A 班长 supervises from the browser: the 班长席 page carries the supervisor's own softphone, 密语 on an agent's row
rings it, and once answered the supervisor's voice reaches the agent's leg only — on the real Asterisk.

Every party plays its own steady tone: the caller 440 Hz and the agent 620 Hz (emulated phones that record what
they hear, MixMonitor r()), the supervisor 1,400 Hz through Chromium's fake microphone over WebRTC.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser

from agent_console.softphone import AgentInterfaces
from config import Settings
from ivr.controller import HotlineController
from ivr.pbx import PbxInfo
from tests.agent_console.harness import Console, console_settings
from tests.browser.conftest import (  # noqa: F401 - fixtures
    UserPage,
    chromium_hearing,
    chromium_path,
    page_for,
)
from tests.browser.test_softphone import controller, live_console  # noqa: F401 - fixtures
from tests.e2e.callcontrol_support import (
    AGENT,
    agent_answers,
    callcontrol_settings,
    stop_recordings,
    tone_share,
    write_tone,
)
from tests.e2e.conftest import (  # noqa: F401 - fixtures
    AmiEvents,
    ami,
    ami_events,
    database,
    known_queue,
    local_pbx,
    pbx,
)

pytestmark = [pytest.mark.pbx, pytest.mark.browser, pytest.mark.slow]
CALLER_HZ, AGENT_HZ, SUPERVISOR_HZ = 440, 620, 1400
SUPERVISOR_EXTENSION = "6102"  # the 班长's WebRTC extension (settings.softphone: 6101…)
# three seconds of the supervisor's microphone sent (20-ms RTP packets)
SPOKE_3_S = "() => Number(document.querySelector('#sp-level').dataset.sent) >= 150"


class EmulatedAgentInterfaces(AgentInterfaces):
    """The console account ``agent`` answers on the emulated phone ``AGENT``, which records what it hears."""

    def interface(self, username: str) -> str:
        return AGENT if username == "agent" else super().interface(username)

    def username(self, interface: str) -> str | None:
        return "agent" if interface == AGENT else super().username(interface)


@pytest.fixture
def softphone_settings(settings: Settings, pbx: PbxInfo) -> Settings:  # noqa: F811
    """No overflow; the supervisor, not the agent, has a browser softphone."""
    own = console_settings(callcontrol_settings(settings, pbx))
    return own.model_copy(
        update={
            "softphone": own.softphone.model_copy(
                update={"extensions": {"supervisor": SUPERVISOR_EXTENSION}}
            )
        }
    )


@pytest.fixture
def interfaces(softphone_settings: Settings) -> AgentInterfaces:
    return EmulatedAgentInterfaces(softphone_settings)


@pytest.fixture
def queue_agents() -> list[str]:
    return [AGENT]


@pytest.fixture
async def chromium(chromium_path: str, tmp_path: Path) -> AsyncIterator[Browser]:  # noqa: F811
    """Chromium whose microphone plays the supervisor's tone (looped)."""
    tone = tmp_path / "supervisor.wav"
    write_tone(tone, SUPERVISOR_HZ, 5.0, rate=16000)
    async with chromium_hearing(chromium_path, str(tone)) as browser:
        yield browser


async def test_a_supervisor_whispers_from_the_browser_and_only_the_agent_hears_it(
    page_for: Callable[[str], Awaitable[UserPage]],  # noqa: F811
    live_console: Console,  # noqa: F811
    controller: HotlineController,  # noqa: F811
    pbx: PbxInfo,  # noqa: F811
    ami_events: AmiEvents,  # noqa: F811
) -> None:
    tag = f"whisper-browser-{uuid.uuid4().hex[:8]}"
    tones = [
        f"TEST_TONE={CALLER_HZ}",
        f"TEST_RECORD={tag}-caller",
        f"__TEST_AGENT_TONE={AGENT_HZ}",
        f"__TEST_AGENT_RECORD={tag}-agent",
    ]
    async with agent_answers(controller, tones) as (_, _, _, connected):
        supervisor = await page_for("supervisor")
        page = supervisor.page
        await page.goto(str(live_console.server.make_url("/supervision")))
        await page.wait_for_selector('#softphone[data-state="registered"]', timeout=20_000)
        assert SUPERVISOR_EXTENSION in (await page.text_content("#sp-ext") or "")
        row = page.locator("#supervision-board tbody tr", has_text="测试坐席")
        await row.get_by_role("button", name="密语").click()
        await page.wait_for_selector('#softphone[data-state="ringing"]', timeout=20_000)
        assert "密语" in (await page.text_content("#sp-caller") or "")
        await page.click("#sp-answer")
        started = await ami_events.wait_for(lambda e: e.event == "ChanSpyStart")
        assert started.get("SpyeeChannel") == connected.member_channel
        await page.wait_for_function(SPOKE_3_S)
        await supervisor.screenshot("supervision-whisper")
        await page.click("#sp-hangup")
        await ami_events.wait_for(lambda e: e.event == "ChanSpyStop", timeout_s=15)
        await stop_recordings(controller, connected)
    recordings = Path(pbx.recordings_dir)
    agent_heard = recordings / f"{tag}-agent-heard.wav"
    caller_heard = recordings / f"{tag}-caller-heard.wav"
    assert tone_share(agent_heard, CALLER_HZ) > 0.1  # the agent hears the caller …
    assert tone_share(agent_heard, SUPERVISOR_HZ) > 0.1  # … and the supervisor in the browser
    assert tone_share(caller_heard, AGENT_HZ) > 0.1  # the caller hears the agent …
    assert tone_share(caller_heard, SUPERVISOR_HZ) < 0.001  # … never the supervisor
    assert not supervisor.errors, supervisor.errors
