"""Console benchmark on PostgreSQL: many logged-in staff working the ticket list while a leader opens the cockpit.

    python -m bench.console --rows 1000000 --sessions 200

Setup (not measured): a private PostgreSQL, ``--rows`` synthetic tickets bulk-loaded with ``bench.tickets``'
loader (a year of tickets), one warning scan, the console app in this process on a loopback port (its cockpit
warmer starts with it, as in production), ``--sessions`` dispatcher accounts (派单员: they may list, search and
审核) and one leader, and ``--rounds`` fresh accepted tickets per session to act on.

Measured, per request from the client's side. The clients run in a second process (the staff's browsers are
other machines; in one event loop the server would also wait on 200 clients' own work), each logged in with
its own aiohttp ClientSession:

- baseline: one session alone does ``--rounds`` rounds of list (newest 50), search (a common place name in the
  content, and a caller's number), and update (审核 through the action API, after reading the ticket's version);
- load: all sessions do the same at once (each on its own tickets, pausing ``--think-s`` seconds on average
  between requests as people read their screens), while the leader reopens the cockpit as often;
- cockpit: the page and its nine panel APIs as a browser loads them (6 connections): the leader's first load
  after the console started (the warmer has filled the caches by then: how long that took is reported), then
  warm reloads; the load's own cockpit reloads are reported separately. What each panel costs to compute (what
  a request would wait for without the warmer) is measured apart, in the server process.

Targets: list/search/update p95 ≤ 100 ms under load; cockpit page with its panels ≤ 500 ms. Clients, server and
PostgreSQL share two cores, so absolute figures are pessimistic: compare the load/baseline ratios. Results:
bench/results/console.json and console.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import re
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console.app import create_app
from agent_console.auth import Accounts, Origin
from agent_console.cockpit_panels import PANELS, Cockpit
from agent_console.roles import Role
from agent_console.schemas import UserCreate
from agent_console.views.cockpit import COCKPIT
from bench.tickets import Generator, bulk_load
from config import Settings, load_settings
from hotline.db import create_schema, make_engine, make_sessionmaker
from hotline.local_postgres import LocalPostgres
from tickets.dispatch_catalogue import load_catalogue
from tickets.seed import seed_departments
from tickets.services import Actor, TicketDraft, create_ticket
from tickets.warnings import scan_warnings

RESULTS = Path(__file__).with_name("results")
TARGET_OPS_P95_MS = 100.0
TARGET_COCKPIT_MS = 500.0
BROWSER_CONNECTIONS = 6
COCKPIT_PANELS = (
    "queue",
    "today",
    "trend",
    "categories?period=month",
    "hot-topics",
    "departments?period=month",
    "heatmap?period=month",
    "warnings",
    "frequent-problems",
)
SEARCH_WORD = "幸福小区"  # one of bench.tickets' places: in about an eighth of the contents
LOAD_SAMPLE_S = 5.0  # how often the machine's load average is sampled while measuring
PASSWORD = "bench-password-2024!"
# Logging in is not measured: cheap password hashing keeps the setup of hundreds of accounts short.
FAST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_kib": 64, "argon2_parallelism": 1}
INTAKE = Actor("压测话务员", "agent")


def _ms(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    if not s:
        return {"n": 0}

    def q(p: float) -> float:
        return round(s[min(len(s) - 1, int(p * len(s)))] * 1000, 1)

    return {
        "n": len(s),
        "p50_ms": q(0.5),
        "p95_ms": q(0.95),
        "p99_ms": q(0.99),
        "max_ms": round(s[-1] * 1000, 1),
    }


@dataclass
class Samples:
    by_op: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    async def time(self, op: str, request: Callable[[], Awaitable[Any]]) -> Any:
        t0 = time.perf_counter()
        try:
            return await request()
        except (AssertionError, aiohttp.ClientError, TimeoutError) as exc:
            key = f"{op}: {type(exc).__name__} {str(exc)[:80]}"
            self.errors[key] = self.errors.get(key, 0) + 1
            return None
        finally:
            self.by_op.setdefault(op, []).append(time.perf_counter() - t0)

    def summary(self) -> dict[str, Any]:
        return {op: _ms(v) for op, v in self.by_op.items()}


class Staff:
    """One logged-in console user with its own cookie jar."""

    def __init__(self, base: str, username: str) -> None:
        self.base, self.username = base, username
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            connector=aiohttp.TCPConnector(limit=BROWSER_CONNECTIONS),
        )
        self.csrf = ""

    async def login(self) -> None:
        async with self.http.get(f"{self.base}/login") as page:
            token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
        assert token
        form = {"csrf_token": token.group(1), "username": self.username, "password": PASSWORD}
        async with self.http.post(f"{self.base}/login", data=form, allow_redirects=False) as resp:
            assert resp.status == 303, await resp.text()
        async with self.http.get(f"{self.base}/api/v1/me") as me:
            self.csrf = (await me.json())["csrf_token"]

    async def get_json(self, path: str) -> Any:
        async with self.http.get(f"{self.base}{path}") as resp:
            assert resp.status == 200, f"{path}: {resp.status}"
            return await resp.json()

    async def get_text(self, path: str) -> str:
        async with self.http.get(f"{self.base}{path}") as resp:
            assert resp.status == 200, f"{path}: {resp.status}"
            return await resp.text()

    async def post_json(self, path: str, body: Any) -> Any:
        async with self.http.post(
            f"{self.base}{path}", json=body, headers={"X-CSRF-Token": self.csrf}
        ) as resp:
            assert resp.status == 200, f"{path}: {resp.status} {await resp.text()}"
            return await resp.json()

    async def close(self) -> None:
        await self.http.close()


async def work_rounds(
    staff: Staff,
    tickets: list[str],
    phone: str,
    samples: Samples,
    *,
    think_s: float = 0.0,
    seed: int = 0,
) -> None:
    """List, search by text and by number, and 审核 one of its own tickets, once per ticket; between two
    requests the user reads the screen for an exponentially distributed time of mean ``think_s``."""
    rng = random.Random(seed)
    tickets_api = "/api/v1/console/tickets"

    async def think() -> None:
        if think_s > 0:
            await asyncio.sleep(rng.expovariate(1 / think_s))

    for ticket_no in tickets:
        await think()
        await samples.time("list", lambda: staff.get_json(f"{tickets_api}?limit=50"))
        await think()
        await samples.time(
            "search_text", lambda: staff.get_json(f"{tickets_api}?text={SEARCH_WORD}&limit=50")
        )
        await think()
        await samples.time(
            "search_phone", lambda: staff.get_json(f"{tickets_api}?phone={phone}&limit=50")
        )
        await think()
        detail = await samples.time(
            "detail", lambda no=ticket_no: staff.get_json(f"{tickets_api}/{no}")
        )
        if detail is not None:
            body = {"action": "review", "expected_version": detail["version"]}
            await samples.time(
                "update",
                lambda no=ticket_no, b=body: staff.post_json(f"{tickets_api}/{no}/actions", b),
            )


async def load_cockpit(leader: Staff) -> None:
    """The page, then its panels over at most BROWSER_CONNECTIONS connections (the session's connector)."""
    await leader.get_text("/cockpit")
    await asyncio.gather(*(leader.get_json(f"/api/v1/cockpit/{p}") for p in COCKPIT_PANELS))


async def _users(
    sm: async_sessionmaker[AsyncSession], accounts: Accounts, names: list[str], role: Role
) -> None:
    async with sm() as db:
        for name in names:
            await accounts.create_user(
                db,
                UserCreate(username=name, display_name=name, role=role, password=PASSWORD),
                Origin("bench"),
                datetime.now(UTC),
            )


async def _fresh_tickets(
    sm: async_sessionmaker[AsyncSession], settings: Settings, n: int
) -> list[str]:
    """``n`` accepted tickets through the real intake service (4 at a time)."""
    gate = asyncio.Semaphore(4)

    async def one(i: int) -> str:
        async with gate, sm() as db:
            draft = TicketDraft(
                channel="phone",
                caller_phone=f"138{i:08d}",
                kind="投诉",
                district="城东区",
                street="东岗街道",
                content=f"压测工单 {i}：东岗街道幸福小区门口路灯不亮",
            )
            return (await create_ticket(db, draft, INTAKE, settings=settings)).ticket_no

    return list(await asyncio.gather(*(one(i) for i in range(n))))


@dataclass(frozen=True)
class ClientPlan:
    """What the client process needs: where the console is, who logs in, which tickets each session works."""

    base: str
    names: list[str]
    tickets: list[str]
    phone: str
    rounds: int
    cockpit_loads: int
    think_s: float
    started_at: float  # time.time() when the console started


async def measure(plan: ClientPlan) -> dict[str, Any]:
    """The client side of the benchmark (in its own process): logins, cockpit, baseline, load."""
    sessions, rounds, think_s, tickets = len(plan.names), plan.rounds, plan.think_s, plan.tickets
    staff = [Staff(plan.base, n) for n in [*plan.names, "baseline", "leader"]]
    out: dict[str, Any] = {}
    try:
        gate = asyncio.Semaphore(20)

        async def login(s: Staff) -> None:
            async with gate:
                await s.login()

        await asyncio.gather(*(login(s) for s in staff))
        crowd, single, leader = staff[:sessions], staff[sessions], staff[sessions + 1]

        cockpit = Samples()
        out["first_cockpit_after_start_s"] = round(time.time() - plan.started_at, 1)
        await cockpit.time("cockpit_first", lambda: load_cockpit(leader))
        for _ in range(plan.cockpit_loads):
            await cockpit.time("cockpit_warm", lambda: load_cockpit(leader))
        for panel in COCKPIT_PANELS:
            for _ in range(5):
                await cockpit.time(
                    f"panel {panel}", lambda p=panel: leader.get_json(f"/api/v1/cockpit/{p}")
                )
        for _ in range(20):
            await cockpit.time(
                "me (trivial authenticated request)", lambda: leader.get_json("/api/v1/me")
            )

        baseline = Samples()
        await work_rounds(single, tickets[-rounds:], plan.phone, baseline)

        loaded = Samples()
        during = Samples()
        stop = asyncio.Event()

        async def leader_loop() -> None:  # a leader reopening the cockpit every few seconds
            while not stop.is_set():
                await during.time("cockpit_under_load", lambda: load_cockpit(leader))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(think_s, 0.1)):
                        await stop.wait()

        watcher = asyncio.create_task(leader_loop())
        t0 = time.perf_counter()
        await asyncio.gather(
            *(
                work_rounds(
                    s,
                    tickets[i * rounds : (i + 1) * rounds],
                    plan.phone,
                    loaded,
                    think_s=think_s,
                    seed=i,
                )
                for i, s in enumerate(crowd)
            )
        )
        wall = time.perf_counter() - t0
        stop.set()
        await watcher
        requests = sum(len(v) for v in loaded.by_op.values())
        out["baseline_one_session"] = baseline.summary()
        out["under_load"] = loaded.summary() | {
            "wall_s": round(wall, 1),
            "requests": requests,
            "throughput_rps": round(requests / wall, 1),
        }
        out["cockpit"] = cockpit.summary() | during.summary()
        out["errors"] = baseline.errors | loaded.errors | cockpit.errors | during.errors
    finally:
        for s in staff:
            await s.close()
    return out


def client_process(plan: ClientPlan) -> dict[str, Any]:
    return asyncio.run(measure(plan))


async def sample_load_average(stop: asyncio.Event, samples: list[float]) -> None:
    """The machine's 1-minute load average every LOAD_SAMPLE_S seconds until ``stop``: the machine may be shared,
    and a load above the number of cores means the figures include waiting for another program's CPU."""
    while not stop.is_set():
        samples.append(os.getloadavg()[0])
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LOAD_SAMPLE_S):
                await stop.wait()


async def panel_compute_ms(cockpit: Cockpit, repeat: int = 3) -> dict[str, dict[str, float]]:
    """What computing each panel (default period) costs, uncached: what a request waits for without the warmer."""
    now = cockpit.clock()
    out = {}
    for name, panel in PANELS.items():
        period = "month" if "month" in panel.periods else None
        samples = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            await panel.compute(cockpit.source, now, period)
            samples.append(time.perf_counter() - t0)
        out[f"{name}{f'?period={period}' if period else ''}"] = _ms(samples)
    return out


async def run(
    rows: int, sessions: int, rounds: int, cockpit_loads: int, think_s: float
) -> dict[str, Any]:
    base_settings = load_settings()
    settings = base_settings.model_copy(
        update={"console": base_settings.console.model_copy(update=FAST_ARGON2)}
    )
    tz = ZoneInfo(settings.timezone)
    report: dict[str, Any] = {
        "rows": rows,
        "sessions": sessions,
        "rounds": rounds,
        "think_s": think_s,
        "started": datetime.now(tz).isoformat(),
        "database": "PostgreSQL (local, fsync=off)",
    }
    server = LocalPostgres.start()
    runner: web.AppRunner | None = None
    try:
        admin = make_engine(server.url())
        async with admin.connect() as conn:
            await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
                text("CREATE DATABASE console")
            )
        await admin.dispose()
        engine = make_engine(server.url("console"), pool_size=40)
        sm = make_sessionmaker(engine)
        await create_schema(engine)
        catalogue = load_catalogue(settings)
        async with sm() as db:
            await seed_departments(db, catalogue)
        gen = Generator(rows, datetime.now(tz), catalogue)
        report["load"] = await bulk_load(engine, gen, settings)
        print("loaded", json.dumps(report["load"], ensure_ascii=False), flush=True)
        t0 = time.perf_counter()
        async with sm() as db:
            scan = await scan_warnings(db, settings=settings)
        report["warning_scan_s"] = round(time.perf_counter() - t0, 1)
        report["open_warnings_raised"] = scan.to_json()
        async with engine.connect() as conn:
            report["server_version"] = (
                await conn.execute(text("SHOW server_version"))
            ).scalar_one()

        accounts = Accounts(settings.console)
        app = create_app(settings, sm, accounts=accounts)
        runner = web.AppRunner(app, access_log=None)
        started_at, t0 = time.time(), time.perf_counter()
        await runner.setup()  # starts the cockpit warmer
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        cockpit = app[COCKPIT]
        if cockpit.rounds == 0:
            await cockpit.next_round()
        report["cockpit_warm_up_s"] = round(time.perf_counter() - t0, 2)
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        names = [f"d{i:03d}" for i in range(sessions)]
        await _users(sm, accounts, [*names, "baseline"], Role.DISPATCHER)
        await _users(sm, accounts, ["leader"], Role.LEADER)
        tickets = await _fresh_tickets(sm, settings, (sessions + 1) * rounds)
        plan = ClientPlan(
            base, names, tickets, gen.callers[0], rounds, cockpit_loads, think_s, started_at
        )
        print("setup done; measuring", flush=True)
        stop_sampling, loads = asyncio.Event(), [os.getloadavg()[0]]
        sampler = asyncio.create_task(sample_load_average(stop_sampling, loads))
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as clients:
            report |= await asyncio.get_running_loop().run_in_executor(
                clients, client_process, plan
            )
        stop_sampling.set()
        await sampler
        report["load_average_while_measuring"] = {
            "cores": os.cpu_count(),
            "samples": len(loads),
            "min": round(min(loads), 2),
            "mean": round(sum(loads) / len(loads), 2),
            "max": round(max(loads), 2),
        }
        report["panel_compute"] = await panel_compute_ms(cockpit)
        ops = ("list", "search_text", "search_phone", "update")
        report["ratios_load_over_baseline_p95"] = {
            op: round(
                report["under_load"][op]["p95_ms"]
                / max(report["baseline_one_session"][op]["p95_ms"], 0.1),
                1,
            )
            for op in ops
        }
        report["targets"] = {
            "ops_p95_ms": TARGET_OPS_P95_MS,
            "cockpit_ms": TARGET_COCKPIT_MS,
            "ops_met_under_load": {
                op: report["under_load"][op]["p95_ms"] <= TARGET_OPS_P95_MS for op in ops
            },
            "cockpit_warm_p95_met": report["cockpit"]["cockpit_warm"]["p95_ms"]
            <= TARGET_COCKPIT_MS,
            "cockpit_first_met": report["cockpit"]["cockpit_first"]["p50_ms"] <= TARGET_COCKPIT_MS,
        }
        await runner.cleanup()
        runner = None
        await engine.dispose()
    finally:
        if runner is not None:
            await runner.cleanup()
        server.stop()
    report["finished"] = datetime.now(tz).isoformat()
    return report


def markdown(r: dict[str, Any]) -> str:
    base, load, cock = r["baseline_one_session"], r["under_load"], r["cockpit"]
    ok = r["targets"]["ops_met_under_load"]
    lines = [
        f"# Console benchmark — {r['rows']:,} tickets, {r['sessions']} concurrent sessions "
        f"({r['database']} {r.get('server_version', '')})",
        "",
        f"Run {r['started']}; bulk load (setup) {r['load']['seconds']} s, tickets table "
        f"{r['load']['tickets_table_size']}; {r['rounds']} rounds per session. The clients run in their own "
        "process; clients, console and PostgreSQL share two cores: compare ratios, not absolutes.",
        "",
        "| request | 1 session p50 | 1 session p95 | under load p50 | under load p95 | p99 | load/1 (p95) | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for op in ("list", "search_text", "search_phone", "detail", "update"):
        b, u = base[op], load[op]
        target = f"p95 ≤ {TARGET_OPS_P95_MS:.0f} {'✔' if ok.get(op) else '✘'}" if op in ok else "–"
        ratio = r["ratios_load_over_baseline_p95"].get(
            op, round(u["p95_ms"] / max(b["p95_ms"], 0.1), 1)
        )
        lines.append(
            f"| {op} | {b['p50_ms']} | {b['p95_ms']} | {u['p50_ms']} | {u['p95_ms']} | {u['p99_ms']} | "
            f"{ratio}× | {target} |"
        )
    lines += [
        "",
        f"Under load: {load['requests']} requests in {load['wall_s']} s = {load['throughput_rps']} requests/s "
        f"(each session pausing {r['think_s']} s on average between requests).",
        "",
        "| cockpit (page + 9 panel APIs, 6 connections) | n | p50 ms | p95 ms | target |",
        "|---|---|---|---|---|",
        f"| a leader's first load, {r['first_cockpit_after_start_s']} s after the console started | 1 | "
        f"{cock['cockpit_first']['p50_ms']} | – | ≤ {TARGET_COCKPIT_MS:.0f} "
        f"{'✔' if r['targets']['cockpit_first_met'] else '✘'} |",
        f"| warm (cached panels) | {cock['cockpit_warm']['n']} | {cock['cockpit_warm']['p50_ms']} | "
        f"{cock['cockpit_warm']['p95_ms']} | ≤ {TARGET_COCKPIT_MS:.0f} "
        f"{'✔' if r['targets']['cockpit_warm_p95_met'] else '✘'} |",
    ]
    if "cockpit_under_load" in cock:
        u = cock["cockpit_under_load"]
        lines.append(
            f"| while {r['sessions']} sessions work | {u['n']} | {u['p50_ms']} | {u['p95_ms']} | – |"
        )
    lines += [
        "",
        f"The console computes every panel when it starts (all of them, in the background, took "
        f"{r['cockpit_warm_up_s']} s here) and recomputes each shortly before it expires, so the first load "
        "above is served from the caches like any other. Without the warmer a first load waits for the "
        "computations below (they run in the background now; they are the cost of one refresh):",
        "",
        "| panel computed without cache (server side) | p50 ms | p95 ms |",
        "|---|---|---|",
    ]
    for name, v in r["panel_compute"].items():
        lines.append(f"| {name} | {v['p50_ms']} | {v['p95_ms']} |")
    lines += ["", "| single request (served from cache) | p50 ms | p95 ms |", "|---|---|---|"]
    for name, v in cock.items():
        if name.startswith(("panel ", "me ")):
            lines.append(f"| {name} | {v['p50_ms']} | {v['p95_ms']} |")
    if "before" in r:
        lines += before_after(r)
    if r["errors"]:
        lines += ["", "Errors: " + "; ".join(f"{k} ×{v}" for k, v in r["errors"].items())]
    lines.append("")
    return "\n".join(lines)


def _load_line(r: dict[str, Any]) -> str:
    la = r.get("load_average_while_measuring")
    if la is None:
        return "not recorded"
    return f"{la['mean']} mean ({la['min']}–{la['max']}) on {la['cores']} cores"


def before_after(r: dict[str, Any]) -> list[str]:
    """The under-load figures beside those of the earlier run kept under ``before``."""
    old = r["before"]
    lines = [
        "",
        f"Compared with the earlier run of {old['started']} (load average while measuring: "
        f"{_load_line(old)}; this run: {_load_line(r)}):",
        "",
        "| request | before: 1 session p50 | now | before: under load p95 | now |",
        "|---|---|---|---|---|",
    ]
    for op in ("list", "search_text", "search_phone", "detail", "update"):
        b0, u0 = old["baseline_one_session"].get(op, {}), old["under_load"].get(op, {})
        b1, u1 = r["baseline_one_session"][op], r["under_load"][op]
        lines.append(
            f"| {op} | {b0.get('p50_ms', '–')} | {b1['p50_ms']} | {u0.get('p95_ms', '–')} | {u1['p95_ms']} |"
        )
    return lines


def earlier(path: Path) -> dict[str, Any]:
    """The figures of an earlier console.json worth comparing with (not its own "before")."""
    old = json.loads(path.read_text(encoding="utf-8"))
    keep = (
        "started",
        "baseline_one_session",
        "under_load",
        "cockpit",
        "load_average_while_measuring",
        "notes",
    )
    return {k: old[k] for k in keep if k in old}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.console", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="tickets to bulk-load (default 1,000,000)"
    )
    parser.add_argument(
        "--sessions", type=int, default=200, help="concurrent logged-in staff sessions"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="list/search/update rounds per session"
    )
    parser.add_argument("--cockpit-loads", type=int, default=20, help="warm cockpit loads measured")
    parser.add_argument(
        "--think-s",
        type=float,
        default=10.0,
        help="mean pause between a session's requests under load (0: back to back)",
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="folder for console.json and console.md"
    )
    parser.add_argument(
        "--before",
        type=Path,
        help="an earlier console.json: its figures are kept under "
        '"before" and compared in console.md',
    )
    args = parser.parse_args(argv)
    before = earlier(args.before) if args.before else None
    report = asyncio.run(
        run(args.rows, args.sessions, args.rounds, args.cockpit_loads, args.think_s)
    )
    if before is not None:
        report["before"] = before
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "console.json").write_text(
        json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    (args.out / "console.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
