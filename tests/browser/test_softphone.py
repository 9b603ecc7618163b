"""The browser softphone (WebRTC) end to end: an agent logged in to the console in Chromium registers their
WebRTC extension with the real local Asterisk, answers a caller placed through it, and audio flows both ways.

Chromium's fake media devices play real speech (``../shared/speech``) into the agent's microphone; the caller
(``Local/s@test-caller/n``, :func:`tests.e2e.controller_support.dial_12345`) presses 0 for the queue and speaks once
the agent has answered (``TEST_AUDIO_AT=agent``), after some silence, so the two voices do not overlap. The agent's
words must be recognised by the project's ASR in the call recording (MixMonitor), and the caller's voice must
arrive in the browser (WebRTC ``inbound-rtp`` audio energy). After the caller hangs up, the workspace goes to
话后整理 (QueuePause with that reason) and back to 示闲 after ``softphone.wrap_up_s``.
"""

from __future__ import annotations

import difflib
import wave
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console.desk.services import DeskServices
from agent_console.softphone import AgentInterfaces, LocalPbxSoftphones
from asr.evaluate import normalize, read_wav, transcribe_pcm
from asr.whisper_engine import WhisperEngine
from config import Settings
from hotline.wiring import (
    ConsoleFeed,
    ControllerCallControl,
    Telephony,
    callback_schedulers,
    subscribe,
)
from ivr import events as ev
from ivr.controller import HotlineController
from ivr.pbx import LocalPbx, PbxInfo
from ivr.pbx.testcall import install_test_audio
from ivr.state import WRAP_UP_REASON
from tests.agent_console.harness import Console, console_settings, start_console, stop_console
from tests.asr.live_whisper import live_whisper
from tests.browser.conftest import CHROMIUM_ARGS, UserPage, chromium_path, page_for  # noqa: F401 - fixtures
from tests.conftest import missing
from tests.e2e.conftest import database, known_queue, local_pbx, pbx  # noqa: F401 - fixtures
from tests.e2e.controller_support import Events, dial_12345, e2e_settings, running

pytestmark = [pytest.mark.pbx, pytest.mark.browser, pytest.mark.slow]
EXTENSION = "6101"  # the agent's WebRTC extension (settings.softphone: 6101…)
INTERFACE = f"PJSIP/{EXTENSION}"
EMULATED_AGENT = (
    "Local/6851@test-agent/n"  # answers the test phone's call (68xx are reserved for tests)
)
CALLER = "13912346101"
AGENT_SPEECH = (
    "magicdata_cs_200017"  # 那我这边可以把电话转到我们投资理财的专业团队他们会给您详细讲解的
)
CALLER_SPEECH = "BAC009S0724W0124"  # 广州二手住宅市场表现一直相对稳健
CALLER_SILENCE_S = 9  # before the caller speaks: the agent's words (6 s) are over by then
WRAP_UP_S = 2
# The other party's voice has arrived in the browser (the softphone's inbound-rtp audio energy).
HEARD = "() => Number(document.querySelector('#sp-level').dataset.energy) > 0.01"


def utterance(settings: Settings, utt_id: str) -> tuple[Path, str]:
    """A 16 kHz recording of ``../shared/speech`` and its normalised transcript."""
    speech = Path(settings.shared_dir).resolve() / "speech"
    wav = speech / "wav16k" / f"{utt_id}.wav"
    if not wav.is_file():
        missing(f"speech sample {wav} not found (HOTLINE_SHARED_DIR)")
    for line in (speech / "transcripts.tsv").read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        if fields[0] == utt_id:
            return wav, fields[2]
    raise AssertionError(f"{utt_id} not in transcripts.tsv")


def after_silence(source: Path, seconds: int, target: Path) -> Path:
    """``source`` preceded by ``seconds`` of silence (same format)."""
    with wave.open(str(source)) as src:
        params, frames = src.getparams(), src.readframes(src.getnframes())
    with wave.open(str(target), "wb") as out:
        out.setparams(params)
        out.writeframes(b"\0" * params.sampwidth * params.nchannels * params.framerate * seconds)
        out.writeframes(frames)
    return target


def recognised_share(reference: str, hypothesis: str) -> float:
    """How much of ``reference`` appears, in order, in ``hypothesis`` (1.0: all of it)."""
    blocks = difflib.SequenceMatcher(
        None, reference, hypothesis, autojunk=False
    ).get_matching_blocks()
    return sum(b.size for b in blocks) / len(reference)


@pytest.fixture
def whisper(settings: Settings) -> Iterator[WhisperEngine]:
    with live_whisper(settings) as engine:
        yield engine


@pytest.fixture
def softphone_settings(settings: Settings, pbx: PbxInfo) -> Settings:  # noqa: F811
    own = console_settings(e2e_settings(settings, pbx))
    return own.model_copy(
        update={
            "softphone": own.softphone.model_copy(
                update={"extensions": {"agent": EXTENSION}, "wrap_up_s": WRAP_UP_S}
            )
        }
    )


@pytest.fixture
async def chromium(chromium_path: str, settings: Settings) -> AsyncIterator[Browser]:  # noqa: F811
    """Chromium whose microphone plays the agent's speech once (fake devices, no permission prompt)."""
    wav, _ = utterance(settings, AGENT_SPEECH)
    media = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
        "--autoplay-policy=no-user-gesture-required",
    ]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS + media
        )
        yield browser
        await browser.close()


@pytest.fixture
async def controller(
    softphone_settings: Settings,
    database: async_sessionmaker[AsyncSession],  # noqa: F811
    local_pbx: LocalPbx,  # noqa: F811
    pbx: PbxInfo,  # noqa: F811
) -> AsyncIterator[HotlineController]:
    if not pbx.webrtc_agents:  # started before the softphones existed
        vars(pbx).update(vars(local_pbx.restart()))
    async with running(softphone_settings, database, local_pbx, pbx, agents=[INTERFACE]) as ctrl:
        yield ctrl


@pytest.fixture
async def live_console(
    softphone_settings: Settings,
    database: async_sessionmaker[AsyncSession],  # noqa: F811
    controller: HotlineController,
    local_pbx: LocalPbx,  # noqa: F811
) -> AsyncIterator[Console]:
    """The console as `hotline run` wires it: the real controller behind the status buttons, the local PBX's
    softphone accounts, screen pops for the agent's extension."""
    interfaces = AgentInterfaces(softphone_settings)
    callbacks, _ = callback_schedulers(softphone_settings, database, controller)
    desk = DeskServices(
        call_control=ControllerCallControl(controller, callbacks),
        agent_interface=interfaces.interface,
    )
    softphones = LocalPbxSoftphones(softphone_settings, local_pbx.status)
    console = await start_console(softphone_settings, database, desk=desk, softphones=softphones)
    feed = ConsoleFeed(controller, console.hub, database, interfaces.username, console.clock)
    subscribe(Telephony(controller, feed=feed))
    yield console
    await stop_console(console)


def member_is(paused: bool, reason: str = "") -> Callable[[ev.DomainEvent], bool]:
    """The agent's queue membership reported paused (with ``reason``) or ready."""
    return lambda e: (
        isinstance(e, ev.MemberState)
        and e.interface == INTERFACE
        and e.paused == paused
        and (not paused or e.paused_reason == reason)
    )


async def test_an_agent_answers_a_real_call_in_the_browser_and_audio_flows_both_ways(
    page_for: Callable[[str], Awaitable[UserPage]],  # noqa: F811
    live_console: Console,
    controller: HotlineController,
    pbx: PbxInfo,  # noqa: F811
    settings: Settings,
    whisper: WhisperEngine,
    tmp_path: Path,
) -> None:
    _, agent_words = utterance(settings, AGENT_SPEECH)
    caller_wav, _ = utterance(settings, CALLER_SPEECH)
    caller_audio = install_test_audio(
        pbx, after_silence(caller_wav, CALLER_SILENCE_S, tmp_path / "caller.wav")
    )
    seen = Events(controller)

    agent = await page_for("agent")
    page = agent.page
    await page.goto(str(live_console.server.make_url("/workspace")))
    await page.wait_for_selector('#softphone[data-state="registered"]', timeout=20_000)
    assert "6101" in (await page.text_content("#sp-ext") or "")
    await page.click("#state-ready")  # 示闲: logs the extension into the queue
    await seen.wait(member_is(paused=False))

    uniqueid = await dial_12345(
        controller.ami,
        CALLER,
        ["TEST_DTMF=0", f"TEST_AUDIO={caller_audio}", "TEST_AUDIO_AT=agent", "TEST_WAIT=2"],
        prefix="softphone-",
    )
    await page.wait_for_selector('#softphone[data-state="ringing"]', timeout=30_000)
    assert CALLER in (await page.text_content("#sp-caller") or "")
    await page.wait_for_selector("#screenpop:not([hidden])")  # who calls, before answering
    assert CALLER in (await page.text_content("#pop-caller") or "")
    await agent.screenshot("softphone-ringing")
    await page.click("#sp-answer")
    await page.wait_for_selector('#softphone[data-state="talking"]')
    await agent.screenshot("softphone-talking")

    hung_up = await seen.wait(
        lambda e: isinstance(e, ev.ChannelHungUp) and e.chan.uniqueid == uniqueid, 60
    )
    await page.wait_for_selector('#softphone[data-state="registered"]')
    wrap_up = await seen.wait(  # 话后整理 after the call, then 示闲 again after wrap_up_s
        lambda e: member_is(paused=True, reason=WRAP_UP_REASON)(e) and e.at >= hung_up.at
    )
    await seen.wait(lambda e: member_is(paused=False)(e) and e.at > wrap_up.at, WRAP_UP_S + 10)
    assert await page.evaluate(HEARD), "the caller's voice did not reach the browser"

    pcm, rate = read_wav(pbx.recordings_dir / f"{uniqueid}.wav")
    heard = normalize(await transcribe_pcm(whisper, pcm, rate))
    share = recognised_share(agent_words, heard)
    assert share >= 0.6, (
        f"agent's words not in the recording: {heard!r} ({share:.0%} of {agent_words!r})"
    )

    await agent.screenshot("softphone-after-call")
    assert not agent.errors, agent.errors


async def test_an_administrators_test_phone_calls_12345_hears_the_greeting_and_presses_0_for_the_queue(
    page_for: Callable[[str], Awaitable[UserPage]],  # noqa: F811
    live_console: Console,
    controller: HotlineController,
    softphone_settings: Settings,
) -> None:
    seen = Events(controller)
    await controller.add_agent(EMULATED_AGENT, "测试坐席")  # someone to queue for
    admin = await page_for("admin")
    page = admin.page
    await page.goto(str(live_console.server.make_url("/test-phone")))
    await page.wait_for_selector('#softphone[data-state="registered"]', timeout=20_000)
    await page.click("#sp-call")
    await page.wait_for_selector('#softphone[data-state="talking"]', timeout=20_000)
    number = softphone_settings.softphone.test_phone_number
    await seen.wait(
        lambda e: isinstance(e, ev.ChannelState) and e.up and e.chan.caller_number == number
    )
    await page.wait_for_function(HEARD)  # the greeting reaches the browser
    await page.click("#softphone [data-tone='0']")  # 0: a person
    joined = await seen.wait(
        lambda e: isinstance(e, ev.CallerJoined) and e.chan.caller_number == number, 20
    )
    assert joined.chan.menu == "human"
    await seen.wait(lambda e: isinstance(e, ev.AgentConnected) and e.interface == EMULATED_AGENT)
    await page.click("#sp-hold")  # re-INVITE sendonly: the agent hears hold music
    await page.wait_for_selector('#softphone[data-state="held"]')
    await page.click("#sp-hold")
    await page.wait_for_selector('#softphone[data-state="talking"]')
    await page.click("#sp-mute")
    await page.wait_for_selector("#sp-mute[aria-pressed=true]")
    await admin.screenshot("softphone-test-phone")
    await page.click("#sp-hangup")
    await seen.wait(
        lambda e: (
            isinstance(e, ev.CallerLeft | ev.CallerAbandoned)
            and e.chan.uniqueid == joined.chan.uniqueid
        )
    )
    await page.wait_for_selector('#softphone[data-state="registered"]')
    await controller.remove_agent(EMULATED_AGENT)
    assert not admin.errors, admin.errors
