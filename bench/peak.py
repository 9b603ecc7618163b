"""The peak, with faults (应接尽接): SIP callers with real speech through the local Asterisk at three times the
agents' capacity, and the same again with a fault in the middle of the peak.

    python -m bench.peak [--minutes 10] [--faults bot_kill,ami_cut,pg_stop] [--fault-minutes 4] [--no-main]

Setup per run: a private PostgreSQL (hotline.local_postgres) at the schema head with the catalogue's departments
and the sample knowledge base; the local PBX (ivr.pbx.LocalPbx, started unless running); the service as its own
process (``python -m bench.peak serve``: the AMI controller and the speech bot as ``hotline bot --with-ivr`` runs
them, plus turn timing); SIPp registering ``--agents`` softphones (extensions of PbxInfo.agents, added to the
queue with AMI QueueAdd as the controller does) that answer after 1 s and talk 60–180 s × ``--talk-scale``, then
hang up (Asterisk adds the queue's 10 s wrap-up). Callers (SIPp through the PBX's simulated carrier trunk, each
call from its own mobile number 139…, so the bot knows whom to call back and missed calls are per citizen): real
speech of ../shared/speech (telephone band, G.711 a-law pcaps made once into var/bench-peak/, one RTP stream
across a caller's rounds) in rounds of one utterance and a pause (``--pause``; a caller who stays two rounds
with the bot tells the matter and gets a ticket); 15 % press 0 (a person), 15 % give up 1 s after the menu
digit (abandon: the missed-call call-back), the rest press 1/2.

Profile: ``--normal-minutes`` at 70 % of capacity, ``--minutes`` at 3× capacity, ``--recovery-minutes`` at 70 %,
then the callers still on the line finish (each gives up after ``--rounds`` rounds). Capacity = agents ×
60 / (mean talk + 1 s ring + 10 s wrap-up) calls a minute. Overflow to the bot runs with a peak window all day
and ``--max-wait`` (the estimated wait that sends a caller to the bot), so callers are answered within 15 s.

Figures: the call log through ivr.service_levels (the console's code) cross-checked with SIPp's counts; tickets
from the database against the ticket numbers the bot read back; the bot's turn latency (from the end of the
caller's speech, as the recogniser's Final places it, to the bot's next reply starting to play); CPU and memory
per component from /proc; a timeline (waiting callers, agents busy, bot sessions from AMI every 2 s; the 15-s
rate per minute from the log). Results: bench/results/peak.json, peak.md, peak.png.

Faults (own runs, under ``faults``): ``bot_kill`` SIGKILLs the service process (bot and controller) mid-peak and
starts it again; ``ami_cut`` kills the AMI TCP connections (``ss -K``), then restarts Asterisk (LocalPbx.restart;
Asterisk gives the queue members back from AstDB, queues.conf persistentmembers; the agents' SIPp
keeps its registrations, which PJSIP also keeps in AstDB); ``pg_stop`` stops PostgreSQL for 30 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import wave
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from config import Settings, load_settings
from config.settings import SHIPPED_TOML
from hotline.db import make_engine, make_sessionmaker
from hotline.local_postgres import LocalPostgres
from ivr.models import CallRecord
from ivr.pbx import LocalPbx, PbxInfo
from ivr.pbx.testcall import ami_connect
from ivr.service_levels import facts_of, service_levels
from tickets.models import Ticket

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
SIPP_DIR = HERE / "sipp"
QUEUE = "hotline"
UNAVAILABLE = "5"  # AST_DEVICE_UNAVAILABLE in QueueMember Status
SAMPLE_S = 2.0
WRAP_UP_S = 10.0  # queues.conf wrapuptime
RING_S = 1.0  # the agents' softphones ring this long
UTTERANCE_S = 6.0  # a caller's utterance lasts about this long
REPLY_MARKS = {"answer", "ask_matter", "ask_phone", "filler"}
FAULTS = ("bot_kill", "ami_cut", "pg_stop")
PG_DOWN_S = 30.0
KINDS = {
    "consult": ("1", 0.40),
    "complaint": ("2", 0.30),
    "human": ("0", 0.15),
    "abandon": ("2", 0.15),
}


@dataclass
class Profile:
    """One run's load: phase lengths in minutes, the agents and their talk time, the callers' patience."""

    normal_minutes: float = 3.0
    peak_minutes: float = 10.0
    recovery_minutes: float = 3.0
    agents: int = 4
    talk_scale: float = 0.25  # of 60–180 s
    rounds: int = 8  # a patient caller gives up after this many rounds
    max_wait_s: float = 8.0
    fault: str | None = None
    pause_s: float = 5.0  # after each utterance a caller waits this long (for the bot's reply) before speaking again

    @property
    def round_s(self) -> float:
        """One caller round: an utterance, then the pause."""
        return UTTERANCE_S + self.pause_s

    @property
    def talk_s(self) -> tuple[float, float]:
        return 60 * self.talk_scale, 180 * self.talk_scale

    @property
    def capacity_per_min(self) -> float:
        """Calls a minute the agents can take."""
        lo, hi = self.talk_s
        return self.agents * 60 / ((lo + hi) / 2 + RING_S + WRAP_UP_S)

    def phases(self) -> list[tuple[str, float, float]]:
        """(name, minutes, calls a minute)."""
        cap = self.capacity_per_min
        return [
            (n, m, r)
            for n, m, r in (
                ("normal", self.normal_minutes, 0.7 * cap),
                ("peak", self.peak_minutes, 3 * cap),
                ("recovery", self.recovery_minutes, 0.7 * cap),
            )
            if m > 0
        ]

    @property
    def fault_at_s(self) -> float:
        return 60 * (self.normal_minutes + self.peak_minutes / 2)


# ---- audio for SIPp --------------------------------------------------------------------------------------------
SEG_END = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _alaw(sample: int) -> int:
    """ITU-T G.711 A-law of one signed 16-bit sample."""
    value, mask = sample >> 3, 0xD5
    if value < 0:
        value, mask = -value - 1, 0x55
    seg = next((i for i, end in enumerate(SEG_END) if value <= end), 8)
    if seg == 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((value >> (1 if seg < 2 else seg)) & 0x0F)) ^ mask


ALAW = bytes(_alaw(s if s < 32768 else s - 65536) for s in range(65536))


def _pcap(packets: list[tuple[float, bytes]]) -> bytes:
    """A pcap (Ethernet) of UDP packets 127.0.0.1:4000 → :4002 carrying the given RTP, at the given times."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for at, rtp in packets:
        udp = struct.pack("!HHHH", 4000, 4002, 8 + len(rtp), 0) + rtp
        ip = (
            struct.pack(
                "!BBHHHBBH4s4s",
                0x45,
                0,
                20 + len(udp),
                0,
                0,
                64,
                17,
                0,
                bytes([127, 0, 0, 1]),
                bytes([127, 0, 0, 1]),
            )
            + udp
        )
        frame = b"\0" * 12 + b"\x08\x00" + ip
        sec, usec = int(at), round((at - int(at)) * 1e6)
        out.append(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
    return b"".join(out)


def speech_pcaps(wav_path: Path, rounds: int, period_s: float) -> list[bytes]:
    """8 kHz 16-bit mono WAV → one pcap a round of RTP PCMA (payload type 8, 20 ms packets): one stream (SSRC)
    whose sequence numbers and timestamps go on across the rounds, which start ``period_s`` apart, as a phone's
    would. (The same capture played twice would repeat its sequence numbers, and Asterisk drops the repeat.)"""
    with wave.open(str(wav_path)) as w:
        assert w.getframerate() == 8000 and w.getsampwidth() == 2 and w.getnchannels() == 1, (
            wav_path
        )
        pcm = w.readframes(w.getnframes())
    samples = struct.unpack(f"<{len(pcm) // 2}H", pcm[: len(pcm) // 2 * 2])
    payload = bytes(ALAW[s] for s in samples)
    per_round = round(period_s * 50)  # packets a round's period spans
    pcaps = []
    for k in range(rounds):
        packets = []
        for n, i in enumerate(range(0, len(payload) - 159, 160)):
            seq, ts = (k * per_round + n) % 65536, (k * per_round + n) * 160 % 2**32
            marker = 0x80 if n == 0 else 0  # a talk spurt begins
            rtp = struct.pack("!BBHII", 0x80, 8 | marker, seq, ts, 0x5EED) + payload[i : i + 160]
            packets.append((n * 0.02, rtp))
        pcaps.append(_pcap(packets))
    return pcaps


@dataclass
class Media:
    """Real telephone-band utterances (../shared/speech) and the folder of their round-by-round pcaps."""

    speech: list[Path]
    cache: Path

    def rounds(self, wav: Path, rounds: int, period_s: float) -> list[Path]:
        """The pcaps of ``rounds`` rounds of ``wav``, ``period_s`` apart (made once)."""
        stem = f"{wav.stem}-{round(period_s * 1000)}ms"
        paths = [self.cache / f"{stem}-{k}.pcap" for k in range(rounds)]
        if not all(path.is_file() for path in paths):
            for path, pcap in zip(paths, speech_pcaps(wav, rounds, period_s), strict=True):
                path.write_bytes(pcap)
        return paths


def prepare_media(settings: Settings, cache: Path) -> Media:
    speech_dir = Path(settings.shared_dir)
    speech_dir = (
        (speech_dir if speech_dir.is_absolute() else ROOT / speech_dir)
        / "speech"
        / "wav8k_telephone_sim"
    )
    cache.mkdir(parents=True, exist_ok=True)
    speech = sorted(speech_dir.glob("*.wav"))
    if not speech:
        raise SystemExit(f"no speech in {speech_dir} (../shared/speech)")
    return Media(speech, cache)


def wav_seconds(wav: Path) -> float:
    with wave.open(str(wav)) as w:
        return w.getnframes() / w.getframerate()


def speaking_rounds(pcaps: list[Path], wait_ms: int) -> str:
    """The caller's rounds for caller.xml: each plays its pcap (SIPp plays it in the background) and waits
    ``wait_ms`` for the hotline to hang up; after the last the caller gives up (label 3)."""
    steps = []
    for k, pcap in enumerate(pcaps):
        after = "3" if k == len(pcaps) - 1 else f"r{k + 1}"
        steps.append(
            f'  <label id="r{k}"/>\n'
            f'  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>\n'
            f'  <recv request="BYE" timeout="{wait_ms}" ontimeout="{after}" next="9"/>'
        )
    return "\n".join(steps)


def mobile_numbers(rng: random.Random, count: int) -> list[str]:
    """``count`` different mobile numbers 139xxxxxxxx: one citizen per call."""
    return [f"139{n:08d}" for n in rng.sample(range(10**8), count)]


def injection_file(path: Path, numbers: list[str]) -> Path:
    """A SIPp injection file (``-inf``): one caller number ([field0]) per call, in order."""
    path.write_text("SEQUENTIAL\n" + "".join(f"{n};\n" for n in numbers))
    return path


# ---- processes ---------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _render(template: str, workdir: Path, name: str, **fields: str) -> Path:
    text = (SIPP_DIR / template).read_text()
    for key, value in fields.items():
        text = text.replace(f"@{key}@", value)
    path = workdir / name
    path.write_text(text)
    return path


def cpu_rss(pids: list[int]) -> tuple[float, int]:
    """CPU seconds and resident bytes of these processes and all their descendants (from /proc)."""
    tree = set(pids)
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            parts = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(parts[1]), []).append(int(stat.parent.name))
    todo = list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in tree:
                tree.add(child)
                todo.append(child)
    cpu, rss = 0.0, 0
    tick, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    for pid in tree:
        with contextlib.suppress(OSError, IndexError, ValueError):
            parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(parts[11]) + int(parts[12])) / tick
            rss += int(parts[21]) * page
    return cpu, rss


class Postgres:
    """The run's private PostgreSQL, which can be stopped and started again with its data (the pg_stop fault)."""

    def __init__(self) -> None:
        self.server = LocalPostgres.start()

    def _ctl(self, *args: str) -> None:
        cmd = [str(self.server.bindir / "pg_ctl"), "-D", str(self.server.datadir / "data"), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def pause(self) -> None:
        self._ctl("-m", "fast", "-w", "stop")

    def resume(self) -> None:
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {self.server.port} -k {self.server.datadir} -c fsync=off "
            "-c max_connections=300"
        )
        self._ctl("-o", opts, "-w", "-l", str(self.server.datadir / "log"), "start")

    def pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.server.datadir / "data" / "postmaster.pid").read_text().split()[0])
        return None


@dataclass
class SippRun:
    kind: str
    phase: str
    proc: asyncio.subprocess.Process
    workdir: Path
    calls: int


@dataclass
class Run:
    """Everything one run starts, and what it saw."""

    profile: Profile
    settings: Settings
    pbx: LocalPbx
    info: PbxInfo
    pg: Postgres
    workdir: Path
    media: Media
    agents: dict[str, str]
    service: asyncio.subprocess.Process | None = None
    uas: asyncio.subprocess.Process | None = None
    uas_port: int = 0
    sipps: list[SippRun] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    cpu_start: dict[str, float] = field(default_factory=dict)
    rss_max: dict[str, int] = field(default_factory=Counter)
    service_pids: list[int] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def at(self) -> float:
        return round(time.monotonic() - self.started, 1)

    def note(self, what: str) -> None:
        self.events.append({"t_s": self.at(), "event": what})
        print(f"[{self.at():7.1f} s] {what}", flush=True)


# ---- the service process -----------------------------------------------------------------------------------------
ALL_DAY = (
    "\n[[overflow.peak_windows]]  # bench.peak: the peak all day\nweekdays = [1, 2, 3, 4, 5, 6, 7]\n"
    "start = 00:00:00\nend = 23:59:59\n"
)


def service_env(run: Run) -> dict[str, str]:
    """The service's settings: the shipped file with a peak window all day; overflow to the bot after
    ``max_wait_s`` of estimated wait; the run's database, spool and data folder; the PBX's bot port."""
    config = run.workdir / "hotline.toml"
    config.write_text(SHIPPED_TOML.read_text(encoding="utf-8") + ALL_DAY, encoding="utf-8")
    return {
        "HOTLINE_CONFIG": str(config),
        "HOTLINE_DATABASE_URL": run.pg.server.url(),
        "HOTLINE_ASR_AUDIOSOCKET_PORT": str(run.info.audiosocket_port),
        "HOTLINE_OVERFLOW_MAX_ESTIMATED_WAIT_S": str(run.profile.max_wait_s),
        "HOTLINE_OVERFLOW_OFF_HOURS_TO_BOT": "false",
        "HOTLINE_DATA_DIR": str(run.workdir / "data"),
        "HOTLINE_CALLLOG_SPOOL_PATH": str(run.workdir / "calllog-spool.jsonl"),
    }


def serve(trace_path: Path) -> int:
    """``hotline bot --with-ivr`` (the AMI controller and the speech bot in one process) with the bot's turn marks,
    end-of-speech times and outcomes appended to ``trace_path`` (JSON lines): :func:`asr.bot.build_bot` is
    wrapped to add them."""
    import asr.bot
    from asr.recognizer import Final
    from hotline.cli import main as hotline

    out = trace_path.open("a", buffering=1)
    last_final_end: list[float] = [0.0]

    def write(record: dict[str, Any]) -> None:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")

    class TimedSession:
        """A recogniser session that notes when (on the monotonic clock) each Final's speech ended."""

        def __init__(self, inner: Any) -> None:
            self.inner, self.sample_rate, self.fed_s = inner, inner.sample_rate, 0.0

        async def feed(self, pcm: bytes) -> list[Any]:
            self.fed_s += len(pcm) / 2 / self.sample_rate
            fed_at = time.monotonic()
            events = await self.inner.feed(pcm)
            for ev in events:
                if isinstance(ev, Final):
                    last_final_end[0] = fed_at - max(0.0, self.fed_s - ev.end_s)
            return list(events)

        async def flush(self) -> list[Any]:
            return list(await self.inner.flush())

    class TimedFactory:
        def __init__(self, inner: Any) -> None:
            self.inner, self.name = inner, inner.name

        def __call__(self, sample_rate: int = 8000) -> TimedSession:
            return TimedSession(self.inner(sample_rate))

        def close(self) -> None:
            self.inner.close()

    def trace(call_id: str, mark: str, at: float) -> None:
        record: dict[str, Any] = {"call": call_id, "mark": mark, "at": at}
        if mark == "final":
            record["speech_end"] = last_final_end[0]
        write(record)

    build_bot = asr.bot.build_bot

    async def timed_build_bot(*args: Any, **kwargs: Any) -> Any:
        report = kwargs.get("on_outcome")

        async def on_outcome(call_id: str, outcome: Any) -> None:
            write(
                {
                    "call": call_id,
                    "outcome": outcome.next,
                    "reason": outcome.reason,
                    "ticket": outcome.ticket_no,
                }
            )
            if report is not None:
                await report(call_id, outcome)

        bot = await build_bot(*args, **(kwargs | {"trace": trace, "on_outcome": on_outcome}))
        bot.recognizers = TimedFactory(bot.recognizers)
        return bot

    asr.bot.build_bot = timed_build_bot  # type: ignore[assignment]
    return hotline(["bot", "--with-ivr"])


async def start_service(run: Run) -> None:
    env = os.environ | service_env(run)
    log_path = run.workdir / "service.log"
    seen = (
        log_path.stat().st_size if log_path.is_file() else 0
    )  # a restart: only what it writes counts
    log = log_path.open("ab")
    run.service = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.peak",
        "serve",
        "--trace",
        str(run.workdir / "trace.jsonl"),
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
    )
    run.service_pids.append(run.service.pid)
    async with asyncio.timeout(240):
        while b"speech bot listening on" not in log_path.read_bytes()[seen:]:
            if run.service.returncode is not None:
                raise SystemExit(f"the service exited: see {run.workdir / 'service.log'}")
            await asyncio.sleep(0.5)
    run.note("service ready")


async def stop_service(run: Run) -> None:
    if run.service and run.service.returncode is None:
        run.service.terminate()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(60):
                await run.service.wait()
        if run.service.returncode is None:
            run.service.kill()
            await run.service.wait()


# ---- agents ------------------------------------------------------------------------------------------------------
async def _sipp(run: Run, args: list[str], workdir: Path) -> asyncio.subprocess.Process:
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    return await asyncio.create_subprocess_exec(
        shutil.which("sipp") or "sipp",
        f"127.0.0.1:{run.info.sip_port}",
        "-i",
        "127.0.0.1",
        "-mi",
        "127.0.0.1",
        "-nostdin",
        "-trace_err",
        "-trace_screen",
        *args,
        cwd=workdir,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def agents_log_in(run: Run) -> None:
    """Register every agent softphone from the UAS's port (Asterisk keeps the source address as contact), start
    the UAS there, QueueAdd them (as the controller's ``add_agent`` does), and wait until they are reachable."""
    run.uas_port = _free_port()
    for ext, password in run.agents.items():
        scenario = _render(
            "register.xml",
            run.workdir,
            f"register-{ext}.xml",
            EXT=ext,
            CONTACT_PORT=str(run.uas_port),
        )
        proc = await _sipp(
            run,
            [
                "-sf",
                str(scenario),
                "-au",
                ext,
                "-ap",
                password,
                "-m",
                "1",
                "-p",
                str(run.uas_port),
                "-timeout",
                "20s",
                "-timeout_error",
            ],
            run.workdir / f"register-{ext}",
        )
        if await proc.wait() != 0:
            raise SystemExit(
                f"agent {ext} could not register (see {run.workdir / f'register-{ext}'})"
            )
    lo, hi = run.profile.talk_s
    scenario = _render(
        "agent.xml",
        run.workdir,
        "agent.xml",
        TALK_MIN=str(max(1, round(lo / 5))),
        TALK_MAX=str(max(1, round(hi / 5))),
    )
    run.uas = await _sipp(
        run, ["-sf", str(scenario), "-p", str(run.uas_port), "-mp", "39000"], run.workdir / "uas"
    )
    manager = await ami_connect(run.pbx.status() or run.info)
    try:
        for ext in run.agents:
            await manager.send_action(
                {
                    "Action": "QueueAdd",
                    "Queue": QUEUE,
                    "Interface": f"PJSIP/{ext}",
                    "Penalty": run.settings.overflow.agent_penalty,
                    "MemberName": f"坐席{ext}",
                    "StateInterface": f"PJSIP/{ext}",
                },
                as_list=False,
            )
    finally:
        manager.close()
    run.note(f"agents logged in and reachable ({', '.join(sorted(await agents_reachable(run)))})")


async def agents_reachable(run: Run) -> list[str]:
    """Wait until every agent is a queue member Asterisk can reach; their member names."""
    manager = await ami_connect(run.pbx.status() or run.info)
    try:
        async with asyncio.timeout(60):
            while True:
                reply = await manager.send_action({"Action": "QueueStatus", "Queue": QUEUE})
                status = {
                    m.get("Name"): m.get("Status")
                    for m in (reply if isinstance(reply, list) else [reply])
                    if m.event == "QueueMember"
                }
                if len(status) == len(run.agents) and UNAVAILABLE not in status.values():
                    return list(status)
                await asyncio.sleep(1)
    finally:
        manager.close()


async def reset_queue(info: PbxInfo) -> None:
    """No member, no waiting caller, no statistics (as the e2e tests leave it)."""
    manager = await ami_connect(info)
    try:
        reply = await manager.send_action({"Action": "QueueStatus", "Queue": QUEUE})
        for m in reply if isinstance(reply, list) else [reply]:
            if m.event == "QueueMember":
                await manager.send_action(
                    {"Action": "QueueRemove", "Queue": QUEUE, "Interface": m.get("Location")},
                    as_list=False,
                )
            elif m.event == "QueueEntry":
                await manager.send_action(
                    {"Action": "Hangup", "Channel": m.get("Channel")}, as_list=False
                )
        await manager.send_action({"Action": "QueueReset", "Queue": QUEUE}, as_list=False)
    finally:
        manager.close()


# ---- callers -----------------------------------------------------------------------------------------------------
async def place_calls(run: Run, rng: random.Random) -> None:
    """Every phase: one SIPp per caller kind at its share of the phase's rate, through the carrier trunk with a
    mobile number of its own per call; phases follow each other."""
    n = 0
    carrier, password = run.info.carrier_username, run.info.carrier_password
    for phase, minutes, rate in run.profile.phases():
        run.note(f"phase {phase}: {rate:.1f} calls/min for {minutes} min")
        for kind, (digit, share) in KINDS.items():
            calls = round(rate * share * minutes)
            if calls == 0:
                continue
            workdir = run.workdir / f"sipp-{phase}-{kind}"
            workdir.mkdir(parents=True, exist_ok=True)
            numbers = injection_file(workdir / "numbers.csv", mobile_numbers(rng, calls))
            wav = rng.choice(run.media.speech)
            period = (
                wav_seconds(wav) + run.profile.pause_s
            )  # one round: the utterance, then the pause
            scenario = _render(
                "caller.xml",
                workdir,
                "caller.xml",
                MENU=f"/usr/share/sip-tester/dtmf_2833_{digit}.pcap",
                ROUNDS=speaking_rounds(
                    run.media.rounds(wav, 1 if kind == "abandon" else run.profile.rounds, period),
                    round(period * 1000),
                ),
            )
            if (
                kind == "abandon"
            ):  # gives up 1 s after the menu digit: in the menu, the queue or ringing
                text = scenario.read_text().replace(
                    'timeout="4000" ontimeout="1"', 'timeout="1000" ontimeout="3"'
                )
                scenario.write_text(text)
            proc = await _sipp(
                run,
                [
                    "-sf",
                    str(scenario),
                    "-s",
                    "12345",
                    "-au",
                    carrier,
                    "-ap",
                    password,
                    "-inf",
                    str(numbers),
                    "-p",
                    "0",
                    "-mp",
                    str(40000 + 40 * n),
                    "-m",
                    str(calls),
                    "-r",
                    f"{rate * share:.3f}",
                    "-rp",
                    "60000",
                    "-l",
                    "200",
                    "-timeout",
                    f"{int(60 * minutes + 40 * run.profile.rounds + 300)}s",
                ],
                workdir,
            )
            run.sipps.append(SippRun(kind, phase, proc, workdir, calls))
            n += 1
        await asyncio.sleep(60 * minutes)
    run.note("all calls placed")


def sipp_counts(s: SippRun) -> dict[str, int]:
    """Calls created, successful and failed, from SIPp's final screen."""
    text = "\n".join(p.read_text(errors="replace") for p in s.workdir.glob("*_screen.log"))
    counts = {}
    for key, label in (
        ("created", "Total Calls created"),
        ("successful", "Successful call"),
        ("failed", "Failed call"),
    ):
        found = re.findall(rf"{label}\s*\|\s*\S*\s*\|\s*(\d+)", text)
        counts[key] = int(found[-1]) if found else 0
    return counts


# ---- sampling ----------------------------------------------------------------------------------------------------
async def sample(run: Run, stop: asyncio.Event) -> None:
    """Every SAMPLE_S: waiting callers, agents busy, bot sessions (AMI), CPU and memory per component."""
    manager = None
    while not stop.is_set():
        point: dict[str, Any] = {"t_s": run.at()}
        try:
            if manager is None:
                manager = await ami_connect(run.pbx.status() or run.info, timeout_s=3)
            async with asyncio.timeout(3):
                status = await manager.send_action({"Action": "QueueStatus", "Queue": QUEUE})
            async with asyncio.timeout(3):
                channels = await manager.send_action({"Action": "CoreShowChannels"})
            status = status if isinstance(status, list) else [status]
            channels = channels if isinstance(channels, list) else [channels]
            point["waiting"] = sum(m.event == "QueueEntry" for m in status)
            point["agents_busy"] = sum(
                m.event == "QueueMember" and m.get("InCall") == "1" for m in status
            )
            point["bot_sessions"] = sum(
                m.event == "CoreShowChannel" and m.get("Application") == "AudioSocket"
                for m in channels
            )
        except Exception:  # Asterisk restarting, connection cut: the point has no AMI figures
            if manager is not None:
                manager.close()
            manager = None
        for name, pids in components(run).items():
            cpu, rss = cpu_rss(pids)
            point[f"cpu_{name}"] = cpu
            run.rss_max[name] = max(run.rss_max[name], rss)
        run.timeline.append(point)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SAMPLE_S):
                await stop.wait()
    if manager is not None:
        manager.close()


def components(run: Run) -> dict[str, list[int]]:
    info = run.pbx.status()
    live = [s.proc.pid for s in run.sipps if s.proc.returncode is None]
    return {
        "asterisk": [info.pid] if info else [],
        "postgresql": [p] if (p := run.pg.pid()) else [],
        "service": [run.service.pid] if run.service and run.service.returncode is None else [],
        "sipp": live + ([run.uas.pid] if run.uas else []),
    }


# ---- faults ------------------------------------------------------------------------------------------------------
async def inject(run: Run) -> None:
    await asyncio.sleep(run.profile.fault_at_s)
    fault = run.profile.fault
    if fault == "bot_kill":
        run.note("fault: SIGKILL the service process (bot and controller)")
        assert run.service is not None
        run.service.send_signal(signal.SIGKILL)
        await run.service.wait()
        await start_service(run)
    elif fault == "ami_cut":
        run.note(
            f"fault: AMI TCP connections killed (ss -K): {await asyncio.to_thread(cut_ami, run.info)}"
        )
        await asyncio.sleep(20)
        run.note("fault: Asterisk restarted")
        run.info = await asyncio.to_thread(run.pbx.restart)
        run.note(
            f"agents back in the queue by themselves ({', '.join(sorted(await agents_reachable(run)))})"
        )
    elif fault == "pg_stop":
        run.note(f"fault: PostgreSQL stopped for {PG_DOWN_S:.0f} s")
        await asyncio.to_thread(run.pg.pause)
        await asyncio.sleep(PG_DOWN_S)
        await asyncio.to_thread(run.pg.resume)
        run.note("PostgreSQL back")


def cut_ami(info: PbxInfo) -> str:
    """Kill every TCP connection to Asterisk's AMI port (``ss -K``, the kernel's SOCK_DESTROY: the controller's
    end fails with ECONNABORTED, Asterisk's gets a reset); which ones (our local ends). Only TCP (``-t``): asked
    for every socket family, ss reports "RTNETLINK answers: Invalid argument" for those that cannot be killed."""
    done = subprocess.run(
        ["ss", "-K", "-t", "dst", info.ami_host, "dport", "=", f":{info.ami_port}"],
        capture_output=True,
        text=True,
        check=False,
    )
    killed = [line.split()[3] for line in done.stdout.splitlines()[1:] if line.strip()]
    if not killed:
        raise SystemExit(f"ss -K killed no AMI connection: {done.stdout} {done.stderr}")
    return ", ".join(killed)


# ---- figures -----------------------------------------------------------------------------------------------------
def _p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def bot_figures(trace_path: Path) -> dict[str, Any]:
    """Turn latencies (end of the caller's speech → the bot's next reply) and the outcomes the bot reported."""
    turns, answers, outcomes = [], [], []
    pending: dict[str, float] = {}
    lines = trace_path.read_text().splitlines() if trace_path.is_file() else []
    for line in lines:
        rec = json.loads(line)
        if "outcome" in rec:
            outcomes.append(rec)
        elif rec["mark"] == "final" and rec.get("speech_end"):
            pending[rec["call"]] = rec["speech_end"]
        elif rec["mark"] in REPLY_MARKS and rec["call"] in pending:
            latency = rec["at"] - pending.pop(rec["call"])
            turns.append(latency)
            if rec["mark"] == "answer":
                answers.append(latency)
    p95, answer_p95 = _p95(turns), _p95(answers)
    return {
        "bot_turns": len(turns),
        "bot_turn_latency_p95_ms": round(p95 * 1000) if p95 is not None else None,
        "bot_answer_latency_p95_ms": round(answer_p95 * 1000) if answer_p95 is not None else None,
        "bot_outcomes": dict(Counter(f"{o['outcome']}/{o['reason']}" for o in outcomes)),
        "bot_tickets_read_back": sorted({o["ticket"] for o in outcomes if o.get("ticket")}),
    }


async def call_figures(run: Run, since: datetime) -> dict[str, Any]:
    """Service levels of the run's inbound calls (ivr.service_levels), the calls without an outcome, tickets."""
    engine = make_engine(run.pg.server.url())
    try:
        async with asyncio.timeout(
            120
        ):  # the controller writes a call after its hang-up; the spool drains
            while True:
                async with make_sessionmaker(engine)() as session:
                    rows = list(
                        (
                            await session.scalars(
                                select(CallRecord).where(
                                    CallRecord.started_at >= since,
                                    CallRecord.dialled_number == "12345",
                                )
                            )
                        ).all()
                    )
                if all(r.ended_at is not None for r in rows):
                    break
                await asyncio.sleep(2)
    except TimeoutError:
        pass
    try:
        async with make_sessionmaker(engine)() as session:
            rows = list(
                (
                    await session.scalars(
                        select(CallRecord).where(
                            CallRecord.started_at >= since,
                            CallRecord.outcome.is_distinct_from("callback"),
                        )
                    )
                ).all()
            )
            tickets = list(
                (
                    await session.execute(
                        select(Ticket.ticket_no, Ticket.call_id, Ticket.caller_phone).where(
                            Ticket.created_at >= since
                        )
                    )
                ).all()
            )
            levels = await service_levels(session, since, datetime.now(UTC), settings=run.settings)
            duplicate_calls = (
                await session.execute(
                    select(func.count()).select_from(
                        select(Ticket.call_id)
                        .where(Ticket.created_at >= since, Ticket.call_id.is_not(None))
                        .group_by(Ticket.call_id)
                        .having(func.count() > 1)
                        .subquery()
                    )
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    done = [r for r in rows if r.ended_at is not None and r.outcome is not None]
    ticket_phones = {t.caller_phone for t in tickets}
    unsettled = [r for r in rows if r.ended_at is None or r.outcome is None]
    abandoned_lost = [
        r
        for r in done
        if r.outcome == "abandoned"
        and r.missed_call_id is None
        and r.caller_number not in ticket_phones
    ]
    sipp = [sipp_counts(s) for s in run.sipps]
    placed = sum(c["created"] for c in sipp)
    missing = max(0, placed - len(rows))
    per_minute = rate_per_minute(done, since, run.settings.calllog.service_level_s)
    return {
        "levels": levels["total"],
        "rows": len(rows),
        "unsettled": len(unsettled),
        "abandoned_without_task": len(abandoned_lost),
        "missing_from_log": missing,
        "sipp_placed": placed,
        "sipp_successful": sum(c["successful"] for c in sipp),
        "sipp_failed": sum(c["failed"] for c in sipp),
        "calls_without_outcome": len(unsettled) + len(abandoned_lost) + missing,
        "tickets": [t.ticket_no for t in tickets],
        "duplicate_ticket_calls": duplicate_calls,
        "closed_by_resync": sum(r.closed_by_resync for r in rows),
        "rate_per_minute": per_minute,
    }


def rate_per_minute(
    rows: list[CallRecord], since: datetime, level_s: float
) -> list[dict[str, Any]]:
    """The 15-s rate of the calls started in each minute of the run."""
    bins: dict[int, list[CallRecord]] = {}
    for r in rows:
        bins.setdefault(int((r.started_at - since).total_seconds() // 60), []).append(r)
    out = []
    for minute in sorted(bins):
        facts = [facts_of(r) for r in bins[minute]]
        ok = sum(f.outcome in ("agent", "leader", "bot") and f.wait_s <= level_s for f in facts)
        out.append(
            {"minute": minute, "offered": len(facts), "answer_rate_15s": round(ok / len(facts), 4)}
        )
    return out


def cpu_seconds(timeline: list[dict[str, Any]], name: str) -> float:
    """CPU seconds of a component over the run: the sum of the increases between samples (a restarted process
    starts again from 0)."""
    values = [p.get(f"cpu_{name}", 0.0) for p in timeline]
    return sum(max(0.0, b - a) for a, b in pairwise(values))


def summary(run: Run, calls: dict[str, Any], bot: dict[str, Any], wall_s: float) -> dict[str, Any]:
    levels = calls["levels"]
    read_back = set(bot["bot_tickets_read_back"])
    lost = sorted(read_back - set(calls["tickets"]))
    return {
        "profile": asdict(run.profile)
        | {
            "capacity_calls_per_min": round(run.profile.capacity_per_min, 2),
            "phases": run.profile.phases(),
        },
        "calls": levels.get("offered"),
        "answer_rate_15s": levels.get("service_level_rate"),
        "connection_rate": levels.get("connection_rate"),
        "abandoned": levels.get("abandoned"),
        "calls_without_outcome": calls["calls_without_outcome"],
        "bot_containment": levels.get("bot_containment_rate"),
        "bot_turn_latency_p95_ms": bot["bot_turn_latency_p95_ms"],
        "bot_answer_latency_p95_ms": bot["bot_answer_latency_p95_ms"],
        "bot_turns": bot["bot_turns"],
        "tickets_created": len(calls["tickets"]),
        "lost_tickets": len(lost),
        "lost_ticket_numbers": lost,
        "duplicate_tickets": calls["duplicate_ticket_calls"],
        "service_levels": levels,
        "without_outcome": {
            k: calls[k] for k in ("unsettled", "abandoned_without_task", "missing_from_log")
        },
        "sipp": {k: calls[k] for k in ("sipp_placed", "sipp_successful", "sipp_failed")},
        "call_log_rows": calls["rows"],
        "closed_by_resync": calls["closed_by_resync"],
        "bot_outcomes": bot["bot_outcomes"],
        "resources": {
            name: {
                "cpu_percent_of_one_core": round(100 * cpu_seconds(run.timeline, name) / wall_s, 1)
                if wall_s
                else None,
                "rss_max_mb": round(run.rss_max[name] / 2**20, 1),
            }
            for name in ("asterisk", "postgresql", "service", "sipp")
        },
        "duration_s": round(wall_s),
        "events": run.events,
        "timeline": [
            {k: v for k, v in p.items() if not k.startswith("cpu_")} for p in run.timeline
        ],
        "rate_per_minute": calls["rate_per_minute"],
    }


# ---- one run -----------------------------------------------------------------------------------------------------
async def one_run(
    settings: Settings, profile: Profile, label: str, seed: int = 12345
) -> dict[str, Any]:
    if shutil.which("sipp") is None:
        raise SystemExit("bench.peak needs sipp (Debian package sip-tester; make system)")
    pbx = LocalPbx(settings, _abs(settings.pbx.cache_dir))
    was_running = pbx.status() is not None
    info = await asyncio.to_thread(pbx.start)
    pg = await asyncio.to_thread(Postgres)
    workdir = ROOT / "var" / "bench-peak" / label
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    if (
        not info.carrier_password
    ):  # started before the carrier trunk existed: the same credentials, with it
        info = await asyncio.to_thread(pbx.restart)
    names = sorted(info.agents)
    if profile.agents > len(names):
        raise SystemExit(f"--agents {profile.agents}: the PBX has {len(names)} softphone accounts")
    agents = {ext: info.agents[ext] for ext in names[: profile.agents]}
    run = Run(
        profile,
        settings,
        pbx,
        info,
        pg,
        workdir,
        prepare_media(settings, ROOT / "var" / "bench-peak" / "media"),
        agents,
    )
    try:
        await prepare_database(pg.server.url(), settings)
        await reset_queue(info)
        info.clear_messages()
        await start_service(run)
        await agents_log_in(run)
        since = datetime.now(UTC)
        run.started = time.monotonic()
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample(run, stop))
        fault = asyncio.create_task(inject(run)) if profile.fault else None
        await place_calls(run, random.Random(seed))
        if fault:
            await fault
        async with asyncio.timeout(profile.rounds * profile.round_s + 300):
            await asyncio.gather(*(s.proc.wait() for s in run.sipps))
        run.note("every caller has hung up")
        wall_s = time.monotonic() - run.started
        stop.set()
        await sampler
        calls = await call_figures(run, since)
        result = summary(run, calls, bot_figures(workdir / "trace.jsonl"), wall_s)
        (workdir / "result.json").write_text(
            json.dumps(result, ensure_ascii=False, indent=2) + "\n"
        )
    finally:
        await stop_service(run)
        for proc in [s.proc for s in run.sipps] + ([run.uas] if run.uas else []):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        with contextlib.suppress(Exception):
            await reset_queue(pbx.status() or info)
        await asyncio.to_thread(pg.server.stop)
        if not was_running:
            await asyncio.to_thread(pbx.stop)
    return result


def _abs(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else ROOT / p


async def prepare_database(url: str, settings: Settings) -> None:
    from hotline.commands.run import prepare_data
    from hotline.migrate import upgrade_engine

    engine = make_engine(url)
    try:
        await upgrade_engine(engine)
        await prepare_data(
            settings.model_copy(
                update={"database": settings.database.model_copy(update={"url": url})}
            ),
            make_sessionmaker(engine),
        )
    finally:
        await engine.dispose()


# ---- report ------------------------------------------------------------------------------------------------------
FIELDS = (
    "calls",
    "answer_rate_15s",
    "connection_rate",
    "abandoned",
    "calls_without_outcome",
    "bot_containment",
    "bot_turn_latency_p95_ms",
    "tickets_created",
    "lost_tickets",
    "duplicate_tickets",
)


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {"main": result.get("main")} | result.get("faults", {})
    runs = {k: v for k, v in runs.items() if v}
    fig, axes = plt.subplots(len(runs), 1, figsize=(10, 3.2 * len(runs)), squeeze=False)
    for ax, (name, run) in zip(axes[:, 0], runs.items(), strict=True):
        pts = [p for p in run["timeline"] if "waiting" in p]
        t = [p["t_s"] / 60 for p in pts]
        for key, label in (
            ("waiting", "waiting callers"),
            ("agents_busy", "agents busy"),
            ("bot_sessions", "bot sessions"),
        ):
            ax.plot(t, [p[key] for p in pts], label=label)
        ax.set_xlabel("minutes")
        ax.set_title(name)
        rate = ax.twinx()
        per_min = (
            run["rate_per_minute"] + run["rate_per_minute"][-1:]
        )  # the last minute drawn to its end
        rate.step(
            [m["minute"] for m in per_min[:-1]] + [m["minute"] + 1 for m in per_min[-1:]],
            [100 * m["answer_rate_15s"] for m in per_min],
            "k--",
            where="post",
            label="15-s rate % (per min)",
        )
        rate.set_ylim(0, 105)
        for ev in run["events"]:
            if ev["event"].startswith("fault"):
                ax.axvline(ev["t_s"] / 60, color="red", alpha=0.4)
        lines = ax.get_legend_handles_labels()[0] + rate.get_legend_handles_labels()[0]
        ax.legend(lines, [ln.get_label() for ln in lines], loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def markdown(result: dict[str, Any]) -> str:
    runs = {"main": result.get("main")} | result.get("faults", {})
    runs = {k: v for k, v in runs.items() if v}
    lines = [
        "# The peak, with faults (bench/peak.py)",
        "",
        f"Machine: {result['machine']}; run {result['date']}.",
        "",
        "| run | " + " | ".join(FIELDS) + " | minutes (normal/peak/recovery) |",
        "|---" * (len(FIELDS) + 2) + "|",
    ]
    for name, run in runs.items():
        p = run["profile"]
        lines.append(
            f"| {name} | "
            + " | ".join(str(run.get(k)) for k in FIELDS)
            + f" | {p['normal_minutes']}/{p['peak_minutes']}/{p['recovery_minutes']} |"
        )
    lines += [
        "",
        "| run | CPU % of one core (asterisk / postgresql / service / sipp) | max RSS MB |",
        "|---|---|---|",
    ]
    for name, run in runs.items():
        res = run["resources"]
        lines.append(
            f"| {name} | "
            + " / ".join(str(res[c]["cpu_percent_of_one_core"]) for c in res)
            + " | "
            + " / ".join(str(res[c]["rss_max_mb"]) for c in res)
            + " |"
        )
    main = next(iter(runs.values()))["profile"]
    lines += [
        "",
        f"Agents {main['agents']}, talk {60 * main['talk_scale']:.0f}–{180 * main['talk_scale']:.0f} s "
        f"(60–180 s × {main['talk_scale']}) + 10 s wrap-up; capacity {main['capacity_calls_per_min']} "
        "calls/min; peak 3×. Fault runs use their own (shorter) profile, in the table. Chart: peak.png.",
        "Targets: calls_without_outcome 0, lost/duplicate tickets 0, answer_rate_15s ≥ 0.95, bot turn p95 ≤ "
        "1000 ms.",
        "",
    ]
    return "\n".join(lines)


def machine() -> str:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "?",
    )
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    return f"{os.cpu_count()} cores ({cpu}), {mem} MB"


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.peak", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="minutes at 3× capacity (main run)")
    p.add_argument("--normal-minutes", type=float, default=3.0)
    p.add_argument("--recovery-minutes", type=float, default=3.0)
    p.add_argument("--agents", type=int, default=4)
    p.add_argument("--talk-scale", type=float, default=0.25, help="talk time = 60–180 s × this")
    p.add_argument(
        "--rounds",
        type=int,
        default=8,
        help="a patient caller gives up after this many rounds (an utterance, then the pause)",
    )
    p.add_argument(
        "--max-wait",
        type=float,
        default=8.0,
        help="estimated wait (s) that sends a caller to the bot",
    )
    p.add_argument(
        "--pause",
        type=float,
        default=Profile.pause_s,
        help="seconds a caller waits after each utterance before speaking again",
    )
    p.add_argument(
        "--faults",
        default=",".join(FAULTS),
        help=f"comma-separated, of {', '.join(FAULTS)}; '' none",
    )
    p.add_argument("--fault-minutes", type=float, default=4.0, help="peak minutes of a fault run")
    p.add_argument(
        "--fault-margin-minutes", type=float, default=1.0, help="normal and recovery of a fault run"
    )
    p.add_argument("--no-main", action="store_true", help="fault runs only")
    p.add_argument(
        "--output", type=Path, default=RESULTS, help="folder of peak.json, peak.md, peak.png"
    )
    return p.parse_args(argv)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    settings = load_settings()
    base = Profile(
        args.normal_minutes,
        args.minutes,
        args.recovery_minutes,
        args.agents,
        args.talk_scale,
        args.rounds,
        args.max_wait,
        pause_s=args.pause,
    )
    result: dict[str, Any] = {
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "faults": {},
    }
    if not args.no_main:
        result["main"] = await one_run(settings, base, "main")
    for fault in [f for f in args.faults.split(",") if f]:
        if fault not in FAULTS:
            raise SystemExit(f"unknown fault {fault} (of {', '.join(FAULTS)})")
        m = args.fault_margin_minutes
        profile = Profile(
            m,
            args.fault_minutes,
            m,
            args.agents,
            args.talk_scale,
            args.rounds,
            args.max_wait,
            fault,
            args.pause,
        )
        result["faults"][fault] = await one_run(settings, profile, fault)
    return result


def write(result: dict[str, Any], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "peak.json").write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    (folder / "peak.md").write_text(markdown(result))
    chart(result, folder / "peak.png")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        p = argparse.ArgumentParser(prog="python -m bench.peak serve")
        p.add_argument("--trace", type=Path, required=True)
        a = p.parse_args(argv[1:])
        return serve(a.trace)
    args = parse(argv)
    result = asyncio.run(bench(args))
    write(result, args.output)
    print((args.output / "peak.md").read_text())
    runs = [result.get("main"), *result["faults"].values()]
    return (
        0
        if all(
            r["calls_without_outcome"] == 0
            and r["lost_tickets"] == 0
            and r["duplicate_tickets"] == 0
            for r in runs
            if r
        )
        else 1
    )


if __name__ == "__main__":
    raise SystemExit(main())
