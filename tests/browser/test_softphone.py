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

import asyncio
import contextlib
import difflib
import json
import wave
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console.desk.services import DeskServices
from agent_console.softphone import AgentInterfaces
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
from ivr.callcontrol import CallControl
from ivr.controller import HotlineController
from ivr.pbx import LocalPbx, PbxInfo
from ivr.pbx.testcall import install_test_audio
from ivr.softphone_credentials import AUTH_FAMILY
from ivr.state import WRAP_UP_REASON
from tests.agent_console.harness import Console, console_settings, start_console, stop_console
from tests.asr.live_whisper import live_whisper
from tests.browser.conftest import (  # noqa: F401 - fixtures
    UserPage,
    chromium_hearing,
    chromium_path,
    page_for,
)
from tests.conftest import missing
from tests.e2e.callcontrol_support import DEPARTMENT_TEMPLATE, hang_up_all
from tests.e2e.conftest import (  # noqa: F401 - fixtures
    AmiEvents,
    ami,
    ami_events,
    database,
    known_queue,
    local_pbx,
    pbx,
)
from tests.e2e.controller_support import Events, dial_12345, e2e_settings, running
from tests.e2e.test_transfer import (
    DEPARTMENT,
    answered_by_department,
    bridged_pairs,
    department_phone,
    linked,
)

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
CREDENTIAL_TTL_S = (
    60  # the page renews the password after 48 s (before SIP.js refreshes its registration)
)
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
            # outside numbers (the departments' phones) answer in [test-department]
            "callcontrol": own.callcontrol.model_copy(
                update={"outside_template": DEPARTMENT_TEMPLATE}
            ),
            "softphone": own.softphone.model_copy(
                update={
                    "extensions": {"agent": EXTENSION},
                    "wrap_up_s": WRAP_UP_S,
                    "credential_ttl_s": CREDENTIAL_TTL_S,
                }
            ),
        }
    )


@pytest.fixture
async def chromium(chromium_path: str, settings: Settings) -> AsyncIterator[Browser]:  # noqa: F811
    """Chromium whose microphone plays the agent's speech once."""
    wav, _ = utterance(settings, AGENT_SPEECH)
    async with chromium_hearing(chromium_path, f"{wav}%noloop") as browser:
        yield browser


@pytest.fixture
def queue_agents() -> list[str]:
    """The queue members the controller logs out when it stops."""
    return [INTERFACE]


@pytest.fixture
async def controller(
    softphone_settings: Settings,
    database: async_sessionmaker[AsyncSession],  # noqa: F811
    local_pbx: LocalPbx,  # noqa: F811
    pbx: PbxInfo,  # noqa: F811
    queue_agents: list[str],
) -> AsyncIterator[HotlineController]:
    async with running(softphone_settings, database, local_pbx, pbx, agents=queue_agents) as ctrl:
        yield ctrl


@pytest.fixture
def interfaces(softphone_settings: Settings) -> AgentInterfaces:
    """Console username ↔ queue member interface, as `hotline run` maps them."""
    return AgentInterfaces(softphone_settings)


@pytest.fixture
async def live_console(
    softphone_settings: Settings,
    database: async_sessionmaker[AsyncSession],  # noqa: F811
    controller: HotlineController,
    interfaces: AgentInterfaces,
) -> AsyncIterator[Console]:
    """The console as `hotline run` wires it: the real controller behind the status buttons, its call control
    issuing the softphones' short-lived passwords, screen pops for the agent's extension."""
    callbacks, _ = callback_schedulers(softphone_settings, database, controller)
    desk = DeskServices(
        call_control=ControllerCallControl(controller, callbacks),
        agent_interface=interfaces.interface,
    )
    switchboard = CallControl(
        controller, softphone_settings.callcontrol, database, lambda: datetime.now(UTC)
    )
    switchboard.credentials.start()  # the passwords' own AMI login (`hotline run`: start_telephony)
    await asyncio.wait_for(switchboard.credentials.ami.connected.wait(), 20)
    console = await start_console(
        softphone_settings, database, desk=desk, softphones=None, switchboard=switchboard
    )
    feed = ConsoleFeed(controller, console.hub, database, interfaces.username, console.clock)
    subscribe(Telephony(controller, feed=feed, callcontrol=switchboard))
    yield console
    await stop_console(console)
    for extension in switchboard.credentials.live():  # other suites share the PBX
        await switchboard.revoke_softphone(extension)
    await switchboard.credentials.stop()


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


async def issued_password(controller: HotlineController) -> str:
    """The password Asterisk accepts for the agent's extension now (AstDB, res_sorcery_astdb's JSON)."""
    stored = await controller.astdb_get(AUTH_FAMILY, EXTENSION)
    assert stored is not None, "no password issued"
    return str(json.loads(stored)["password"])


async def test_the_softphone_renews_its_password_before_it_expires_and_registers_with_the_new_one(
    page_for: Callable[[str], Awaitable[UserPage]],  # noqa: F811
    live_console: Console,
    controller: HotlineController,
) -> None:
    agent = await page_for("agent")
    page = agent.page
    await page.clock.install()  # the page's timers on a clock the test moves
    await page.goto(str(live_console.server.make_url("/workspace")))
    await page.wait_for_selector('#softphone[data-state="registered"]', timeout=20_000)
    first = await issued_password(controller)
    await page.clock.run_for(int(CREDENTIAL_TTL_S * 0.8 * 1000) + 1000)
    # a REGISTER with the old password would be refused (401): accepted means the new one was used
    await page.wait_for_selector('#softphone[data-renewals="1"]', timeout=20_000)
    assert await page.get_attribute("#softphone", "data-state") == "registered"
    assert await issued_password(controller) != first
    assert not agent.errors, agent.errors


@contextlib.asynccontextmanager
async def agent_on_a_call(
    open_as: Callable[[str], Awaitable[UserPage]],
    console: Console,
    controller: HotlineController,
    variables: list[str],
) -> AsyncIterator[tuple[UserPage, str]]:
    """The agent's workspace in Chromium (``open_as``: the ``page_for`` fixture), 示闲; a caller placed through
    Asterisk (``variables``) rings the softphone and is answered. Yields the page and the caller's Uniqueid; the
    call's channels are hung up on exit."""
    seen = Events(controller)
    agent = await open_as("agent")
    page = agent.page
    await page.goto(str(console.server.make_url("/workspace")))
    await page.wait_for_selector('#softphone[data-state="registered"]', timeout=20_000)
    await page.click("#state-ready")
    await seen.wait(member_is(paused=False))
    uniqueid = await dial_12345(
        controller.ami, CALLER, ["TEST_DTMF=0", *variables], prefix="softphone-"
    )
    try:
        await page.wait_for_selector('#softphone[data-state="ringing"]', timeout=30_000)
        await page.click("#sp-answer")
        await page.wait_for_selector("#transfer-panel:visible")
        yield agent, uniqueid
    finally:
        await hang_up_all(controller, uniqueid)
    assert not agent.errors, agent.errors


async def transfer_to_department(page: Page, mode: str) -> None:
    """转接 beside the softphone: ``mode`` to the department the test's ticket would go to."""
    await page.select_option("#transfer-form select[name=mode]", mode)
    await page.select_option("#transfer-department", DEPARTMENT)
    await page.click("#transfer-to-department")


@pytest.mark.parametrize("button", ["complete", "cancel"])
async def test_the_agents_attended_transfer_buttons_send_star_2_or_star_1_over_webrtc(
    page_for: Callable[[str], Awaitable[UserPage]],  # noqa: F811
    live_console: Console,
    controller: HotlineController,
    ami_events: AmiEvents,  # noqa: F811
    button: str,
) -> None:
    """咨询转接 from the workspace: the agent consults the department, then 完成转接 sends *2 and Asterisk's own
    attended transfer joins caller and department, or 取消转接 sends *1 and the agent has the caller back; the
    outcome reaches the page on the hub."""
    async with agent_on_a_call(page_for, live_console, controller, ["TEST_WAIT=60"]) as (
        agent,
        uniqueid,
    ):
        page = agent.page
        await transfer_to_department(page, "attended")
        await page.wait_for_selector("#attended-controls:visible")
        await ami_events.wait_for(answered_by_department(department_phone()))  # consulting
        await page.click(f"#attended-{button}")
        if button == "complete":
            done = await ami_events.wait_for(
                lambda e: (
                    e.event == "AttendedTransfer"
                    and str(e.get("OrigTransfererChannel")).startswith(f"{INTERFACE}-")
                )
            )
            assert done.get("Result") == "Success"
            await page.wait_for_selector(f"#notices >> text=咨询转接至 {DEPARTMENT}：已转接")
            await page.wait_for_selector('#softphone[data-state="registered"]')  # the agent left
        else:
            await page.wait_for_selector(f"#notices >> text=咨询转接至 {DEPARTMENT}：已取消")
            graph = await bridged_pairs(controller)
            caller = controller.state.calls[uniqueid].channel
            assert linked(graph, caller, lambda name: name.startswith(f"{INTERFACE}-"))
            assert not any(name.startswith(f"Local/{department_phone()}@") for name in graph)
            assert await page.get_attribute("#softphone", "data-state") == "talking"
        await page.wait_for_selector("#attended-controls", state="hidden")


async def test_the_agent_brings_the_department_into_a_three_way_call_from_the_workspace(
    page_for: Callable[[str], Awaitable[UserPage]],  # noqa: F811
    live_console: Console,
    controller: HotlineController,
    ami_events: AmiEvents,  # noqa: F811
) -> None:
    """三方通话 from the workspace on a real WebRTC call: the caller, the agent's browser and the department's
    phone join one conference, and the outcome reaches the page on the hub."""
    calling = ["TEST_TONE=440", "TEST_WAIT=60"]  # the caller's steady tone
    async with agent_on_a_call(page_for, live_console, controller, calling) as (agent, uniqueid):
        page = agent.page
        await transfer_to_department(page, "three_way")
        joined: set[str] = set()
        while len(joined) < 3:
            event = await ami_events.wait_for(
                lambda e: (
                    e.event == "ConfbridgeJoin"
                    and e.get("Conference") == f"hotline-{uniqueid}"
                    and e.get("Channel") not in joined
                )
            )
            joined.add(str(event.get("Channel")))
        assert any(c.startswith(f"{INTERFACE}-") for c in joined)  # the agent's browser is in it
        assert (
            sum(c.startswith(f"Local/{department_phone()}@test-department-") for c in joined) == 1
        )
        await page.wait_for_selector(f"#notices >> text=三方通话至 {DEPARTMENT}：已接通")
        assert await page.get_attribute("#softphone", "data-state") == "talking"
        # the caller's tone goes on reaching the browser through the conference
        energy = "Number(document.querySelector('#sp-level').dataset.energy)"
        before = await page.evaluate(f"() => {energy}")
        await page.wait_for_function(f"() => {energy} > {before} + 0.01")
        await agent.screenshot("agent-three-way")
