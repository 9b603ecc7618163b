"""AMI controller benchmark: a real busy-hour event stream, replayed at full speed.

    python -m bench.ami [--record] [--calls 60] [--rounds 20]

1. Record (``--record``, or when bench/data/ami-busy.ami is missing): the local Asterisk (``hotline pbx
   start``), the controller with two emulated agents (``Local/69xx@test-agent/n``, busy a few seconds, then in
   wrap-up) and ``--calls`` emulated callers originated at once; the callers the agents cannot take are
   redirected to hotline-bot (no bot listens: AudioSocket fails, they are queued again and finally apologised
   to). Every byte the controller's AMI connection receives is saved (the protocol's ``tap``), and the overflow
   decision latency is measured live: QueueCallerJoin handled → Redirect sent.
2. Replay: the saved bytes, ``--rounds`` times with the channel ids renamed per round (so each round is new
   calls, not duplicates the state ignores), fed in 4 KiB reads through the controller's own protocol
   (HardenedAmiProtocol → parse_event → HotlineState → listeners) with its overflow ticker running, against an
   in-memory transport that answers every action with Success and notes when each Redirect is written. The
   call-log writer is not started (database writes are outside this path; the leader reconciler still reads
   SQLite). Measured: events/s. The decision latency is measured on one more replay paced by the events'
   ``Timestamp`` headers at 5× the recorded speed (at full speed hundreds of callers would join within
   milliseconds, and the policy redirects one caller per evaluation). "Decided on joining" counts redirects
   made by the first evaluation after the caller joined (the decision's own latency, the target); "all"
   includes callers redirected later, when the policy changed its mind (an agent turned busy).
3. Baseline in the same run: panoramisk's own ``AMIProtocol.data_received`` + ``Message.from_line`` +
   ``handle_message`` on the same reads with a no-op dispatch — the bare parsing loop; the ratio of the two.

Targets: ≥ 20,000 events/s through the controller; decision latency p99 ≤ 20 ms.
Results go to bench/results/ami.json and ami.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import platform
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any

from panoramisk.ami_protocol import AMIProtocol

from config import Settings, load_settings
from config.settings import PeakWindow
from hotline.db import create_schema, make_engine, make_sessionmaker
from ivr import events as ev
from ivr.ami import FRAME_END, AmiClient, HardenedAmiProtocol
from ivr.controller import HotlineController

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "ami-busy.ami"
RESULTS = HERE / "results"
READ_SIZE = 4096
TARGET_EVENTS_PER_S = 20_000
TARGET_P99_MS = 20.0
SPEEDUP = 5.0  # the latency replay runs the recorded busy period 5× faster than it happened
AGENTS = ("Local/6901@test-agent/n", "Local/6902@test-agent/n")
ALWAYS = PeakWindow(weekdays=[1, 2, 3, 4, 5, 6, 7], start=dtime(0, 0), end=dtime(23, 59, 59))
# Channel ids in the stream: Asterisk's numeric Uniqueids/Linkedids and our Originate ChannelIds.
_STAMP = re.compile(rb"\r\nTimestamp: ([0-9.]+)")
_IDS = re.compile(rb"(?<![\w.])(\d{10}\.\d+|bench-\d+-\d+)(?=;|\r|$)", re.M)


def bench_settings(settings: Settings, host: str = "127.0.0.1", port: int = 1) -> Settings:
    """Overflow always in a peak window, a 1 s wait limit: busy agents send callers to the bot at once."""
    return settings.model_copy(
        update={
            "ami": settings.ami.model_copy(update={"host": host, "port": port}),
            "overflow": settings.overflow.model_copy(
                update={
                    "peak_windows": [ALWAYS],
                    "tick_s": 1.0,
                    "off_hours_to_bot": False,
                    "max_estimated_wait_s": 1.0,
                    "default_talk_time_s": 120.0,
                    "enabled": True,
                }
            ),
        }
    )


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class DecisionClock:
    """QueueCallerJoin handled → Redirect sent, per caller channel (perf_counter seconds).

    ``first`` holds the redirects decided by the first overflow evaluation after the caller joined (the
    decision's own latency); the others waited in the queue until the policy said so (agents turned busy,
    or callers ahead were redirected first, one per evaluation)."""

    def __init__(self, evaluations: Callable[[], int]) -> None:
        self.evaluations = evaluations
        self.joined: dict[str, tuple[float, int]] = {}
        self.all_ms: list[float] = []
        self.first_ms: list[float] = []

    def on_event(self, event: ev.DomainEvent) -> None:
        if isinstance(event, ev.CallerJoined) and event.chan.uniqueid == event.chan.linkedid:
            self.joined.setdefault(event.chan.channel, (time.perf_counter(), self.evaluations()))

    def redirected(self, channel: str) -> None:
        start = self.joined.pop(channel, None)
        if start is not None:
            ms = (time.perf_counter() - start[0]) * 1000
            self.all_ms.append(ms)
            if self.evaluations() <= start[1] + 1:
                self.first_ms.append(ms)

    def summary(self) -> dict[str, Any]:
        def stats(lat: list[float]) -> dict[str, Any]:
            return {
                "redirects": len(lat),
                "p50_ms": _r(percentile(lat, 50)),
                "p99_ms": _r(percentile(lat, 99)),
                "max_ms": _r(max(lat) if lat else None),
            }

        return {"first_evaluation": stats(self.first_ms), "all": stats(self.all_ms)}


def _r(x: float | None, nd: int = 2) -> float | None:
    return None if x is None else round(x, nd)


# -- 1. recording against the real Asterisk ---------------------------------------------------------------------
async def record(settings: Settings, calls: int, pace_s: float) -> dict[str, Any]:
    from ivr.pbx import LocalPbx

    info = await asyncio.to_thread(LocalPbx(settings).start)
    engine = make_engine("sqlite+aiosqlite:///:memory:")
    await create_schema(engine)
    creds = (info.ami_username, info.ami_secret)
    ctrl = HotlineController(
        bench_settings(settings, info.ami_host, info.ami_port),
        make_sessionmaker(engine),
        AmiClient(host=info.ami_host, port=info.ami_port, username=creds[0], secret=creds[1]),
        is_working_day=lambda _d: True,
    )
    received = bytearray()
    ctrl.ami.tap = received.extend
    clock = DecisionClock(lambda: ctrl.evaluations)
    ctrl.subscribe()  # the AMI client's events to the controller (hotline.wiring.subscribe does this first)
    ctrl.add_listener(clock.on_event)
    send = ctrl.ami.action

    async def timed_action(action: Any, **kw: Any) -> Any:
        if action.get("Action") == "Redirect":
            clock.redirected(str(action["Channel"]))
        return await send(action, **kw)

    ctrl.ami.action = timed_action  # type: ignore[method-assign]
    caller_side = AmiClient(
        host=info.ami_host, port=info.ami_port, username=creds[0], secret=creds[1]
    )
    ended: set[str] = set()
    all_ended = asyncio.Event()
    ids = [f"bench-{int(time.time())}-{n}" for n in range(calls)]

    def on_hangup(message: Any) -> None:
        if message.get("Uniqueid") in ids:
            ended.add(str(message.get("Uniqueid")))
            if len(ended) == len(ids):
                all_ended.set()

    caller_side.on_event("Hangup", on_hangup)
    await ctrl.start()
    caller_side.start()
    started = time.perf_counter()
    try:
        async with asyncio.timeout(20):
            await asyncio.gather(ctrl.ami.connected.wait(), caller_side.connected.wait())
        for n, agent in enumerate(AGENTS):
            await ctrl.add_agent(agent, f"压测坐席{n + 1}")
        for uniqueid in ids:
            await asyncio.sleep(pace_s)
            await caller_side.action(
                {
                    "Action": "Originate",
                    "Channel": "Local/s@test-caller/n",
                    "Context": "hotline-inbound",
                    "Exten": "12345",
                    "Priority": 1,
                    "Async": "true",
                    "CallerID": "13800138000",
                    "ChannelId": uniqueid,
                    "Variable": ["TEST_WAIT=12", "TEST_DTMF=0", "__TEST_AGENT_WAIT=2"],
                }
            )
        async with asyncio.timeout(180):
            await all_ended.wait()
    finally:
        for agent in AGENTS:
            with contextlib.suppress(Exception):
                await ctrl.remove_agent(agent)
        elapsed = time.perf_counter() - started
        await caller_side.stop()
        await ctrl.ami.stop()
        for task in ctrl._tasks:  # the call-log writer's backlog is of no interest here
            task.cancel()
        await asyncio.gather(*ctrl._tasks, return_exceptions=True)
        await engine.dispose()
    DATA.parent.mkdir(parents=True, exist_ok=True)
    DATA.write_bytes(bytes(received))
    return {
        "calls": calls,
        "pace_s": pace_s,
        "agents": len(AGENTS),
        "seconds": round(elapsed, 1),
        "bytes": len(received),
        "events": ctrl.ami.stats.events,
        "latency": clock.summary(),
        "asterisk": _asterisk_version(bytes(received)),
    }


def _asterisk_version(stream: bytes) -> str:
    first = stream.split(b"\r\n", 1)[0].decode(errors="replace")
    return first.replace("Asterisk Call Manager/", "AMI ")


# -- 2. replay through the controller -----------------------------------------------------------------------------
def rounds_of(stream: bytes, rounds: int) -> list[bytes]:
    """The stream ``rounds`` times, channel ids suffixed per round, as reads of whole frames up to READ_SIZE
    bytes (the in-memory Asterisk answers actions between two reads, never inside a frame)."""
    body = stream.split(b"\r\n", 1)[1] if stream.startswith(b"Asterisk Call Manager/") else stream
    out: list[bytes] = []
    for r in range(rounds):
        suffix = b"r%d" % r
        renamed = _IDS.sub(lambda m: m.group(1) + suffix, body)  # noqa: B023 - used at once
        read = bytearray()
        for frame in renamed.split(FRAME_END):
            if not frame:
                continue
            if read and len(read) + len(frame) > READ_SIZE:
                out.append(bytes(read))
                read.clear()
            read += frame + FRAME_END
        if read:
            out.append(bytes(read))
    return out


class AnsweringTransport(asyncio.Transport):
    """The Asterisk end of an in-memory AMI connection: every action gets ``Response: Success``; Redirects are
    timed by ``on_redirect``."""

    def __init__(self, protocol: HardenedAmiProtocol, on_redirect: Callable[[str], None]) -> None:
        super().__init__()
        self.protocol, self.on_redirect = protocol, on_redirect
        self.actions = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        text = bytes(data).decode()
        headers = dict(line.split(": ", 1) for line in text.split("\r\n") if ": " in line)
        self.actions += 1
        if headers.get("Action") == "Redirect":
            self.on_redirect(headers["Channel"])
        reply = f"Response: Success\r\nActionID: {headers['ActionID']}\r\nMessage: Success\r\n\r\n".encode()
        asyncio.get_running_loop().call_soon(self.protocol.data_received, reply)

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


def paced_reads(stream: bytes, speedup: float) -> list[tuple[float, bytes]]:
    """One round of the stream as (seconds from its start, read): frames grouped by their ``Timestamp``
    (within 5 ms of each other = one read; responses without one go with the frame before), times divided by
    ``speedup``."""
    out: list[tuple[float, bytearray]] = []
    first = last = None
    for frame in b"".join(rounds_of(stream, 1)).split(FRAME_END):
        if not frame:
            continue
        stamp = _STAMP.search(frame)
        last = float(stamp.group(1)) if stamp else last
        first = last if first is None else first
        offset = 0.0 if last is None or first is None else (last - first) / speedup
        if out and offset - out[-1][0] < 0.005 / speedup:
            out[-1][1].extend(frame + FRAME_END)
        else:
            out.append((offset, bytearray(frame + FRAME_END)))
    return [(t, bytes(b)) for t, b in out]


async def replay(
    settings: Settings, reads: list[bytes], schedule: list[float] | None = None
) -> dict[str, Any]:
    """The controller on the reads; at full speed, or each read at its ``schedule`` time (seconds)."""
    engine = make_engine("sqlite+aiosqlite:///:memory:")
    await create_schema(engine)
    client = AmiClient(host="127.0.0.1", port=1, username="bench", secret="bench")
    ctrl = HotlineController(
        bench_settings(settings), make_sessionmaker(engine), client, is_working_day=lambda _d: True
    )
    clock = DecisionClock(lambda: ctrl.evaluations)
    ctrl.subscribe()  # the AMI client's events to the controller (hotline.wiring.subscribe does this first)
    ctrl.add_listener(clock.on_event)
    protocol = HardenedAmiProtocol(client.stats, client.max_frame_bytes)
    transport = AnsweringTransport(protocol, clock.redirected)
    protocol.connection_made(transport)
    protocol.factory, protocol.encoding = client._manager, "utf-8"
    protocol.wanted = client._wanted()  # as AmiClient._open sets it on a real connection
    client._manager.protocol = protocol
    client._protocol = protocol
    client.connected.set()
    await ctrl._reconcile_leaders()  # warm: the first ORM query compiles its SQL
    # the ticker (overflow) and the leader reconciler of HotlineController.start(), not its call-log writer
    tasks = [asyncio.create_task(ctrl._ticker()), asyncio.create_task(ctrl._leader_loop())]
    gc.collect()
    started = time.perf_counter()
    for n, chunk in enumerate(reads):
        if schedule is not None:
            await asyncio.sleep(max(0.0, started + schedule[n] - time.perf_counter()))
        protocol.data_received(chunk)
        await asyncio.sleep(0)  # a socket read at a time: the ticker and the answers run in between
    elapsed = time.perf_counter() - started
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await engine.dispose()
    events = client.stats.events
    return {
        "events": events,
        "seconds": round(elapsed, 3),
        "events_per_s": round(events / elapsed),
        "frames": client.stats.frames,
        "malformed": client.stats.malformed_frames,
        "unwanted_events": client.stats.unwanted_events,
        "decisions": len(ctrl.decisions),
        "actions_sent": transport.actions,
        "latency": clock.summary(),
    }


# -- 3. panoramisk's bare parsing loop ------------------------------------------------------------------------------
class _NoDispatch:
    """A panoramisk factory that drops every event (only parsing is measured)."""

    events = 0

    def dispatch(self, _message: Any) -> None:
        self.events += 1


def bare_panoramisk(reads: list[bytes]) -> dict[str, Any]:
    protocol = AMIProtocol()
    protocol.connection_made(asyncio.Transport())
    factory = _NoDispatch()
    protocol.factory, protocol.encoding = factory, "utf-8"
    protocol.version = "bench"  # skip the banner check
    gc.collect()
    started = time.perf_counter()
    for chunk in reads:
        protocol.data_received(chunk)
    elapsed = time.perf_counter() - started
    return {
        "events": factory.events,
        "seconds": round(elapsed, 3),
        "events_per_s": round(factory.events / elapsed),
    }


# -- report --------------------------------------------------------------------------------------------------------
def write_results(result: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ami.json").write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    c, b, live = result["replay"], result["panoramisk"], result.get("live") or {}
    lines = [
        "# AMI controller benchmark",
        "",
        f"{result['at']} · {result['machine']} · Python {result['python']} · stream {result['stream']}",
        "",
        "| measure | controller | panoramisk bare parse | ratio | target |",
        "|---|---|---|---|---|",
        f"| events/s (replay, {c['events']:,} events) | {c['events_per_s']:,} | {b['events_per_s']:,} | "
        f"{result['ratio']:.2f} | ≥ {TARGET_EVENTS_PER_S:,} |",
        "",
        "| overflow decision latency (QueueCallerJoin → Redirect sent) | redirects | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|",
    ]
    runs = [(f"replay paced at {SPEEDUP:g}× the recorded speed", result["paced_replay"]["latency"])]
    if live.get("latency"):
        runs.append(
            (
                f"real Asterisk, {live['calls']} calls every {live.get('pace_s', '?')} s, {live['agents']} agents",
                live["latency"],
            )
        )
    for name, lat in runs:
        for part, label in (("first_evaluation", "decided on joining"), ("all", "all redirects")):
            x = lat[part]
            lines.append(
                f"| {name}: {label} | {x['redirects']} | {x['p50_ms']} | {x['p99_ms']} | {x['max_ms']} |"
            )
    lines += [
        "",
        f"Targets met: events/s {'yes' if result['met']['events_per_s'] else 'NO'}, "
        f"decision latency p99 {'yes' if result['met']['latency_p99'] else 'NO'} "
        f"(≤ {TARGET_P99_MS} ms, redirects decided on joining).",
        "",
        "How: see the docstring of bench/ami.py. " + result.get("note", ""),
        "",
    ]
    (RESULTS / "ami.md").write_text("\n".join(lines))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = load_settings()
    live = (
        await record(settings, args.calls, args.pace) if args.record or not DATA.is_file() else None
    )
    stream = DATA.read_bytes()
    reads = rounds_of(stream, args.rounds)
    bare = bare_panoramisk(reads)
    controller = await replay(settings, reads)
    paced = paced_reads(stream, SPEEDUP)
    latency = await replay(settings, [r for _t, r in paced], [t for t, _r in paced])
    p99s = [
        lat["first_evaluation"]["p99_ms"]
        for lat in (latency["latency"], (live or {}).get("latency"))
        if lat and lat["first_evaluation"]["p99_ms"] is not None
    ]
    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}",
        "python": platform.python_version(),
        "stream": f"{DATA.relative_to(HERE.parent)} ({len(stream):,} bytes)",
        "rounds": args.rounds,
        "read_size": READ_SIZE,
        "live": live,
        "replay": controller,
        "panoramisk": bare,
        "paced_replay": {"speedup": SPEEDUP, **latency},
        "ratio": round(controller["events_per_s"] / bare["events_per_s"], 3),
        "met": {
            "events_per_s": controller["events_per_s"] >= TARGET_EVENTS_PER_S,
            "latency_p99": bool(p99s) and max(p99s) <= TARGET_P99_MS,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ami", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--record", action="store_true", help="record a new stream from the local PBX first"
    )
    parser.add_argument("--calls", type=int, default=60, help="emulated callers when recording")
    parser.add_argument(
        "--pace", type=float, default=0.1, help="seconds between two callers when recording"
    )
    parser.add_argument("--rounds", type=int, default=20, help="times the stream is replayed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = asyncio.run(run(args))
    if result["live"] is None:
        previous = RESULTS / "ami.json"
        if previous.is_file():  # keep the live figures of the run that recorded the stream
            result["live"] = json.loads(previous.read_text()).get("live")
    write_results(result)
    print((RESULTS / "ami.md").read_text())
    return 0 if all(result["met"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
