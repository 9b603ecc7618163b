"""Scale bench on PostgreSQL: ticket intake and live-event fan-out with 1, 2 and 4 worker processes, and the
sizing model of a city centre built on its figures.

    python -m bench.scale [--workers 1,2,4] [--tickets 1200] [--events 4000] [--rate 200] [--seconds 5]
                          [--rounds 3]

Setup (not measured): a private PostgreSQL (hotline.local_postgres), a template database with the schema, the
catalogue's departments and ``--base-rows`` tickets of a past year (bench.tickets' loader), so that repeat
detection finds candidates as in production; each measured run gets a fresh copy of it.

Tickets: N spawned worker processes, each with its own engine and pool like a console worker, create the same
``--tickets`` in total through ``tickets.services.create_ticket`` (number, deadline, repeat detection, content
embedding, audit event), closed loop with ``IN_FLIGHT`` creations under way over all workers (so N changes the
processes, not the offered concurrency). Measured: tickets/s, latency, CPU per ticket in the workers and in the
server.

Fan-out: N spawned listener processes, each a started ``agent_console.hub_pg.PostgresHub`` with one local
subscriber of ``broadcast`` (a console worker with a browser), and the publisher's own PostgresHub in this
process (the controller publishing screen pops). First a burst of ``--events`` events published at once
(stored and notified, then read by every listener: events/s delivered to all); then ``--rate`` events/s for
``--seconds`` (end-to-end latency from ``publish`` to the subscriber's queue in another process, p50/p95). Every
listener checks that it got every event exactly once. Each N is measured ``--rounds`` times, interleaved
(1, 2, 4, 1, 2, 4, …), and the round with the median throughput is reported with every round's figure.

Ratios are to N = 1 measured in the same run. The clients, the listeners and PostgreSQL share the machine's
cores: on 2 cores the ceiling shows, and the CPU per ticket and per event, not the absolute rates, carry over to
bigger machines. Results go to bench/results/scale.json and scale.md, with the sizing model (:func:`sizing`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agent_console.hub_pg import PENDING_MAX, PostgresHub
from bench.tickets import AGENT, Generator, _drafts, _ms, _server_cpu, bulk_load
from config import load_settings
from hotline.db import create_schema, listen_connector, make_engine, make_sessionmaker
from hotline.local_postgres import LocalPostgres
from tickets.dispatch_catalogue import load_catalogue
from tickets.seed import seed_departments
from tickets.services import TicketDraft, create_ticket

RESULTS = Path(__file__).with_name("results")
IN_FLIGHT = 8  # ticket creations under way at once, over all worker processes
WARM_UP = 10  # creations per worker before the measured run (model load, pools, statement caches)
TOPIC = "broadcast"
RECEIVE_TIMEOUT_S = 60.0  # a listener that hears nothing for this long reports what it has
SYNC_TIMEOUT_S = (
    300.0  # a process that does not reach a meeting point (or report) in time fails the run
)
ServerCpu = Callable[[], float] | None


# -- ticket creation ------------------------------------------------------------------------------------------
async def _create_all(
    url: str, warm: list[dict[str, Any]], drafts: list[dict[str, Any]], in_flight: int, start: Any
) -> dict[str, Any]:
    """Create ``drafts`` with ``in_flight`` at once, after ``warm`` and ``start()`` (all workers together)."""
    settings = load_settings()
    engine = make_engine(url, pool_size=in_flight)
    sm = make_sessionmaker(engine)

    async def one(d: dict[str, Any]) -> None:
        async with sm() as session:
            await create_ticket(session, TicketDraft(**d), AGENT, settings=settings)

    for d in warm:
        await one(d)
    await asyncio.get_running_loop().run_in_executor(None, start)
    todo: Iterator[dict[str, Any]] = iter(drafts)
    latencies: list[float] = []
    errors: Counter[str] = Counter()

    async def lane() -> None:
        for d in todo:
            begun = time.perf_counter()
            try:
                await one(d)
            except Exception as exc:  # counted and reported
                errors[type(exc).__name__] += 1
                continue
            latencies.append(time.perf_counter() - begun)

    began, cpu0 = time.monotonic(), time.process_time()
    await asyncio.gather(*(lane() for _ in range(in_flight)))
    ended, cpu = time.monotonic(), time.process_time() - cpu0
    await engine.dispose()
    return {"began": began, "ended": ended, "cpu_s": cpu, "latencies": latencies, "errors": errors}


def _ticket_worker(
    url: str,
    warm: list[dict[str, Any]],
    drafts: list[dict[str, Any]],
    in_flight: int,
    barrier: Any,
    out: Any,
) -> None:
    """One worker process of a ticket run (spawned): its results go to ``out``."""
    out.put(asyncio.run(_create_all(url, warm, drafts, in_flight, barrier.wait)))


def _start(ctx: Any, target: Callable[..., None], args: list[tuple[Any, ...]]) -> list[Any]:
    procs = [ctx.Process(target=target, args=a) for a in args]
    for proc in procs:
        proc.start()
    return procs


async def _collect(out: Any, procs: list[Any]) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    parts = [await loop.run_in_executor(None, out.get, True, SYNC_TIMEOUT_S) for _ in procs]
    for proc in procs:
        proc.join()
    return parts


async def ticket_run(
    url: str, gen: Generator, workers: int, total: int, server_cpu: ServerCpu
) -> dict[str, Any]:
    """``total`` tickets created by ``workers`` processes together."""
    drafts = _drafts(gen, total, seed=1)  # the same tickets for every N
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(workers + 1, timeout=SYNC_TIMEOUT_S), ctx.Queue()
    in_flight = max(1, IN_FLIGHT // workers)
    procs = _start(
        ctx,
        _ticket_worker,
        [
            (url, _drafts(gen, WARM_UP, seed=100 + w), drafts[w::workers], in_flight, barrier, out)
            for w in range(workers)
        ],
    )
    await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
    server0 = server_cpu() if server_cpu else None
    parts = await _collect(out, procs)
    server_s = server_cpu() - server0 if server_cpu and server0 is not None else None
    elapsed = max(p["ended"] for p in parts) - min(p["began"] for p in parts)
    latencies = [x for p in parts for x in p["latencies"]]
    errors: Counter[str] = Counter()
    for p in parts:
        errors.update(p["errors"])
    client_s = sum(p["cpu_s"] for p in parts)
    created = len(latencies)
    return {
        "workers": workers,
        "in_flight_per_worker": in_flight,
        "tickets": created,
        "errors": dict(errors),
        "seconds": round(elapsed, 2),
        "tickets_per_s": round(created / elapsed, 1),
        "latency": _ms(latencies),
        "client_cpu_ms_per_ticket": round(client_s / created * 1000, 2),
        "server_cpu_ms_per_ticket": round(server_s / created * 1000, 2) if server_s else None,
        "busy_cores": round((client_s + (server_s or 0.0)) / elapsed, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
    }


# -- live-event fan-out ---------------------------------------------------------------------------------------
@dataclass
class Heard:
    """What one listener received in one phase."""

    seqs: list[int]
    latencies: list[float]
    last_at: float = 0.0
    complete: bool = False  # the phase's end marker arrived
    dropped: bool = False  # the hub ended the subscription


async def _hear(sub: Any, phase: str) -> Heard:
    """Receive ``phase``'s events until its end marker (or the subscription ends, or nothing comes)."""
    heard = Heard([], [])
    while True:
        try:
            async with asyncio.timeout(RECEIVE_TIMEOUT_S):
                event = await sub.next()
        except TimeoutError:
            return heard
        now = time.monotonic()
        if event is None:
            heard.dropped = True
            return heard
        data = event.data
        if data.get("end"):
            heard.complete = data["phase"] == phase
            return heard
        heard.seqs.append(data["seq"])
        heard.latencies.append(now - data["t"])
        heard.last_at = now


async def _started_hub(url: str, name: str, queue_size: int) -> tuple[PostgresHub, AsyncEngine]:
    """A process's hub on ``url``, listening (``name`` names its LISTEN connection), and its engine."""
    engine = make_engine(url, pool_size=2)
    connect = listen_connector(url, name)
    if connect is None:
        raise ValueError(f"the scale bench needs PostgreSQL, not {engine.url.get_backend_name()}")
    hub = PostgresHub(
        make_sessionmaker(engine), connect, lambda: datetime.now(UTC), queue_size=queue_size
    )
    await hub.start()
    await hub.listening.wait()
    return hub, engine


async def _listen_all(
    url: str, name: str, queue_size: int, phases: tuple[str, ...], sync: Any
) -> dict[str, Any]:
    """A console worker's hub with one subscriber; hears every phase, meeting the others at ``sync``."""
    hub, engine = await _started_hub(url, name, queue_size)
    sub = hub.subscribe()
    sub.topics.add(TOPIC)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sync)  # everyone is listening
    out: dict[str, Any] = {"name": name}
    for phase in phases:
        cpu0 = time.process_time()
        heard = await _hear(sub, phase)
        out[phase] = {**asdict(heard), "cpu_s": time.process_time() - cpu0}
        await loop.run_in_executor(None, sync)  # the phase is over everywhere
    await hub.close()
    await engine.dispose()
    return out


def _listener(
    url: str, name: str, queue_size: int, phases: tuple[str, ...], barrier: Any, out: Any
) -> None:
    """One listener process of a fan-out run (spawned): its results go to ``out``."""
    out.put(asyncio.run(_listen_all(url, name, queue_size, phases, barrier.wait)))


async def _burst(hub: PostgresHub, events: int) -> float:
    """Publish ``events`` at once; returns when they began."""
    began = time.monotonic()
    for seq in range(events):
        hub.publish(TOPIC, {"phase": "burst", "seq": seq, "t": time.monotonic()})
    hub.publish(TOPIC, {"phase": "burst", "end": True})
    await hub.flushed()
    return began


async def _paced(hub: PostgresHub, rate: float, seconds: float) -> float:
    """Publish ``rate`` events per second for ``seconds``; returns when they began."""
    began = time.monotonic()
    for seq in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, began + seq / rate - time.monotonic()))
        hub.publish(TOPIC, {"phase": "paced", "seq": seq, "t": time.monotonic()})
    hub.publish(TOPIC, {"phase": "paced", "end": True})
    await hub.flushed()
    return began


def _exactly_once(parts: list[dict[str, Any]], phase: str, sent: int) -> dict[str, Any]:
    """Per phase over every listener: events missing, duplicated, and whether each got each once."""
    missing = duplicates = 0
    for p in parts:
        got = Counter(p[phase]["seqs"])
        missing += sum(1 for seq in range(sent) if seq not in got)
        duplicates += sum(n - 1 for n in got.values())
    complete = all(p[phase]["complete"] and not p[phase]["dropped"] for p in parts)
    return {
        "sent": sent,
        "missing": missing,
        "duplicates": duplicates,
        "every_event_once_to_every_listener": complete and missing == duplicates == 0,
    }


async def fanout_run(
    url: str, listeners: int, burst: int, rate: float, seconds: float, server_cpu: ServerCpu
) -> dict[str, Any]:
    """One publisher hub here, ``listeners`` listener processes; a burst, then a paced phase."""
    paced_events = int(rate * seconds)
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(listeners + 1, timeout=SYNC_TIMEOUT_S), ctx.Queue()
    phases = ("burst", "paced")
    queue_size = burst + paced_events + 2  # the bus is measured, not a slow browser's queue
    procs = _start(
        ctx,
        _listener,
        [(url, f"scale listener {n}", queue_size, phases, barrier, out) for n in range(listeners)],
    )
    hub, engine = await _started_hub(url, "scale publisher", queue_size)
    loop = asyncio.get_running_loop()
    sync = barrier.wait
    await loop.run_in_executor(None, sync)  # every listener is listening
    cost: dict[str, dict[str, float]] = {}
    began: dict[str, float] = {}
    for phase, publish in (
        ("burst", lambda: _burst(hub, burst)),
        ("paced", lambda: _paced(hub, rate, seconds)),
    ):
        cpu0, server0 = time.process_time(), server_cpu() if server_cpu else 0.0
        began[phase] = await publish()
        stored = time.monotonic()
        await loop.run_in_executor(None, sync)  # every listener has heard the phase's end
        cost[phase] = {
            "publisher_cpu_s": time.process_time() - cpu0,
            "server_cpu_s": server_cpu() - server0 if server_cpu else math.nan,
            "stored_s": stored - began[phase],
        }
    parts = await _collect(out, procs)
    await hub.close()
    await engine.dispose()
    return {
        "listeners": listeners,
        "burst": _burst_figures(parts, burst, began["burst"], cost["burst"]),
        "paced": _paced_figures(parts, rate, paced_events, cost["paced"]),
        "load_average_after": round(os.getloadavg()[0], 2),
    }


def _per_event_ms(seconds: float, events: int) -> float | None:
    return None if math.isnan(seconds) else round(seconds / events * 1000, 3)


def _burst_figures(
    parts: list[dict[str, Any]], events: int, began: float, cost: dict[str, float]
) -> dict[str, Any]:
    to_all = max(p["burst"]["last_at"] for p in parts) - began
    return {
        "events": events,
        "stored_and_notified_per_s": round(events / cost["stored_s"], 1),
        "delivered_to_all_per_s": round(events / to_all, 1),
        "deliveries_per_s": round(events * len(parts) / to_all, 1),
        "latency": _ms([x for p in parts for x in p["burst"]["latencies"]]),
        **_exactly_once(parts, "burst", events),
    }


def _paced_figures(
    parts: list[dict[str, Any]], rate: float, events: int, cost: dict[str, float]
) -> dict[str, Any]:
    listener_s = sum(p["paced"]["cpu_s"] for p in parts)
    return {
        "rate_per_s": rate,
        "events": events,
        "latency": _ms([x for p in parts for x in p["paced"]["latencies"]]),
        "publisher_cpu_ms_per_event": _per_event_ms(cost["publisher_cpu_s"], events),
        "server_cpu_ms_per_event": _per_event_ms(cost["server_cpu_s"], events),
        "listener_cpu_ms_per_event_each": round(listener_s / len(parts) / events * 1000, 3),
        **_exactly_once(parts, "paced", events),
    }


# -- the run --------------------------------------------------------------------------------------------------
def _add_ratios(
    runs: list[dict[str, Any]], name: str, get: Callable[[dict[str, Any]], float]
) -> None:
    """Add ``ratio_<name>_to_1`` to every run: its figure over the first run's (N = 1)."""
    base = get(runs[0])
    for run in runs:
        run[f"ratio_{name}_to_1"] = round(get(run) / base, 2) if base else math.nan


def _median_round(
    rounds: list[dict[str, Any]], get: Callable[[dict[str, Any]], float]
) -> dict[str, Any]:
    """The round with the median figure (all its figures from one run), with every round's figure."""
    ordered = sorted(rounds, key=get)
    return ordered[len(ordered) // 2] | {"rounds": [get(r) for r in rounds]}


def _once_in_every_round(rounds: list[dict[str, Any]]) -> bool:
    return all(
        r[phase]["every_event_once_to_every_listener"]
        for r in rounds
        for phase in ("burst", "paced")
    )


def machine() -> dict[str, Any]:
    """Cores, CPU model and load average of this machine."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    return {"cores": os.cpu_count(), "cpu": model, "load_average": list(os.getloadavg())}


async def _create_database(admin_url: str, name: str, template: str | None = None) -> str:
    engine = make_engine(admin_url)
    copy_of = f' TEMPLATE "{template}"' if template else ""
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            await conn.execute(text(f'CREATE DATABASE "{name}"{copy_of}'))
    finally:
        await engine.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


async def _drop_database(admin_url: str, name: str) -> None:
    engine = make_engine(admin_url)
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class Sizes:
    """What one run measures."""

    workers: tuple[int, ...] = (1, 2, 4)
    tickets: int = 1200
    base_rows: int = 50_000
    events: int = 4000
    rate: float = 200.0
    seconds: float = 5.0
    rounds: int = 3  # each N measured this many times, interleaved; the median round is reported


async def _base(admin_url: str, prefix: str, rows: int) -> tuple[Generator, str]:
    """The template database: schema, departments, ``rows`` tickets of a past year; returns the ticket
    generator (for drafts like them) and the server's version."""
    settings = load_settings()
    catalogue = load_catalogue(settings)
    engine = make_engine(await _create_database(admin_url, f"{prefix}base"))
    try:
        await create_schema(engine)
        async with make_sessionmaker(engine)() as session:
            await seed_departments(session, catalogue)
        gen = Generator(rows, datetime.now(ZoneInfo(settings.timezone)), catalogue)
        await bulk_load(engine, gen, settings)
        async with engine.connect() as conn:
            version = (await conn.execute(text("SHOW server_version"))).scalar_one()
    finally:
        await engine.dispose()  # no connection may stay open on a template
    return gen, version


async def measure(admin_url: str, sizes: Sizes, server_cpu: ServerCpu) -> dict[str, Any]:
    """Both parts for every N on the server at ``admin_url``; the databases made are dropped after."""
    prefix = f"scale{os.getpid()}_"
    report: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "sizes": asdict(sizes),
        "in_flight": IN_FLIGHT,
    }
    if sizes.events + 1 > PENDING_MAX:
        raise ValueError(f"--events must stay below the hub's pending limit {PENDING_MAX}")
    gen, report["postgresql"] = await _base(admin_url, prefix, sizes.base_rows)
    ticket_rounds: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes.workers}
    fanout_rounds: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes.workers}
    try:
        for _ in range(
            sizes.rounds
        ):  # N = 1, 2, 4, 1, 2, 4, …: a drift of the machine hits every N
            for n in sizes.workers:
                url = await _create_database(admin_url, f"{prefix}t{n}", template=f"{prefix}base")
                ticket_rounds[n].append(await ticket_run(url, gen, n, sizes.tickets, server_cpu))
                print("tickets", json.dumps(ticket_rounds[n][-1]), flush=True)
                await _drop_database(admin_url, f"{prefix}t{n}")
        for _ in range(sizes.rounds):
            for n in sizes.workers:
                url = await _create_database(admin_url, f"{prefix}f{n}", template=f"{prefix}base")
                fanout_rounds[n].append(
                    await fanout_run(url, n, sizes.events, sizes.rate, sizes.seconds, server_cpu)
                )
                print("fanout", json.dumps(fanout_rounds[n][-1]), flush=True)
                await _drop_database(admin_url, f"{prefix}f{n}")
    finally:
        await _drop_database(admin_url, f"{prefix}base")
    tickets = [_median_round(r, lambda x: x["tickets_per_s"]) for r in ticket_rounds.values()]
    fanout = [
        _median_round(r, lambda x: x["burst"]["delivered_to_all_per_s"])
        | {"every_event_once_in_every_round": _once_in_every_round(r)}
        for r in fanout_rounds.values()
    ]
    _add_ratios(tickets, "tickets_per_s", lambda r: r["tickets_per_s"])
    bursts, paced = [r["burst"] for r in fanout], [r["paced"] for r in fanout]
    _add_ratios(bursts, "delivered_to_all_per_s", lambda r: r["delivered_to_all_per_s"])
    _add_ratios(bursts, "deliveries_per_s", lambda r: r["deliveries_per_s"])
    _add_ratios(paced, "latency_p95", lambda r: r["latency"]["p95_ms"])
    report.update(tickets=tickets, fanout=fanout)
    report["load_average_at_end"] = list(os.getloadavg())
    return report


def run(sizes: Sizes) -> dict[str, Any]:
    """The bench on a private PostgreSQL, with the server's CPU counted."""
    server = LocalPostgres.start()
    try:
        return asyncio.run(measure(server.url(), sizes, _server_cpu(server)))
    finally:
        server.stop()


# -- the sizing model -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Centre:
    """The centre to size and the assumptions about its traffic (the defaults are the issue's centre)."""

    seats: int = 1700
    requests_per_day: int = 70_000
    peak_hour_share: float = 0.12  # of the day's calls in the busiest hour
    bot_share: float = 0.25  # of the busiest hour's calls the bot takes first (overflow, self-help)
    bot_session_s: float = 120.0  # mean length of a bot call
    agent_handle_s: float = 300.0  # talk + wrap-up of an agent call
    answer_within_s: float = 15.0
    service_level: float = 0.95  # the 15-s rate the agents are planned for (Erlang C)
    bot_blocking: float = 0.01  # callers the bot may refuse for lack of a session (Erlang B)
    tickets_per_request: float = 1.0  # 接诉即办 files every request, 即办 included
    changes_per_ticket: float = 8.0  # later state changes, counted as costly as a creation
    live_events_per_call: float = 12.0  # queue snapshots, screen pop, agent states, ticket created
    # besides: each ticket state change (changes_per_ticket) is published (tickets:<scope>), and every
    # controller publishes its PBX's queue every queue_refresh_s even when nothing changes
    queue_refresh_s: float = 10.0  # hotline.wiring.ConsoleFeed.refresh_s
    console_requests_per_seat_s: float = 0.1  # one request per seat every 10 s (the console bench)
    utilisation: float = 0.5  # each role planned at half its measured capacity
    machine_cores: int = 16


def erlang_b(erlangs: float, servers: int) -> float:
    """Probability that a call finds every one of ``servers`` busy and is refused."""
    b = 1.0
    for n in range(1, servers + 1):
        b = erlangs * b / (n + erlangs * b)
    return b


def erlang_c(erlangs: float, servers: int) -> float:
    """Probability that a call waits (queued, nobody refused); 1 when the servers cannot keep up."""
    if servers <= erlangs:
        return 1.0
    b = erlang_b(erlangs, servers)
    return servers * b / (servers - erlangs * (1 - b))


def agents_for(erlangs: float, handle_s: float, within_s: float, level: float) -> int:
    """The fewest agents answering ``level`` of the calls within ``within_s`` (Erlang C)."""
    n = math.floor(erlangs) + 1
    while True:
        waits = erlang_c(erlangs, n)
        if 1 - waits * math.exp(-(n - erlangs) * within_s / handle_s) >= level:
            return n
        n += 1


def sessions_for(erlangs: float, blocking: float) -> int:
    """The fewest sessions refusing at most ``blocking`` of the calls (Erlang B)."""
    n = 1
    while erlang_b(erlangs, n) > blocking:
        n += 1
    return n


def measured_elsewhere(results: Path) -> dict[str, Any]:
    """The figures of the other benches the model uses: bot sessions per core at the p95 target, Asterisk's
    CPU per concurrent call in the peak bench, a console request's one-session latency."""
    bot = json.loads((results / "bot.json").read_text(encoding="utf-8"))
    whisper = next(e for e in bot["engines"] if e["engine"] == "whisper")
    at_target = max(
        (lv["k"] for lv in whisper["levels"] if (lv["answer_p95_s"] or math.inf) <= 0.8), default=1
    )
    peak = json.loads((results / "peak.json").read_text(encoding="utf-8"))["main"]
    calls = [t["waiting"] + t["agents_busy"] + t["bot_sessions"] for t in peak["timeline"]]
    mean_calls = sum(calls) / len(calls)
    console = json.loads((results / "console.json").read_text(encoding="utf-8"))
    one = console["baseline_one_session"]
    return {
        "bot_sessions_per_core": round(at_target / bot["cpus"], 2),
        "bot_basis": f"bench/results/bot.json: {at_target} calls on {bot['cpus']} cores with answer "
        "p95 ≤ 0.8 s (Whisper base)",
        "asterisk_cores_per_call": round(
            peak["resources"]["asterisk"]["cpu_percent_of_one_core"] / 100 / mean_calls, 5
        ),
        "asterisk_basis": f"bench/results/peak.json: Asterisk "
        f"{peak['resources']['asterisk']['cpu_percent_of_one_core']} % of a core at "
        f"{mean_calls:.1f} concurrent calls on average (SIPp trunk, queue, AudioSocket, recording)",
        "console_ms_per_request": round(sum(r["p50_ms"] for r in one.values()) / len(one), 1),
        "console_basis": "bench/results/console.json: mean one-session p50 of list, search, detail, "
        "update (latency bounds the CPU of console and PostgreSQL together)",
    }


def _cores(load: float, ms_each: float, utilisation: float) -> float:
    return load * ms_each / 1000 / utilisation


def sizing(report: dict[str, Any], elsewhere: dict[str, Any], centre: Centre) -> dict[str, Any]:
    """Peak load of ``centre`` and the cores and machines per role, from the measured costs."""
    c, util = centre, centre.utilisation
    calls_h = c.requests_per_day * c.peak_hour_share
    calls_s = calls_h / 3600
    bot_erl = calls_h * c.bot_share * c.bot_session_s / 3600
    agent_erl = calls_h * (1 - c.bot_share) * c.agent_handle_s / 3600
    agents = agents_for(agent_erl, c.agent_handle_s, c.answer_within_s, c.service_level)
    bot_sessions = sessions_for(bot_erl, c.bot_blocking)
    one = report["tickets"][0]
    ticket_client, ticket_server = one["client_cpu_ms_per_ticket"], one["server_cpu_ms_per_ticket"]
    writes_s = calls_s * c.tickets_per_request * (1 + c.changes_per_ticket)
    channels = c.seats + bot_sessions  # every seat on a call and every bot session in use
    asterisk = channels * elsewhere["asterisk_cores_per_call"] / util
    pbxs = max(2, math.ceil(asterisk / c.machine_cores))
    events_s = (
        calls_s * c.live_events_per_call
        + calls_s * c.tickets_per_request * c.changes_per_ticket
        + pbxs / c.queue_refresh_s
    )
    paced = report["fanout"][0]["paced"]
    console_rps = c.seats * c.console_requests_per_seat_s
    console_cores = _cores(console_rps, elsewhere["console_ms_per_request"], util)
    console_workers = max(2, math.ceil(console_cores))
    event_server = paced["server_cpu_ms_per_event"] or 0.0
    event_clients = (
        paced["publisher_cpu_ms_per_event"]
        + paced["listener_cpu_ms_per_event_each"] * console_workers
    )
    roles = {
        "asterisk": asterisk,
        "controllers": 1.0,  # one per Asterisk; the AMI load is ~100 events/s against 50,000/s measured
        "bots": bot_sessions / elsewhere["bot_sessions_per_core"],
        "console": console_cores
        + _cores(writes_s, ticket_client, util)
        + _cores(events_s, event_clients, util),
        "postgresql": _cores(writes_s, ticket_server, util)
        + _cores(events_s, event_server, util)
        + console_cores,
    }
    roles["controllers"] = float(pbxs)
    return {
        "centre": asdict(c),
        "measured": elsewhere
        | {
            "ticket_cpu_ms_client": ticket_client,
            "ticket_cpu_ms_server": ticket_server,
            "event_cpu_ms_server": event_server,
            "event_cpu_ms_clients": round(event_clients, 3),
            "tickets_per_s_on_this_machine": max(r["tickets_per_s"] for r in report["tickets"]),
            "events_per_s_to_all_on_this_machine": min(
                r["burst"]["delivered_to_all_per_s"] for r in report["fanout"]
            ),
        },
        "peak": {
            "calls_per_hour": round(calls_h),
            "calls_per_s": round(calls_s, 2),
            "tickets_per_s": round(calls_s * c.tickets_per_request, 2),
            "ticket_writes_per_s": round(writes_s, 1),
            "live_events_per_s": round(events_s, 1),
            "live_deliveries_per_s": round(events_s * console_workers, 1),
            "console_requests_per_s": round(console_rps),
            "agent_erlangs": round(agent_erl, 1),
            "agents_needed": agents,
            "bot_erlangs": round(bot_erl, 1),
            "bot_sessions": bot_sessions,
            "asterisk_channels_planned": channels,
            "console_workers": console_workers,
        },
        "roles": {
            role: {
                "cores": round(cores, 1),
                "machines": _machines(role, cores, c.machine_cores, pbxs),
            }
            for role, cores in roles.items()
        },
    }


def _machines(role: str, cores: float, per_machine: int, pbxs: int) -> int:
    """Machines of ``per_machine`` cores for a role, with one spare (PostgreSQL: primary and standby)."""
    if role in ("asterisk", "controllers"):
        return pbxs  # a controller runs beside each Asterisk
    return math.ceil(cores / per_machine) + 1


# -- the report -----------------------------------------------------------------------------------------------
def _ticket_rows(runs: list[dict[str, Any]]) -> list[str]:
    return [
        f"| {r['workers']} | {r['tickets']} | {r['tickets_per_s']} ({_rounds(r)}) | "
        f"**{r['ratio_tickets_per_s_to_1']}×** "
        f"| {r['latency']['p50_ms']} | {r['latency']['p95_ms']} | {r['client_cpu_ms_per_ticket']} | "
        f"{r['server_cpu_ms_per_ticket']} | {r['busy_cores']} | {sum(r['errors'].values())} |"
        for r in runs
    ]


def _rounds(run: dict[str, Any]) -> str:
    return "rounds " + ", ".join(f"{x:g}" for x in run["rounds"])


def _fanout_rows(runs: list[dict[str, Any]]) -> list[str]:
    rows = []
    for r in runs:
        b, p = r["burst"], r["paced"]
        once = "✔" if r["every_event_once_in_every_round"] else "✘ (see scale.json)"
        rows.append(
            f"| {r['listeners']} | {b['stored_and_notified_per_s']} | {b['delivered_to_all_per_s']} "
            f"({_rounds(r)}) | "
            f"**{b['ratio_delivered_to_all_per_s_to_1']}×** | {b['deliveries_per_s']} "
            f"({b['ratio_deliveries_per_s_to_1']}×) | {p['latency']['p50_ms']} | {p['latency']['p95_ms']} "
            f"({p['ratio_latency_p95_to_1']}×) | {p['server_cpu_ms_per_event']} / "
            f"{p['publisher_cpu_ms_per_event']} / {p['listener_cpu_ms_per_event_each']} | {once} |"
        )
    return rows


def _ticket_ceiling(r: dict[str, Any]) -> str:
    one = r["tickets"][0]
    cpu_ms = one["client_cpu_ms_per_ticket"] + (one["server_cpu_ms_per_ticket"] or 0.0)
    cores = r["machine"]["cores"]
    got = max(run["busy_cores"] for run in r["tickets"])
    return (
        f"At {cpu_ms:.1f} ms of CPU per ticket (workers + server, N = 1) {cores} cores cannot create more "
        f"than {cores / cpu_ms * 1000:.0f} tickets/s however many workers run, and the bench got at most "
        f"{got} cores of them: that is the ceiling the ratios meet."
    )


def _sizing_lines(s: dict[str, Any]) -> list[str]:
    c, p, m, roles = s["centre"], s["peak"], s["measured"], s["roles"]
    basis = {
        "asterisk": f"{p['asterisk_channels_planned']} calls (every seat busy + the bot's sessions) × "
        f"{m['asterisk_cores_per_call']} core ÷ {c['utilisation']}",
        "controllers": "one `hotline ivr` beside each Asterisk (AMI at ~40 events per call is ~100 events/s; "
        "one controller replays 50,000/s)",
        "bots": f"{p['bot_sessions']} sessions ÷ {m['bot_sessions_per_core']} per core (no more headroom: "
        "Erlang B already covers the peak)",
        "console": f"{p['console_requests_per_s']} requests/s × {m['console_ms_per_request']} ms + ticket "
        f"intake {m['ticket_cpu_ms_client']} ms and live events, ÷ {c['utilisation']}; "
        f"{p['console_workers']} workers",
        "postgresql": f"ticket writes {p['ticket_writes_per_s']}/s × {m['ticket_cpu_ms_server']} ms + live "
        f"events × {m['event_cpu_ms_server']} ms + the console's requests again, ÷ {c['utilisation']}; "
        "a streaming standby",
    }
    return [
        "## Sizing model: a centre of "
        f"{c['seats']:,} seats and {c['requests_per_day']:,} requests a day",
        "",
        f"Assumptions: {c['peak_hour_share']:.0%} of the day's calls in the busiest hour; the bot takes "
        f"{c['bot_share']:.0%} of them first, {c['bot_session_s']:.0f} s each, refusing at most "
        f"{c['bot_blocking']:.0%} (Erlang B); agent calls {c['agent_handle_s']:.0f} s of talk and wrap-up, "
        f"planned for {c['service_level']:.0%} answered within {c['answer_within_s']:.0f} s (Erlang C); "
        f"{c['tickets_per_request']:g} ticket per request and {c['changes_per_ticket']:g} later state "
        f"changes each, all counted at the busiest hour's rate and as costly as a creation; "
        f"{c['live_events_per_call']:g} live events per call, one more per ticket state change and a queue "
        f"snapshot from each PBX every {c['queue_refresh_s']:g} s; one console request per seat every "
        f"{1 / c['console_requests_per_seat_s']:.0f} s; every role at ≤ {c['utilisation']:.0%} of its "
        f"measured capacity; machines of {c['machine_cores']} cores, one spare per role.",
        "",
        "| at the peak | figure |",
        "|---|---|",
        f"| calls | {p['calls_per_hour']:,}/h = {p['calls_per_s']}/s |",
        f"| agents busy (offered load) / needed for the 15-s target | {p['agent_erlangs']} / "
        f"{p['agents_needed']} of {c['seats']:,} seats |",
        f"| bot calls at once (mean) / sessions provisioned | {p['bot_erlangs']} / {p['bot_sessions']} |",
        f"| tickets created / all ticket writes | {p['tickets_per_s']}/s / {p['ticket_writes_per_s']}/s "
        f"(this 2-core machine created {m['tickets_per_s_on_this_machine']}/s) |",
        f"| live events / deliveries to the console workers | {p['live_events_per_s']}/s / "
        f"{p['live_deliveries_per_s']}/s (this machine delivered "
        f"{m['events_per_s_to_all_on_this_machine']}/s to every listener) |",
        f"| console requests | {p['console_requests_per_s']}/s |",
        "",
        "| role | cores | machines | from |",
        "|---|---|---|---|",
        *(
            f"| {role} | {v['cores']} | {v['machines']} | {basis[role]} |"
            for role, v in roles.items()
        ),
        "",
        "Measured elsewhere: "
        + "; ".join(m[k] for k in ("bot_basis", "asterisk_basis", "console_basis"))
        + ".",
        "",
        "What is extrapolated from a 2-core machine: every per-unit cost above (CPU per ticket, per event, per "
        "bot session, per Asterisk call, per console request) was measured on 2 shared cores and is assumed to "
        "stay the same per core on a bigger machine, and to add up linearly. The Asterisk figure rests on a run "
        "of a few concurrent calls (CPU near the resolution of the counter) and the bot's on 8 calls at most: "
        "both should be measured again on the target hardware before buying. The ticket path and the live "
        "bus are far from their limits at this centre's peak; the bots and the PBXs are what the money buys.",
    ]


def markdown(r: dict[str, Any], s: dict[str, Any]) -> str:
    mach = r["machine"]
    ceiling = (
        f"The machine has {mach['cores']} cores, shared by the workers, the listeners and PostgreSQL, and in "
        f"this run by other work too (load average {mach['load_average'][0]:.1f} at start): past "
        f"{mach['cores']} busy processes more workers cannot add throughput, so the ratios show the "
        "ceiling of this machine, not a limit of the design. *Busy cores* is the CPU of the workers and "
        "the server over the wall time: how much of the machine the bench got. The CPU per ticket and per "
        "event are what carries over to bigger machines."
    )
    return "\n".join(
        [
            "# Scale: ticket intake and live-event fan-out with 1, 2 and 4 worker processes",
            "",
            f"Run {r['started']} on {mach['cores']} cores ({mach['cpu']}), PostgreSQL {r['postgresql']} "
            f"(local, fsync=off); load average at start "
            f"{[round(x, 2) for x in mach['load_average']]}, at end "
            f"{[round(x, 2) for x in r['load_average_at_end']]}. Template database with "
            f"{r['sizes']['base_rows']:,} tickets of a past year, a fresh copy per run. Ratios are to N = 1 "
            "in the same run.",
            "",
            f"{ceiling}",
            "",
            f"## Ticket creation (`tickets.services.create_ticket`, {r['sizes']['tickets']} tickets per run, "
            f"{r['in_flight']} under way over all workers)",
            "",
            "| workers | tickets | tickets/s | ratio to 1 | p50 ms | p95 ms | client CPU ms/ticket | "
            "server CPU ms/ticket | busy cores | errors |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *_ticket_rows(r["tickets"]),
            "",
            _ticket_ceiling(r),
            "",
            f"## Live-event fan-out (`PostgresHub`: one publisher, N listener processes; burst of "
            f"{r['sizes']['events']} events, then {r['sizes']['rate']:g}/s for {r['sizes']['seconds']:g} s)",
            "",
            "| listeners | burst stored + notified/s | burst delivered to all/s | ratio to 1 | deliveries/s "
            "| paced p50 ms | paced p95 ms | CPU ms/event server / publisher / each listener | "
            "each event once to each listener |",
            "|---|---|---|---|---|---|---|---|---|",
            *_fanout_rows(r["fanout"]),
            "",
            "Latency is from `publish` in the publisher's process to the subscriber's queue in a listener "
            "process. The listeners' subscriber queues hold the whole run here (the bus is measured); a "
            "browser's queue is `console.ws_queue_size`, and a browser that falls that far behind is "
            "disconnected and reconnects. A burst is as fast as the publisher's writer: one INSERT and one "
            "`pg_notify` per event (its CPU per event above), in transactions of up to 200 events under one "
            "advisory lock; the listeners only read. More listeners add deliveries, not work for the "
            "publisher.",
            "",
            *_sizing_lines(s),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--workers", default="1,2,4", help="worker process counts, 1 first")
    parser.add_argument("--tickets", type=int, default=Sizes.tickets, help="tickets per run")
    parser.add_argument(
        "--base-rows", type=int, default=Sizes.base_rows, help="tickets in the template"
    )
    parser.add_argument("--events", type=int, default=Sizes.events, help="events in the burst")
    parser.add_argument("--rate", type=float, default=Sizes.rate, help="paced events per second")
    parser.add_argument("--seconds", type=float, default=Sizes.seconds, help="paced phase length")
    parser.add_argument("--rounds", type=int, default=Sizes.rounds, help="measurements of each N")
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="folder for scale.json and scale.md"
    )
    parser.add_argument(
        "--resize",
        action="store_true",
        help="only recompute the sizing model from the measurements stored in scale.json (no new run)",
    )
    args = parser.parse_args(argv)
    if args.resize:
        report = json.loads((args.out / "scale.json").read_text(encoding="utf-8"))
        return _write(
            args.out, report | {"sizing": sizing(report, measured_elsewhere(RESULTS), Centre())}
        )
    workers = tuple(int(n) for n in args.workers.split(","))
    if workers[0] != 1:
        parser.error("--workers must start with 1 (the ratios are to one worker)")
    sizes = Sizes(
        workers, args.tickets, args.base_rows, args.events, args.rate, args.seconds, args.rounds
    )
    report = run(sizes)
    return _write(
        args.out, report | {"sizing": sizing(report, measured_elsewhere(RESULTS), Centre())}
    )


def _write(out: Path, report: dict[str, Any]) -> int:
    """scale.json and scale.md in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(
        json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    text_md = markdown(report, report["sizing"])
    (out / "scale.md").write_text(text_md, encoding="utf-8")
    print(text_md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
