"""Ticket benchmark on PostgreSQL: a year of tickets (1,000,000 by default), then intake, metrics, lists, warnings.

    python -m bench.tickets --rows 1000000

Setup (not measured): a private PostgreSQL (hotline.local_postgres), the schema, the catalogue's departments,
and ``--rows`` synthetic tickets over the last 12 months bulk-loaded with COPY — realistic kinds, categories,
departments, districts, a heavy-tailed caller population, ~35 % 即办, the loop's timestamps and states by age
(so recent tickets are open and some old ones are stuck), 回访 results, repeats, extensions, 二次派单, and one
audit event per ticket plus the 回访不满意 events. Deadlines are approximated in calendar days (5 working days ≈
7 days) to keep the load fast.

The loader marks settled tickets ``rolled_up`` as the services do; then (setup too, timed)
``tickets.metrics_rollup.rebuild`` sums them into the daily rollup (``hotline metrics rebuild``) and ``VACUUM
ANALYZE`` does what autovacuum does for a live database.

Measured: ``create_ticket`` one at a time (the service's own latency, its CPU in the client and in the server,
and the CPU of repeat detection alone), then at paced rates (``--rates``, default 200/s — the target — and
50/s, 30 s each) from ``--workers`` client processes (default 4) whose latencies are merged, each with the CPU
it took per ticket in the clients and in the server and so the cores that rate needs; ``metrics`` over the
whole table (total, by department, category and area); list/search queries; the warning scan. Absolute times on
a shared machine are noise, so each figure comes with a baseline from the same run and the ratio: the reference
metrics (direct SQL over every ticket of the window, the previous implementation — and the fast path must
agree with it); one-at-a-time creation; a primary-key ticket lookup for the lists; a full-table count for the
scan. Results go to bench/results/tickets.json and tickets.md (``--only PART`` runs a part and only prints).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from config import Settings, load_settings
from hotline.db import create_schema, make_engine, make_sessionmaker
from hotline.local_postgres import LocalPostgres
from language.embeddings import optional_embedder
from tickets.categories import load_categories
from tickets.dispatch_catalogue import Catalogue, load_catalogue
from tickets.metrics import metrics, reference_metrics
from tickets.metrics_rollup import rebuild
from tickets.models import Ticket
from tickets.queries import list_tickets
from tickets.repeats import TokenBag, content_vector, find_repeats, tokenize
from tickets.seed import seed_departments
from tickets.services import Actor, TicketDraft, create_ticket, get_ticket
from tickets.states import OPEN_STATES
from tickets.warnings import scan_warnings

RESULTS = Path(__file__).with_name("results")
TARGET_CREATE_P99_MS = 20.0
TARGET_METRICS_MS = 300.0
PARTS = ("scan", "metrics", "lists", "repeats", "create")
# Frequent callers' ranks spread so that the most frequent makes ~0.3 × 1.2 / 360 = 0.1 % of the calls.
FREQUENT_CALLER_SCALE = 360
# The heavy case: one number with at least max_candidates tickets in the repeat window (an auto-dialler, a
# caller pressing the same matter every hour), so that each new ticket links max_candidates earlier ones.
HEAVY_CALLER = "13812345678"
IN_FLIGHT = (
    16  # paced creations under way at once, over all client processes (their connection pools)
)
AGENT = Actor("压测话务员", "agent")
KINDS = (("咨询", 40), ("求助", 25), ("投诉", 25), ("举报", 4), ("建议", 5), ("表扬", 1))
CHANNELS = (("phone", 70), ("bot", 12), ("web", 8), ("wechat", 7), ("grid", 2), ("leader-line", 1))
STREETS = (
    "东岗街道",
    "拱星墩街道",
    "雁园街道",
    "西湖街道",
    "敦煌路街道",
    "秀川街道",
    "火车站街道",
    "白银路街道",
)
PLACES = (
    "幸福小区",
    "阳光花园",
    "民主西路",
    "人民医院",
    "第十一中学",
    "南关十字",
    "东方红广场",
    "滨河路",
    "安宁菜市场",
)
PROBLEMS = {
    "住房安居": ("物业费上涨", "电梯经常故障", "楼顶漏水", "暖气不热", "不动产证办不下来"),
    "健康医疗": ("挂号难", "医保报销比例", "疫苗预约", "药价太高", "医生态度差"),
    "社会保障": ("养老金发放", "低保申请", "养老院收费", "残疾人补贴", "临时救助"),
    "产业发展": ("营业执照办理慢", "惠企政策兑现", "企业用工", "招商承诺未兑现"),
    "乡村振兴": ("农田灌溉", "村道破损", "土地承包纠纷", "惠农补贴未到账"),
    "干部作风": ("窗口人员态度差", "办事推诿", "吃拿卡要"),
    "教育文体": ("入学划片", "校外培训退费", "学校收费", "体育场馆开放"),
    "交通出行": ("公交班次少", "出租车拒载", "道路坑洼", "乱停车", "红绿灯故障"),
    "城乡建设": ("路灯不亮", "停水", "违章建筑", "夜间施工扰民", "井盖缺失"),
    "生态环境": ("噪音扰民", "油烟污染", "垃圾清运不及时", "河道污染", "树木乱砍"),
    "劳动就业": ("拖欠工资", "不签劳动合同", "就业补贴", "职业培训"),
    "市场监管": ("食品过期", "预付卡退费", "价格欺诈", "产品质量差"),
    "公共安全": ("治安问题", "消防通道堵塞", "安全隐患", "电动车违规充电"),
}
CLOSINGS = ("希望尽快处理", "多次反映未解决", "请相关部门核实", "咨询办理流程")
TICKET_COLUMNS = (
    "id",
    "ticket_no",
    "channel",
    "caller_phone",
    "district",
    "street",
    "category",
    "kind",
    "content",
    "content_tokens",
    "token_norm",
    "urgency",
    "deadline_tier",
    "due_at",
    "sign_for_due",
    "state",
    "dispatch_mode",
    "lead_department",
    "answer",
    "reply",
    "satisfaction",
    "callback_attempts",
    "last_callback_at",
    "redispatch_count",
    "return_count",
    "extension_count",
    "is_repeat",
    "dispatched_at",
    "signed_at",
    "replied_at",
    "closed_at",
    "created_at",
    "updated_at",
    "version",
    "rolled_up",
)
EVENT_COLUMNS = (
    "id",
    "ticket_id",
    "at",
    "actor",
    "role",
    "action",
    "from_state",
    "to_state",
    "note",
    "payload",
)


def _weighted(pairs: tuple[tuple[str, int], ...]) -> tuple[list[str], list[int]]:
    return [p[0] for p in pairs], [p[1] for p in pairs]


class Generator:
    """Synthetic tickets of one year, ids in time order."""

    def __init__(self, rows: int, now: datetime, catalogue: Catalogue, seed: int = 12345) -> None:
        self.rows, self.now, self.rng = rows, now, random.Random(seed)
        self.tz = now.tzinfo
        tree = load_categories()
        self.categories = [
            (top, kid) for top, kids in tree.children.items() for kid in (None, *kids)
        ]
        self.department_of = {e.name: e.department for e in catalogue.entries}
        self.departments = sorted(set(self.department_of.values()))
        self.districts = list(catalogue.districts)
        self.callers = [
            f"1{self.rng.choice('3456789')}{self.rng.randrange(10**9):09d}"
            for _ in range(rows // 3 + 10)
        ]
        self.day_counts: Counter[str] = Counter()
        self.events: list[tuple[Any, ...]] = []
        self.callback_events: list[tuple[Any, ...]] = []

    def caller(self) -> str:
        """Heavy tail: 30 % of the calls come from frequent callers ranked by a Pareto law, the most frequent
        making 0.1 % of all calls (1,000 a year in the 1,000,000-ticket load: ~80 in a 30-day repeat window,
        a known 高频来电人), the next ones fewer; the rest from callers who call a few times a year."""
        if self.rng.random() < 0.3:
            rank = int((self.rng.paretovariate(1.2) - 1) * FREQUENT_CALLER_SCALE)
            return self.callers[rank % len(self.callers)]
        return self.rng.choice(self.callers)

    def timestamps(self) -> list[datetime]:
        start = self.now - timedelta(days=365)
        span = (self.now - timedelta(minutes=1) - start).total_seconds()
        secs = sorted(self.rng.random() * span for _ in range(self.rows))
        out = []
        for s in secs:
            t = start + timedelta(seconds=s)
            hour = t.astimezone(self.tz).hour
            if hour < 7 and self.rng.random() < 0.7:  # fewer calls at night
                t += timedelta(hours=8)
                t = min(t, self.now - timedelta(minutes=1))
            out.append(t)
        out.sort()
        return out

    def batches(self, size: int) -> Iterator[list[tuple[Any, ...]]]:
        batch: list[tuple[Any, ...]] = []
        for n, created in enumerate(self.timestamps(), start=1):
            batch.append(self.ticket(n, created))
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch

    def ticket(self, ticket_id: int, c: datetime) -> tuple[Any, ...]:
        rng = self.rng
        day = c.astimezone(self.tz).strftime("%Y%m%d")
        self.day_counts[day] += 1
        ticket_no = f"12345-{day}-{self.day_counts[day]:05d}"
        kind = rng.choices(*_weighted(KINDS))[0]
        top, kid = rng.choice(self.categories)
        category = top if kid is None else f"{top}/{kid}"
        district, street, place = (
            rng.choice(self.districts),
            rng.choice(STREETS),
            rng.choice(PLACES),
        )
        problem = rng.choice(PROBLEMS.get(top, ("问题",)))
        content = f"{district}{street}{place}{problem}，{rng.choice(CLOSINGS)}"
        tokens = " ".join((district, street, place, problem))
        urgency = rng.choices(("normal", "urgent", "very_urgent"), (96, 3, 1))[0]
        tier, span = {
            "urgent": ("24h", timedelta(hours=24)),
            "very_urgent": ("3h", timedelta(hours=3)),
        }.get(urgency, ("3wd", timedelta(days=5)) if kind == "咨询" else ("5wd", timedelta(days=7)))
        due = c + span
        row: dict[str, Any] = dict(
            id=ticket_id,
            ticket_no=ticket_no,
            channel=rng.choices(*_weighted(CHANNELS))[0],
            caller_phone=self.caller(),
            district=district,
            street=street,
            category=category,
            kind=kind,
            content=content,
            content_tokens=tokens,
            token_norm=TokenBag.of(tokens.split()).norm,
            urgency=urgency,
            deadline_tier=tier,
            due_at=due,
            sign_for_due=None,
            state="accepted",
            dispatch_mode=None,
            lead_department=None,
            answer=None,
            reply=None,
            satisfaction=None,
            callback_attempts=0,
            last_callback_at=None,
            redispatch_count=0,
            return_count=0,
            extension_count=0,
            is_repeat=rng.random() < 0.08,
            dispatched_at=None,
            signed_at=None,
            replied_at=None,
            closed_at=None,
            created_at=c,
            updated_at=c,
            version=1,
        )
        self.events.append(
            (None, ticket_id, c, AGENT.name, "agent", "create", None, "accepted", "", "{}")
        )
        if rng.random() < (0.6 if kind == "咨询" else 0.15):  # 即办
            row.update(
                state="closed",
                answer="已当场答复",
                closed_at=c + timedelta(minutes=rng.uniform(2, 8)),
            )
            row["updated_at"], row["version"] = row["closed_at"], 2
            return self.record(row)
        if rng.random() < 0.02:
            row.update(state="withdrawn", updated_at=c + timedelta(hours=1), version=2)
            return self.record(row)
        if rng.random() < 0.03:  # extension granted
            row["extension_count"], row["due_at"] = 1, due + timedelta(days=5)
        t_dispatch = c + timedelta(minutes=rng.uniform(10, 120))
        t_sign = t_dispatch + timedelta(
            minutes=rng.uniform(5, 55) if rng.random() < 0.9 else rng.uniform(60, 300)
        )
        stuck = rng.random() < 0.005  # never replied: long overdue
        t_reply = (
            t_sign + timedelta(days=min(rng.lognormvariate(0.8, 0.7), 12)) if not stuck else None
        )
        t_verify = t_reply + timedelta(hours=rng.uniform(1, 6)) if t_reply else None
        t_close = t_verify + timedelta(hours=rng.uniform(2, 30)) if t_verify else None
        lead = self.department_of.get(top) or rng.choice(self.departments)
        now = self.now
        if now < t_dispatch:
            row["state"] = "reviewed" if now > c + (t_dispatch - c) / 2 else "accepted"
            return self.record(row)
        row.update(
            dispatch_mode="direct",
            lead_department=lead,
            dispatched_at=t_dispatch,
            sign_for_due=t_dispatch + timedelta(hours=1),
            state="dispatched",
            version=3,
            updated_at=t_dispatch,
        )
        if now < t_sign:
            return self.record(row)
        row.update(signed_at=t_sign, state="in_progress", version=5, updated_at=t_sign)
        if t_reply is None or now < t_reply:
            return self.record(row)
        row.update(
            reply="已办理完毕", replied_at=t_reply, state="replied", version=6, updated_at=t_reply
        )
        if t_verify is None or now < t_verify:
            return self.record(row)
        row.update(state="verified", version=7, updated_at=t_verify)
        if t_close is None or now < t_close:
            return self.record(row)
        result = rng.choices(
            ("satisfied", "basically_satisfied", "unsatisfied", "unreachable"), (70, 15, 5, 10)
        )[0]
        if result == "unsatisfied":  # 二次派单 earlier, then satisfied
            row["redispatch_count"] = 1
            self.callback_events.append(
                (
                    None,
                    ticket_id,
                    t_verify,
                    "回访机器人",
                    "system",
                    "callback_redispatch",
                    "verified",
                    "dispatched",
                    "",
                    "{}",
                )
            )
            result = "satisfied"
        row.update(
            state="closed",
            satisfaction=result,
            closed_at=t_close,
            callback_attempts=1,
            last_callback_at=t_close,
            version=8,
            updated_at=t_close,
        )
        return self.record(row)

    @staticmethod
    def record(row: dict[str, Any]) -> tuple[Any, ...]:
        # settled (tickets.metrics_rollup): final state, not waiting on a sign-for deadline — as the services mark it
        row["rolled_up"] = row["state"] in ("closed", "withdrawn") and not (
            row["dispatched_at"] is not None and row["signed_at"] is None
        )
        return tuple(row[k] for k in TICKET_COLUMNS)


async def _raw(conn: Any) -> Any:
    return (await conn.get_raw_connection()).driver_connection


async def bulk_load(engine: AsyncEngine, gen: Generator, settings: Settings) -> dict[str, Any]:
    started = time.perf_counter()
    async with engine.connect() as conn:
        apg = await _raw(conn)
        event_id = 0
        for batch in gen.batches(50_000):
            await apg.copy_records_to_table("tickets", records=batch, columns=TICKET_COLUMNS)
            events = gen.events + gen.callback_events
            gen.events, gen.callback_events = [], []
            records = []
            for e in events:
                event_id += 1
                records.append((event_id, *e[1:]))
            await apg.copy_records_to_table("ticket_events", records=records, columns=EVENT_COLUMNS)
        await apg.copy_records_to_table(
            "ticket_counters", records=list(gen.day_counts.items()), columns=("day", "last")
        )
        for table in ("tickets", "ticket_events"):
            await apg.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        await conn.commit()
    loaded = time.perf_counter()
    async with make_sessionmaker(engine)() as session:
        rollup = await rebuild(session, settings)
    rebuilt = time.perf_counter()
    async with engine.connect() as conn:
        await (await _raw(conn)).execute("VACUUM ANALYZE")
    async with engine.connect() as conn:
        size = (
            await conn.execute(text("SELECT pg_size_pretty(pg_total_relation_size('tickets'))"))
        ).scalar_one()
        by_state = await conn.execute(text("SELECT state, count(*) FROM tickets GROUP BY state"))
        states: dict[str, int] = {state: n for state, n in by_state}
    return {
        "seconds": round(loaded - started, 1),
        "vacuum_analyze_seconds": round(time.perf_counter() - rebuilt, 1),
        "rollup_rebuild": rollup,
        "tickets_table_size": size,
        "states": states,
    }


def _ms(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)

    def q(p: float) -> float:
        return round(s[min(len(s) - 1, int(p * len(s)))] * 1000, 2)

    return {
        "n": len(s),
        "p50_ms": q(0.5),
        "p95_ms": q(0.95),
        "p99_ms": q(0.99),
        "max_ms": round(s[-1] * 1000, 2),
    }


async def _timed(n: int, work: Callable[[int], Awaitable[Any]]) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await work(i)
        out.append(time.perf_counter() - t0)
    return out


def _drafts(gen: Generator, n: int, seed: int) -> list[dict[str, Any]]:
    """Intake drafts like the loaded year's: 30 % from its (heavy-tailed) callers, the rest new numbers."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        top, kid = rng.choice(gen.categories)
        caller = gen.caller() if rng.random() < 0.3 else f"139{rng.randrange(10**8):08d}"
        street, place, problem = rng.choice(STREETS), rng.choice(PLACES), rng.choice(PROBLEMS[top])
        # worded like the loaded year's tickets, so that drafts are as alike as real matters are (not all alike)
        content = f"{street}{place}{problem}，{rng.choice(CLOSINGS)}"
        out.append(
            {
                "channel": "phone",
                "caller_phone": caller,
                "content": content,
                "district": rng.choice(gen.districts),
                "category": top if kid is None else f"{top}/{kid}",
                "kind": rng.choice(("咨询", "求助", "投诉")),
            }
        )
    return out


async def _paced_creates(
    url: str, drafts: list[dict[str, Any]], rate: float, start: Callable[[], None], in_flight: int
) -> dict[str, Any]:
    """Create ``drafts`` at ``rate`` per second (at most ``in_flight`` at once); latencies in seconds."""
    settings = load_settings()
    engine = make_engine(url, pool_size=in_flight)
    sm = make_sessionmaker(engine)

    links = 0

    async def one(d: dict[str, Any]) -> None:
        nonlocal links
        async with sm() as session:
            links += len(
                (
                    await create_ticket(session, TicketDraft(**d), AGENT, settings=settings)
                ).repeat_links
            )

    for d in drafts[:20]:  # warm-up: jieba dictionary, connection pool, statement caches
        await one(d)
    drafts, links = drafts[20:], 0
    await asyncio.get_running_loop().run_in_executor(None, start)  # all clients begin together
    service: list[float] = []
    intended: list[float] = []
    errors: Counter[str] = Counter()
    gate = asyncio.Semaphore(in_flight)  # a backlog queues here, not in the pool
    t0, cpu0 = time.perf_counter(), time.process_time()

    async def paced(i: int) -> None:
        due = t0 + i / rate
        async with gate:
            begun = time.perf_counter()
            try:
                await one(drafts[i])
            except Exception as exc:  # counted and reported
                errors[type(exc).__name__] += 1
                return
        done = time.perf_counter()
        service.append(done - begun)
        intended.append(done - due)

    tasks = []
    for i in range(len(drafts)):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(paced(i)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    await engine.dispose()
    return {
        "service": service,
        "intended": intended,
        "errors": dict(errors),
        "elapsed": elapsed,
        "cpu_share": round(cpu / elapsed, 2),
        "links": links,
    }


def _create_worker(
    url: str, drafts: list[dict[str, Any]], rate: float, in_flight: int, barrier: Any, out: Any
) -> None:
    """One client process of the paced run (spawned): its results go to ``out``."""
    out.put(asyncio.run(_paced_creates(url, drafts, rate, barrier.wait, in_flight=in_flight)))


async def bench_repeat_detection(
    sm: async_sessionmaker[AsyncSession], settings: Settings, gen: Generator
) -> dict[str, Any]:
    """CPU of ``find_repeats`` alone for a new ticket whose district has ``max_candidates`` recent tickets,
    from a new caller and from the busiest caller (another ``max_candidates``, all linked). The new ticket's
    content vector is computed once before (intake computes it before any statement)."""
    now = datetime.now(ZoneInfo(settings.timezone))
    text = f"{gen.districts[0]}{STREETS[0]}{PLACES[0]}电梯经常故障，希望尽快处理"
    tokens = tokenize(text)
    embedder = optional_embedder(settings.language.embedding_model)
    vector = content_vector(embedder, text, (gen.districts[0], STREETS[0], PLACES[0]))
    busiest = gen.callers[0]
    out: dict[str, Any] = {"max_candidates": settings.repeat.max_candidates}
    async with sm() as session:
        for name, phone in (("new_caller", "13000000000"), ("busiest_caller", busiest)):
            found = 0
            cpu: list[float] = []
            for _ in range(50):
                c0 = time.process_time()
                found = len(
                    await find_repeats(
                        session,
                        caller_phone=phone,
                        district=gen.districts[0],
                        street=STREETS[0],
                        tokens=tokens,
                        vector=vector,
                        now=now,
                        settings=settings.repeat,
                    )
                )
                cpu.append(time.process_time() - c0)
            await session.commit()
            out[name] = {"cpu_ms_p50": round(statistics.median(cpu) * 1000, 3), "matches": found}
    return out


def _server_cpu(server: LocalPostgres) -> Callable[[], float]:
    """CPU seconds used so far by the PostgreSQL server: the postmaster, its live backends and (through the
    postmaster's children counters) the backends that have exited."""
    postmaster = (server.datadir / "data" / "postmaster.pid").read_text().split()[0]
    tick = os.sysconf("SC_CLK_TCK")

    def fields(pid: str) -> list[str]:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()

    def used() -> float:
        own = fields(postmaster)
        total = sum(int(x) for x in own[11:15])  # utime stime cutime cstime
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = fields(entry.name)
                except OSError:  # exited meanwhile
                    continue
                if stat[1] == postmaster:
                    total += int(stat[11]) + int(stat[12])
        return total / tick

    return used


async def _paced_run(
    url: str,
    gen: Generator,
    rate: float,
    seconds: float,
    workers: int,
    seed: int,
    server_cpu: Callable[[], float],
    unloaded: list[float],
) -> dict[str, Any]:
    """``rate`` creations per second for ``seconds`` from ``workers`` client processes."""
    per_worker = int(rate * seconds / workers)
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(workers + 1), ctx.Queue()
    procs = [
        ctx.Process(
            target=_create_worker,
            args=(
                url,
                _drafts(gen, per_worker + 20, seed=seed + w),
                rate / workers,
                max(1, IN_FLIGHT // workers),
                barrier,
                results,
            ),
        )
        for w in range(workers)
    ]
    for proc in procs:
        proc.start()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, barrier.wait)
    server0 = server_cpu()
    parts = [await loop.run_in_executor(None, results.get) for _ in procs]
    server_s = server_cpu() - server0
    for proc in procs:
        proc.join()
    service = [x for part in parts for x in part["service"]]
    intended = [x for part in parts for x in part["intended"]]
    errors: Counter[str] = Counter()
    for part in parts:
        errors.update(part["errors"])
    elapsed = max(part["elapsed"] for part in parts)
    client_ms = sum(part["cpu_share"] * part["elapsed"] for part in parts) / len(service) * 1000
    server_ms = server_s / len(service) * 1000
    latency = _ms(service)
    return {
        "target_rate_per_s": rate,
        "client_processes": workers,
        "tickets": per_worker * workers,
        "achieved_rate_per_s": round(len(service) / elapsed, 1),
        "errors": dict(errors),
        "repeat_links_per_create": round(sum(part["links"] for part in parts) / len(service), 1),
        "client_cpu_share": [part["cpu_share"] for part in parts],
        "client_cpu_ms_per_create": round(client_ms, 2),
        "server_cpu_ms_per_create": round(server_ms, 2),
        "cores_needed_at_target_rate": round((client_ms + server_ms) * rate / 1000, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        "latency": latency,
        "latency_from_schedule": _ms(intended),
        "ratio_paced_p50_over_one_at_a_time": round(
            statistics.median(service) / statistics.median(unloaded), 1
        ),
        "ratio_paced_p99_over_one_at_a_time": round(latency["p99_ms"] / _ms(unloaded)["p99_ms"], 1),
        "meets_target": latency["p99_ms"] <= TARGET_CREATE_P99_MS,
    }


async def bench_create(
    sm: async_sessionmaker[AsyncSession],
    url: str,
    gen: Generator,
    settings: Settings,
    rates: list[float],
    seconds: float,
    workers: int,
    server_cpu: Callable[[], float],
) -> dict[str, Any]:
    """One at a time (the service's own latency and CPU, client and server), then paced at each of ``rates``:
    the first is the target; the figures of the others go under ``other_rates``."""
    links = 0

    async def one(d: dict[str, Any]) -> None:
        nonlocal links
        async with sm() as session:
            links += len(
                (
                    await create_ticket(session, TicketDraft(**d), AGENT, settings=settings)
                ).repeat_links
            )

    async def measured(drafts: list[dict[str, Any]]) -> tuple[list[float], dict[str, Any]]:
        nonlocal links
        links, cpu0, server0 = 0, time.process_time(), server_cpu()
        latencies = await _timed(len(drafts), lambda i: one(drafts[i]))
        n = len(drafts)
        return latencies, {
            "cpu_ms_per_create": round((time.process_time() - cpu0) / n * 1000, 2),
            "server_cpu_ms_per_create": round((server_cpu() - server0) / n * 1000, 2),
            "repeat_links_per_create": round(links / n, 1),
        }

    warm = _drafts(gen, 220, seed=7)
    for d in warm[:20]:
        await one(d)
    unloaded, cost = await measured(warm[20:])
    heavy = [
        d | {"caller_phone": HEAVY_CALLER}
        for d in _drafts(gen, settings.repeat.max_candidates + 100, seed=8)
    ]
    for d in heavy[: settings.repeat.max_candidates]:  # the window fills up (not measured)
        await one(d)
    heavy_latency, heavy_cost = await measured(heavy[settings.repeat.max_candidates :])
    paced = [
        await _paced_run(url, gen, rate, seconds, workers, 100 + 10 * n, server_cpu, unloaded)
        for n, rate in enumerate(rates)
    ]
    return {
        **paced[0],
        "other_rates": paced[1:],
        "baseline_one_at_a_time": _ms(unloaded),
        "cpu_ms_per_create_one_at_a_time": cost["cpu_ms_per_create"],
        "server_cpu_ms_per_create_one_at_a_time": cost["server_cpu_ms_per_create"],
        "repeat_links_per_create_one_at_a_time": cost["repeat_links_per_create"],
        "heavy_caller_one_at_a_time": {"latency": _ms(heavy_latency), **heavy_cost},
        "target_p99_ms": TARGET_CREATE_P99_MS,
    }


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two metrics results agree (handling hours to rounding: floating sums in another order)."""

    def norm(r: dict[str, Any]) -> list[Any]:
        rows = [r["total"], *r.get("groups", [])]
        return [{k: v for k, v in row.items() if k != "avg_handling_hours"} for row in rows]

    hours = [row["avg_handling_hours"] for row in (a["total"], *a.get("groups", []))]
    ref_hours = [row["avg_handling_hours"] for row in (b["total"], *b.get("groups", []))]
    close = all(
        (x is None and y is None) or (x is not None and y is not None and abs(x - y) <= 0.011)
        for x, y in zip(hours, ref_hours, strict=True)
    )
    return norm(a) == norm(b) and close


async def bench_metrics(
    sm: async_sessionmaker[AsyncSession], now: datetime, settings: Settings, repeat: int
) -> dict[str, Any]:
    everything = (now - timedelta(days=400), now + timedelta(days=1))
    async with sm() as session:

        async def run(
            how: Callable[..., Awaitable[dict[str, Any]]], by: str | None, n: int
        ) -> list[float]:
            return await _timed(
                n, lambda _i: how(session, *everything, by=by, now=now, settings=settings)
            )

        fast = {
            by or "total": _ms(await run(metrics, by, repeat))
            for by in (None, "department", "category", "area")
        }
        reference = {
            by or "total": _ms(await run(reference_metrics, by, 3)) for by in (None, "department")
        }
        agree = {
            by or "total": _same(
                await metrics(session, *everything, by=by, now=now, settings=settings),
                await reference_metrics(session, *everything, by=by, now=now, settings=settings),
            )
            for by in (None, "department", "category", "area")
        }
        result = await metrics(session, *everything, now=now, settings=settings)
    return {
        "rows": result["total"]["received"],
        "total": fast["total"],
        "by_department": fast["department"],
        "by_category": fast["category"],
        "by_area": fast["area"],
        "baseline_reference_direct_sql": reference["total"],
        "baseline_reference_by_department": reference["department"],
        "ratio_reference_over_fast": round(
            reference["total"]["p50_ms"] / fast["total"]["p50_ms"], 1
        ),
        "ratio_reference_over_fast_by_department": round(
            reference["department"]["p50_ms"] / fast["department"]["p50_ms"], 1
        ),
        "fast_path_agrees_with_reference": agree,
        "target_ms": TARGET_METRICS_MS,
        "meets_target": max(fast[k]["p50_ms"] for k in fast) <= TARGET_METRICS_MS,
        "figures": {
            k: result["total"][k]
            for k in (
                "received",
                "closed",
                "open",
                "overdue",
                "response_rate",
                "closure_rate",
                "on_time_rate",
                "satisfaction_rate",
                "instant_rate",
                "repeat_rate",
                "avg_handling_hours",
            )
        },
    }


async def bench_lists(
    sm: async_sessionmaker[AsyncSession], gen: Generator, repeat: int
) -> dict[str, Any]:
    rng = random.Random(11)
    async with sm() as session:
        sample = list(
            (
                await session.execute(
                    select(Ticket.ticket_no, Ticket.caller_phone).where(
                        Ticket.id.in_([rng.randrange(1, gen.rows) for _ in range(repeat)])
                    )
                )
            ).all()
        )
        await session.commit()
        nos = [s[0] for s in sample]
        phones = [s[1] for s in sample]
        depts = gen.departments

        async def deep_page(i: int) -> None:
            page = await list_tickets(session, department=depts[i % len(depts)], limit=50)
            for _ in range(4):
                page = await list_tickets(
                    session, department=depts[i % len(depts)], limit=50, cursor=page.next_cursor
                )

        cases: dict[str, Callable[[int], Awaitable[Any]]] = {
            "reference_get_ticket_by_no": lambda i: get_ticket(session, nos[i % len(nos)]),
            "by_caller": lambda i: list_tickets(session, caller_phone=phones[i % len(phones)]),
            "by_department": lambda i: list_tickets(session, department=depts[i % len(depts)]),
            "by_department_page_5": deep_page,
            "by_department_open": lambda i: list_tickets(
                session, department=depts[i % len(depts)], states=[s.value for s in OPEN_STATES]
            ),
            "by_ticket_no_prefix": lambda i: list_tickets(
                session, ticket_no=nos[i % len(nos)][:14]
            ),
            "by_state_dispatched": lambda i: list_tickets(session, state="dispatched"),
            "by_text_common_word": lambda i: list_tickets(session, text=rng.choice(PLACES)),
            "all_newest_first": lambda i: list_tickets(session),
        }
        out: dict[str, Any] = {}
        for name, work in cases.items():
            out[name] = _ms(await _timed(repeat, work))
        ref = out["reference_get_ticket_by_no"]["p50_ms"]
        for name in cases:
            out[name]["ratio_p50_to_reference"] = (
                round(out[name]["p50_ms"] / ref, 1) if ref else None
            )
        await session.commit()
    return out


async def bench_scan(
    sm: async_sessionmaker[AsyncSession], settings: Settings, catalogue: Catalogue, now: datetime
) -> dict[str, Any]:
    async with sm() as session:
        t0 = time.perf_counter()
        first = await scan_warnings(session, now=now, settings=settings, catalogue=catalogue)
        first_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        second = await scan_warnings(
            session, now=now + timedelta(minutes=5), settings=settings, catalogue=catalogue
        )
        second_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        await session.execute(select(func.count()).select_from(Ticket))
        await session.commit()
        full_count_s = time.perf_counter() - t0
    return {
        "first_scan": {"seconds": round(first_s, 3), **first.to_json()},
        "steady_scan": {"seconds": round(second_s, 3), **second.to_json()},
        "baseline_full_table_count_seconds": round(full_count_s, 3),
        "ratio_steady_scan_over_full_count": round(second_s / full_count_s, 2),
    }


async def run(
    rows: int, rates: list[float], seconds: float, repeat: int, workers: int, parts: frozenset[str]
) -> dict[str, Any]:
    settings = load_settings()
    tz = ZoneInfo(settings.timezone)
    now = datetime.now(tz)
    catalogue = load_catalogue(settings)
    server = LocalPostgres.start()
    report: dict[str, Any] = {
        "rows": rows,
        "started": now.isoformat(),
        "database": "PostgreSQL (local, fsync=off)",
        "load_average_at_start": os.getloadavg()[0],
    }
    try:
        admin = make_engine(server.url())
        async with admin.connect() as conn:
            await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
                text("CREATE DATABASE bench")
            )
        await admin.dispose()
        url = server.url("bench")
        engine = make_engine(url, pool_size=20)
        sm = make_sessionmaker(engine)
        await create_schema(engine)
        async with sm() as session:
            await seed_departments(session, catalogue)
        gen = Generator(rows, now, catalogue)
        report["load"] = await bulk_load(engine, gen, settings)
        print("loaded", json.dumps(report["load"], ensure_ascii=False), flush=True)
        async with engine.connect() as conn:
            report["server_version"] = (
                await conn.execute(text("SHOW server_version"))
            ).scalar_one()
        if "scan" in parts:
            report["warnings_scan"] = await bench_scan(sm, settings, catalogue, datetime.now(tz))
            print("scan", json.dumps(report["warnings_scan"], ensure_ascii=False), flush=True)
        if "metrics" in parts:
            report["metrics"] = await bench_metrics(sm, datetime.now(tz), settings, repeat=5)
            print("metrics", json.dumps(report["metrics"], ensure_ascii=False), flush=True)
        if "lists" in parts:
            report["lists"] = await bench_lists(sm, gen, repeat)
            print("lists", json.dumps(report["lists"], ensure_ascii=False), flush=True)
        if "repeats" in parts:
            report["repeat_detection"] = await bench_repeat_detection(sm, settings, gen)
            print("repeats", json.dumps(report["repeat_detection"]), flush=True)
        if "create" in parts:
            report["create_ticket"] = await bench_create(
                sm, url, gen, settings, rates, seconds, workers, _server_cpu(server)
            )
            print("create", json.dumps(report["create_ticket"], ensure_ascii=False), flush=True)
        await engine.dispose()
    finally:
        server.stop()
    report["finished"] = datetime.now(UTC).astimezone(tz).isoformat()
    report["load_average_at_end"] = os.getloadavg()[0]
    return report


def _paced_row(p: dict[str, Any]) -> str:
    """The markdown table row of one paced create run."""
    return (
        f"| create_ticket at {p['target_rate_per_s']:.0f}/s from {p['client_processes']} client processes "
        f"({p['tickets']} tickets, {p['repeat_links_per_create']} repeat links each on average, achieved "
        f"{p['achieved_rate_per_s']}/s, {sum(p['errors'].values())} errors; "
        f"CPU per create {p['client_cpu_ms_per_create']} ms client + {p['server_cpu_ms_per_create']} ms server "
        f"= {p['cores_needed_at_target_rate']} cores at {p['target_rate_per_s']:.0f}/s; client CPU share "
        f"{p['client_cpu_share']}; load average after {p['load_average_after']}) | {p['latency']['p50_ms']} | "
        f"{p['latency']['p95_ms']} | {p['latency']['p99_ms']} | one at a time (below) | p50 "
        f"{p['ratio_paced_p50_over_one_at_a_time']}×, p99 {p['ratio_paced_p99_over_one_at_a_time']}× | "
        f"p99 ≤ {TARGET_CREATE_P99_MS:.0f} {'✔' if p['meets_target'] else '✘'} |"
    )


def markdown(r: dict[str, Any]) -> str:
    c, m, lists, s, load = (
        r["create_ticket"],
        r["metrics"],
        r["lists"],
        r["warnings_scan"],
        r["load"],
    )
    rd = r["repeat_detection"]
    h = c["heavy_caller_one_at_a_time"]

    def ok(flag: bool) -> str:
        return "✔" if flag else "✘"

    ref = m["baseline_reference_direct_sql"]["p50_ms"]
    lines = [
        f"# Ticket benchmark — {r['rows']:,} tickets on {r['database']} {r.get('server_version', '')}",
        "",
        f"Run {r['started']} (load average {r['load_average_at_start']:.1f} at start, "
        f"{r['load_average_at_end']:.1f} at end, 2 cores shared with other work: compare ratios, not absolutes). "
        f"Setup, not measured: bulk load {load['seconds']} s, VACUUM ANALYZE {load['vacuum_analyze_seconds']} s, "
        f"rollup rebuild {load['rollup_rebuild']['seconds']} s ({load['rollup_rebuild']['rows']} day×group rows); "
        f"tickets table {load['tickets_table_size']}.",
        "",
        "| measurement | p50 ms | p95 ms | p99 ms | baseline (same run) | ratio | target |",
        "|---|---|---|---|---|---|---|",
        *(_paced_row(p) for p in (c, *c["other_rates"])),
        f"| create_ticket at {c['target_rate_per_s']:.0f}/s, from the schedule (incl. client queueing) | "
        f"{c['latency_from_schedule']['p50_ms']} | {c['latency_from_schedule']['p95_ms']} | "
        f"{c['latency_from_schedule']['p99_ms']} | – | – | – |",
        f"| create_ticket one at a time: CPU per call {c['cpu_ms_per_create_one_at_a_time']} ms client + "
        f"{c['server_cpu_ms_per_create_one_at_a_time']} ms server, "
        f"{c['repeat_links_per_create_one_at_a_time']} repeat links each | "
        f"{c['baseline_one_at_a_time']['p50_ms']} | {c['baseline_one_at_a_time']['p95_ms']} | "
        f"{c['baseline_one_at_a_time']['p99_ms']} | – | – | – |",
        f"| create_ticket one at a time, heavy caller ({h['repeat_links_per_create']} repeat links each; CPU per call "
        f"{h['cpu_ms_per_create']} ms client + {h['server_cpu_ms_per_create']} ms server) | {h['latency']['p50_ms']} | "
        f"{h['latency']['p95_ms']} | {h['latency']['p99_ms']} | one at a time (above) | p50 "
        f"{round(h['latency']['p50_ms'] / c['baseline_one_at_a_time']['p50_ms'], 1)}× | – |",
        f"| repeat detection CPU ({rd['max_candidates']} district candidates): new caller / the load's most "
        f"frequent caller ({rd['busiest_caller']['matches']} matches) | {rd['new_caller']['cpu_ms_p50']} / "
        f"{rd['busiest_caller']['cpu_ms_p50']} | – | – | – | – | < 1.5 (200 candidates) "
        f"{ok(rd['new_caller']['cpu_ms_p50'] < 1.5)} |",
    ]
    for name, key in (
        ("whole table", "total"),
        ("by department", "by_department"),
        ("by category", "by_category"),
        ("by area", "by_area"),
    ):
        base = {
            "total": f"reference (direct SQL) {ref} | {m['ratio_reference_over_fast']}× faster",
            "by_department": f"reference {m['baseline_reference_by_department']['p50_ms']} | "
            f"{m['ratio_reference_over_fast_by_department']}× faster",
        }.get(key, "– | –")
        lines.append(
            f"| metrics, {name} | {m[key]['p50_ms']} | {m[key]['p95_ms']} | – | {base} | "
            f"≤ {m['target_ms']:.0f} {ok(m[key]['p50_ms'] <= m['target_ms'])} |"
        )
    lines.append(
        f"| metrics reference, whole table (direct SQL, baseline) | {ref} | "
        f"{m['baseline_reference_direct_sql']['p95_ms']} | – | – | – | – |"
    )
    get = lists["reference_get_ticket_by_no"]["p50_ms"]
    for name, v in lists.items():
        lines.append(
            f"| list: {name} | {v['p50_ms']} | {v['p95_ms']} | {v['p99_ms']} | get_ticket {get} | "
            f"{v['ratio_p50_to_reference']}× | – |"
        )
    lines += [
        f"| warnings scan, first ({s['first_scan']['open_tickets']} open, {s['first_scan']['raised']} raised, "
        f"{s['first_scan']['supervisions']} letters) | {s['first_scan']['seconds'] * 1000:.0f} | – | – | – | – | – |",
        f"| warnings scan, steady (nothing new) | {s['steady_scan']['seconds'] * 1000:.0f} | – | – | full-table "
        f"count {s['baseline_full_table_count_seconds'] * 1000:.0f} | {s['ratio_steady_scan_over_full_count']}× | – |",
        "",
        "Fast metrics agree with the reference: "
        + ", ".join(f"{k} {ok(v)}" for k, v in m["fast_path_agrees_with_reference"].items())
        + ".",
        "",
        "Figures of the loaded year: " + ", ".join(f"{k} {v}" for k, v in m["figures"].items()),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.tickets", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="tickets to bulk-load (default 1,000,000)"
    )
    parser.add_argument(
        "--rates",
        default="200,50",
        help="paced create_ticket rates per second, the target first (default 200,50)",
    )
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="how long to create tickets at each rate"
    )
    parser.add_argument("--repeat", type=int, default=50, help="repetitions of each list query")
    parser.add_argument(
        "--workers", type=int, default=4, help="client processes of the paced create runs"
    )
    parser.add_argument(
        "--only",
        choices=PARTS,
        action="append",
        help="run only this part (repeatable); the results files are written only for a full run",
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="folder for tickets.json and tickets.md"
    )
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    parts = frozenset(args.only or PARTS)
    report = asyncio.run(run(args.rows, rates, args.seconds, args.repeat, args.workers, parts))
    if parts != frozenset(PARTS):
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tickets.json").write_text(
        json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    (args.out / "tickets.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
