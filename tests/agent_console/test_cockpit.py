"""The cockpit's panels on the hand-checked history of ``seed_cockpit`` (NOW = Wed 2025-03-19 15:00)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console.cockpit_panels import PANELS, TtlCache
from agent_console.geo import LayoutError, layout_path, load_layout
from agent_console.views.cockpit import (
    BOARD,
    COCKPIT,
    AgentCounts,
    CentreQueue,
    PbxQueue,
    QueueSnapshot,
    WaitingCaller,
    centre_of,
    snapshot_of,
)
from config import Settings, load_settings
from ivr.state import Call, HotlineState, Member
from tests.agent_console.harness import (
    Browser,
    Console,
    console_settings,
    start_console,
    stop_console,
)
from tests.agent_console.seed_cockpit import AGENT, NOW, draft, move_console_to, seed_cockpit
from tickets.services import create_ticket


@pytest.fixture
async def leader(console: Console) -> Browser:
    await seed_cockpit(console.sessionmaker)
    move_console_to(console, NOW)
    return await console.logged_in("leader")


async def get(b: Browser, path: str) -> dict:
    resp = await b.request("GET", path)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_today_counts(leader: Browser) -> None:
    """Today T1 (即办), T2, T3 were received: 3, 1 instant, 1 closed. Open now: T2, T3, T5, T6; of these only
    T6 (3 working days from Wed 03-12 → Mon 03-17) is past its deadline (T5's restarted at the 二次派单)."""
    today = await get(leader, "/api/v1/cockpit/today")
    assert today == {
        "day": "2025-03-19",
        "received": 3,
        "instant": 1,
        "closed": 1,
        "instant_rate": 0.3333,
        "open": 4,
        "overdue": 1,
    }


async def test_trend_lists_thirty_days_of_received_and_closed(leader: Browser) -> None:
    trend = await get(leader, "/api/v1/cockpit/trend")
    days = {d["day"]: (d["received"], d["closed"]) for d in trend["days"]}
    assert len(days) == 30 and min(days) == "2025-02-18" and max(days) == "2025-03-19"
    assert {d: v for d, v in days.items() if v != (0, 0)} == {
        "2025-02-20": (1, 1),
        "2025-03-10": (1, 1),
        "2025-03-11": (1, 0),
        "2025-03-12": (1, 0),
        "2025-03-19": (3, 1),
    }


async def test_category_distribution_this_month(leader: Browser) -> None:
    """March: 住房安居 T1 T3 (T1 closed), 生态环境 T2 T5, 交通出行 T4 (closed), unclassified T6; T7 is February."""
    cats = await get(leader, "/api/v1/cockpit/categories?period=month")
    got = {c["name"]: (c["received"], c["closed"]) for c in cats["categories"]}
    assert got == {"住房安居": (2, 1), "生态环境": (2, 0), "交通出行": (1, 1), "（未分类）": (1, 0)}
    assert cats["span"]["label"] == "本月"


async def test_department_ranking_by_the_three_rates(leader: Browser) -> None:
    """zjj (T4): signed in time, closed, satisfied → 1, 1, 1. hbj (T2, T5): T2 unsigned past its sign-for time,
    T5 unsigned since its 二次派单 → response 0/2; nothing closed → 0/2; one 不满意 answer → 0/1."""
    ranking = await get(leader, "/api/v1/cockpit/departments?period=month")
    rows = [
        (
            d["code"],
            d["name"],
            d["received"],
            d["response_rate"],
            d["closure_rate"],
            d["satisfaction_rate"],
            d["composite"],
        )
        for d in ranking["departments"]
    ]
    assert rows == [
        ("zjj", "区住房和城乡建设局", 1, 1.0, 1.0, 1.0, 1.0),
        ("hbj", "区生态环境局", 2, 0.0, 0.0, 0.0, 0.0),
    ]


async def test_heat_map_counts_by_district_and_street(leader: Browser) -> None:
    heat = await get(leader, "/api/v1/cockpit/heatmap?period=month")
    assert heat["city"] == "江城市（示例）" and heat["unplaced"] == 1  # T6 has no district
    districts = {d["name"]: d for d in heat["districts"]}
    assert {n: d["tickets"] for n, d in districts.items() if d["tickets"]} == {
        "城东区": 3,
        "城北区": 1,
        "城南区": 1,
    }
    east = {s["name"]: s["tickets"] for s in districts["城东区"]["streets"] if s["tickets"]}
    assert east == {"东岗街道": 2, "拱星墩街道": 1}
    cells = [tuple(s["cell"]) for d in heat["districts"] for s in d["streets"]]
    assert len(cells) == len(set(cells)) and all(
        0 <= x < heat["columns"] and 0 <= y < heat["rows"] for x, y in cells
    )
    last_30 = await get(leader, "/api/v1/cockpit/heatmap?period=30d")
    assert {d["name"]: d["tickets"] for d in last_30["districts"]}[
        "城西区"
    ] == 1  # T7 (02-20) is within 30 days


async def test_hot_topics_and_frequent_problems(leader: Browser) -> None:
    """Last 7 days: T1, T2, T3. T1 and T3 both ask about a broken lift (电梯故障, in two districts); T2 alone
    is no hot topic."""
    hot = await get(leader, "/api/v1/cockpit/hot-topics")
    assert hot["tickets_read"] == 3
    [topic] = hot["topics"]
    assert topic["text"] in {"小区电梯经常故障，物业维修不及时", "电梯故障被困，物业不管"}
    assert (topic["tickets"], topic["weight"], topic["category"]) == (2, 1.0, "住房安居/物业服务")
    assert topic["district"] in {"城东区", "城北区"}
    problems = await get(leader, "/api/v1/cockpit/frequent-problems")
    got = {
        p["category"]: (p["tickets"], p["repeats"], p["repeat_rate"]) for p in problems["problems"]
    }
    assert got == {
        "住房安居/物业服务": (2, 1, 0.5),
        "生态环境/噪声污染": (2, 0, 0.0),
        "交通出行/公交地铁": (1, 0, 0.0),
    }
    noise = next(p for p in problems["problems"] if p["category"] == "生态环境/噪声污染")
    assert [t["tickets"] for t in noise["topics"]] == [2] and "噪音" in noise["topics"][0]["text"]


async def test_warnings_counts_and_list(leader: Browser) -> None:
    """Red: T2 and T5 not signed in time, T5 回访不满意, T6 past its deadline; yellow: T5 has 4 of its 37.5
    working hours left (less than a quarter)."""
    warnings = await get(leader, "/api/v1/cockpit/warnings")
    assert (warnings["red"], warnings["yellow"]) == (4, 1)
    levels = [w["level"] for w in warnings["items"]]
    assert levels == ["red"] * 4 + ["yellow"]
    reasons = {(w["reason"], w["department"]) for w in warnings["items"]}
    assert ("sign_for_deadline", "区生态环境局") in reasons and (
        "handling_deadline",
        None,
    ) in reasons


async def test_live_queue_snapshot_is_kept_for_new_pages(console: Console) -> None:
    leader = await console.logged_in("leader")
    empty = await get(leader, "/api/v1/cockpit/queue")
    assert empty["at"] is None and empty["waiting"] == []
    state = HotlineState("hotline")
    now = datetime(2025, 3, 19, 7, 0, tzinfo=UTC)
    caller = Call(
        "1.1",
        "1.1",
        "PJSIP/trunk-1",
        "13812345678",
        "12345",
        now - timedelta(seconds=50),
        queue="hotline",
        queue_joined_at=now - timedelta(seconds=42),
        menu="2",
    )
    bot = Call("1.2", "1.2", "PJSIP/trunk-2", "13987654321", "12345", now, bot_uuid="b-1")
    state.calls = {c.uniqueid: c for c in (caller, bot)}
    state.members = {
        "PJSIP/6001": Member("PJSIP/6001", "坐席1", "PJSIP/6001", 1, False, 1, False),
        "PJSIP/6002": Member("PJSIP/6002", "坐席2", "PJSIP/6002", 1, False, 2, True),
        "PJSIP/6003": Member("PJSIP/6003", "坐席3", "PJSIP/6003", 1, True, 1, False),
    }
    snapshot = snapshot_of(state, now)
    assert snapshot.waiting[0].caller == "138****5678" and snapshot.waiting[0].wait_s == 42.0
    assert (
        snapshot.agents.available,
        snapshot.agents.busy,
        snapshot.agents.paused,
        snapshot.bot_calls,
    ) == (1, 1, 1, 1)
    assert (
        console.hub.publish("queue", snapshot.model_dump(mode="json")) == 1
    )  # the cockpit's own listener
    async with asyncio.timeout(2):  # the listener stores it on its next turn of the event loop
        while (latest := await get(leader, "/api/v1/cockpit/queue"))["at"] is None:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    centre = CentreQueue.model_validate(latest)  # one PBX: the centre is its snapshot
    assert centre.model_dump(exclude={"pbxes"}) == snapshot.model_dump(exclude={"pbx"})
    [row] = centre.pbxes
    assert (
        row.online and QueueSnapshot(**row.model_dump(exclude={"online", "silent_s"})) == snapshot
    )


def pbx_snapshot(pbx: str, at: datetime, waits: list[float], available: int) -> QueueSnapshot:
    waiting = [
        WaitingCaller(position=i, caller="138****5678", wait_s=w, pbx=pbx)
        for i, w in enumerate(waits, start=1)
    ]
    return QueueSnapshot(
        pbx=pbx,
        at=at,
        waiting=waiting,
        longest_wait_s=max(waits, default=0.0),
        agents=AgentCounts(available=available, busy=2),
        bot_calls=1,
    )


async def test_the_queue_of_two_pbxes_is_summed_and_a_silent_one_drops_out(
    console: Console,
) -> None:
    leader = await console.logged_in("leader")
    board = console.app[BOARD]
    seconds = [1000.0]
    board.clock = lambda: seconds[0]
    at = datetime(2025, 3, 19, 7, 0, tzinfo=UTC)
    for snapshot in (pbx_snapshot("a", at, [30.0], 1), pbx_snapshot("b", at, [50.0, 10.0], 3)):
        console.hub.publish("queue", snapshot.model_dump(mode="json"))
    async with asyncio.timeout(2):  # the listener stores them on its next turns of the event loop
        while len((await get(leader, "/api/v1/cockpit/queue"))["pbxes"]) < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    centre = CentreQueue.model_validate(await get(leader, "/api/v1/cockpit/queue"))
    assert [(w.pbx, w.wait_s) for w in centre.waiting] == [("b", 50.0), ("a", 30.0), ("b", 10.0)]
    assert (centre.longest_wait_s, centre.agents.available, centre.agents.busy) == (50.0, 4, 4)
    assert centre.bot_calls == 2 and [(p.pbx, p.online) for p in centre.pbxes] == [
        ("a", True),
        ("b", True),
    ]

    seconds[0] += console.settings.cockpit.queue_stale_s / 2  # a reports again, b stays silent
    console.hub.publish("queue", pbx_snapshot("a", at, [45.0], 2).model_dump(mode="json"))
    seconds[0] += console.settings.cockpit.queue_stale_s / 2
    async with asyncio.timeout(2):
        while (await get(leader, "/api/v1/cockpit/queue"))["agents"]["available"] != 2:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    centre = CentreQueue.model_validate(await get(leader, "/api/v1/cockpit/queue"))
    assert [(w.pbx, w.wait_s) for w in centre.waiting] == [("a", 45.0)]
    assert (centre.longest_wait_s, centre.agents.busy, centre.bot_calls) == (45.0, 2, 1)
    assert [(p.pbx, p.online) for p in centre.pbxes] == [("a", True), ("b", False)]


def test_a_member_in_the_queues_of_two_pbxes_counts_once_in_the_centre() -> None:
    """A leader on duty added by the controllers of PBX a and b, an agent logged into both (on a call on b): the
    centre counts each once; a snapshot of an older controller (no members) adds its counts as they are."""
    now = datetime(2025, 3, 19, 7, 0, tzinfo=UTC)
    state_a, state_b = HotlineState("hotline"), HotlineState("hotline")
    for state in (state_a, state_b):
        state.members = {
            "PJSIP/6009": Member("PJSIP/6009", "李明（区长）", "PJSIP/6009", 0, False, 1, False),
            "PJSIP/6001": Member("PJSIP/6001", "坐席1", "PJSIP/6001", 1, False, 1, False),
        }
        state.set_leaders([("PJSIP/6009", "李明", "leader")])
    state_b.members["PJSIP/6001"] = Member("PJSIP/6001", "坐席1", "PJSIP/6001", 1, False, 2, True)
    state_b.members["PJSIP/6002"] = Member("PJSIP/6002", "坐席2", "PJSIP/6002", 1, False, 1, False)
    old = pbx_snapshot("c", now, [], 1)
    snapshots = [snapshot_of(state_a, now, "a"), snapshot_of(state_b, now, "b"), old]
    centre = centre_of(PbxQueue(**dict(s), online=True, silent_s=0.0) for s in snapshots)
    assert centre.members == {
        "PJSIP/6009": "leader",
        "PJSIP/6001": "busy",
        "PJSIP/6002": "available",
    }
    assert (centre.agents.available, centre.agents.busy) == (1 + 1, 1 + 2)  # + c's own counts
    assert sum(centre.agents.model_dump().values()) == 2 + 3


async def test_only_leaders_admins_and_dispatchers_see_the_cockpit(console: Console) -> None:
    for role, allowed in (
        ("leader", True),
        ("admin", True),
        ("dispatcher", True),
        ("agent", False),
        ("handler", False),
        ("grid", False),
    ):
        b = await console.logged_in(role)
        page = await b.request("GET", "/cockpit")
        assert (page.status == 200) is allowed, role
        assert ((await b.request("GET", "/api/v1/cockpit/today")).status == 200) is allowed, role
        home = await (await b.request("GET", "/")).text()
        assert ('href="/cockpit"' in home) is allowed, role
    hub = console.hub
    assert hub.may_subscribe(type("U", (), {"role": "leader", "username": "l"})(), "queue")
    assert not hub.may_subscribe(type("U", (), {"role": "handler", "username": "h"})(), "queue")


async def test_cache_serves_the_stale_value_while_it_refreshes() -> None:
    now = [0.0]
    refreshed = asyncio.Event()
    values = iter([1, 2])

    async def compute() -> int:
        value = next(values)
        if value == 2:
            refreshed.set()
        return value

    cache = TtlCache(60, clock=lambda: now[0])
    assert await cache.get("k", compute) == 1
    assert await cache.get("k", compute) == 1  # fresh: not recomputed
    now[0] = 61.0
    assert await cache.get("k", compute) == 1  # stale: served at once, recomputed behind
    async with asyncio.timeout(2):
        await refreshed.wait()
    assert await cache.get("k", compute) == 2
    await cache.close()


async def test_the_warmer_computes_every_panel_before_a_leader_asks_and_keeps_today_fresh(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """With ``warm_up`` the console computes every panel and period in the background: a leader's first request
    finds them computed, and today's counts follow new tickets within ``live_ttl_s`` without anyone asking."""
    await seed_cockpit(sessionmaker)
    live = settings.model_copy(
        update={"cockpit": settings.cockpit.model_copy(update={"live_ttl_s": 1})}
    )
    console = await start_console(console_settings(live, warm_cockpit=True), sessionmaker)
    try:
        move_console_to(console, NOW)
        cockpit = console.app[COCKPIT]
        async with asyncio.timeout(20):
            await cockpit.next_round()
            await cockpit.next_round()  # one whole round at NOW
        assert all(
            cockpit.is_cached(name, console.clock(), period)
            for name, p in PANELS.items()
            for period in p.periods
        )
        leader = await console.logged_in("leader")
        assert (await get(leader, "/api/v1/cockpit/today"))["received"] == 3
        async with sessionmaker() as db:
            await create_ticket(
                db,
                draft("东岗街道路灯不亮", "13900001111", kind="求助"),
                AGENT,
                now=NOW,
                settings=settings,
            )
        async with asyncio.timeout(20):
            while (await get(leader, "/api/v1/cockpit/today"))["received"] != 4:
                await cockpit.next_round()
    finally:
        await stop_console(console)


def test_a_city_layout_is_checked_when_loaded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    shipped = json.loads(layout_path(load_settings()).read_text(encoding="utf-8"))
    assert load_layout(layout_path(load_settings())).city == shipped["city"]
    clash = shipped | {
        "districts": [
            *shipped["districts"],
            {"name": "新区", "streets": [{"name": "甲街道", "cell": [2, 0]}]},
        ]
    }
    bad = tmp_path / "districts.json"
    bad.write_text(json.dumps(clash, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(LayoutError, match="占用同一格子"):
        load_layout(bad)
    with pytest.raises(LayoutError, match="找不到"):
        load_layout(tmp_path / "missing.json")
