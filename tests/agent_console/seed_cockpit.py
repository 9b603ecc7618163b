"""A small, hand-checkable ticket history for the cockpit, report and export tests (imported, not a conftest).

``NOW`` is Wednesday 2025-03-19 15:00 in Shanghai; ``move_console_to(console, NOW)`` sets the console's clock.
The expected figures are derived by hand in the docstrings of the tests that use them.

T1 03-19 09:00  城东区 东岗街道    住房安居/物业服务  咨询       即办 (closed at intake)
T2 03-19 10:00  城东区 东岗街道    生态环境/噪声污染  投诉  hbj  dispatched 10:05, never signed
T3 03-19 11:00  城北区 北站街道    住房安居/物业服务  求助       accepted only; same caller as T1 (重复件)
T4 03-10 10:00  城东区 拱星墩街道  交通出行/公交地铁  建议  zjj  signed in time, replied, 回访满意 → 办结
T5 03-11 10:00  城南区 南河街道    生态环境/噪声污染  投诉  hbj  signed late, replied, 回访不满意 → 二次派单 03-13
T6 03-12 10:00  (no place)         (no category)  咨询       accepted only, past its 3-working-day limit
T7 02-20 10:00  城西区 西湖街道    住房安居/物业服务  咨询       即办, last month; content looks like a formula
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.agent_console.harness import Console
from tests.settings_support import SETTINGS
from tickets.services import (
    Actor,
    TicketDraft,
    apply,
    close_instant,
    create_ticket,
    get_ticket,
    record_callback,
    upsert_departments,
)
from tickets.warnings import scan_warnings

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2025, 3, 19, 15, 0, tzinfo=TZ)
DEPARTMENTS = [("cgj", "区城市管理局"), ("zjj", "区住房和城乡建设局"), ("hbj", "区生态环境局")]
AGENT = Actor("王话务", "agent")
DISPATCHER = Actor("李派单", "dispatcher")
SYSTEM = Actor("回访机器人", "system")
HBJ = Actor("钱承办", "handler", department="hbj")
ZJJ = Actor("张承办", "handler", department="zjj")
FORMULA_CONTENT = '=HYPERLINK("http://evil.example","点我") 小区路灯不亮'


def at(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, month, day, hour, minute, tzinfo=TZ)


def draft(content: str, phone: str, **fields: Any) -> TicketDraft:
    return TicketDraft(channel="phone", caller_phone=phone, content=content, **fields)


async def _step(
    db: AsyncSession, ticket_no: str, action: str, actor: Actor, now: datetime, **kw: Any
) -> None:
    version = (await get_ticket(db, ticket_no)).version
    await apply(
        db, ticket_no, action, actor, expected_version=version, now=now, settings=SETTINGS, **kw
    )


async def seed_cockpit(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    """Write T1…T7 (see the module docstring) and run the warning scan at NOW; returns ``{"T1": ticket_no, …}``."""
    no: dict[str, str] = {}
    async with sessionmaker() as db:
        await upsert_departments(db, DEPARTMENTS)
        east = {"district": "城东区", "street": "东岗街道"}
        t1 = await close_instant(
            db,
            draft(
                "小区电梯经常故障，物业维修不及时",
                "13900000001",
                category="住房安居/物业服务",
                kind="咨询",
                caller_name="赵先生",
                **east,
            ),
            "已告知物业报修电话",
            AGENT,
            now=at(3, 19, 9),
            settings=SETTINGS,
        )
        no["T1"] = t1.ticket_no
        t2 = await create_ticket(
            db,
            draft(
                "夜间施工噪音扰民影响休息",
                "13900000002",
                category="生态环境/噪声污染",
                kind="投诉",
                **east,
            ),
            AGENT,
            now=at(3, 19, 10),
            settings=SETTINGS,
        )
        no["T2"] = t2.ticket_no
        await _step(db, no["T2"], "review", DISPATCHER, at(3, 19, 10, 2))
        await _step(db, no["T2"], "dispatch", DISPATCHER, at(3, 19, 10, 5), lead_department="hbj")
        t3 = await create_ticket(
            db,
            draft(
                "电梯故障被困，物业不管",
                "13900000001",
                category="住房安居/物业服务",
                kind="求助",
                district="城北区",
                street="北站街道",
            ),
            AGENT,
            now=at(3, 19, 11),
            settings=SETTINGS,
        )
        no["T3"] = t3.ticket_no
        t4 = await create_ticket(
            db,
            draft(
                "公交站牌损坏需要维修",
                "13900000004",
                category="交通出行/公交地铁",
                kind="建议",
                district="城东区",
                street="拱星墩街道",
            ),
            AGENT,
            now=at(3, 10, 10),
            settings=SETTINGS,
        )
        no["T4"] = t4.ticket_no
        for action, actor, when, kw in (
            ("review", DISPATCHER, at(3, 10, 10, 5), {}),
            ("dispatch", DISPATCHER, at(3, 10, 10, 10), {"lead_department": "zjj"}),
            ("sign", ZJJ, at(3, 10, 10, 30), {}),
            ("start", ZJJ, at(3, 10, 10, 40), {}),
            ("reply", ZJJ, at(3, 11, 10), {"reply": "已更换站牌"}),
            ("verify", DISPATCHER, at(3, 11, 11), {}),
        ):
            await _step(db, no["T4"], action, actor, when, **kw)
        await record_callback(
            db, no["T4"], "satisfied", SYSTEM, now=at(3, 11, 14), settings=SETTINGS
        )
        t5 = await create_ticket(
            db,
            draft(
                "工地夜间施工噪音太大",
                "13900000005",
                category="生态环境/噪声污染",
                kind="投诉",
                district="城南区",
                street="南河街道",
            ),
            AGENT,
            now=at(3, 11, 10),
            settings=SETTINGS,
        )
        no["T5"] = t5.ticket_no
        for action, actor, when, kw in (
            ("review", DISPATCHER, at(3, 11, 10, 5), {}),
            ("dispatch", DISPATCHER, at(3, 11, 10, 10), {"lead_department": "hbj"}),
            ("sign", HBJ, at(3, 12, 10), {}),
            ("start", HBJ, at(3, 12, 10, 10), {}),
            ("reply", HBJ, at(3, 12, 11), {"reply": "已责令停工"}),
            ("verify", DISPATCHER, at(3, 12, 14), {}),
        ):
            await _step(db, no["T5"], action, actor, when, **kw)
        await record_callback(
            db, no["T5"], "unsatisfied", SYSTEM, now=at(3, 13, 10), settings=SETTINGS
        )
        t6 = await create_ticket(
            db,
            draft("咨询社保卡办理流程", "13900000006", kind="咨询"),
            AGENT,
            now=at(3, 12, 10),
            settings=SETTINGS,
        )
        no["T6"] = t6.ticket_no
        t7 = await close_instant(
            db,
            draft(
                FORMULA_CONTENT,
                "13900000007",
                category="住房安居/物业服务",
                kind="咨询",
                district="城西区",
                street="西湖街道",
            ),
            "已转告",
            AGENT,
            now=at(2, 20, 10),
            settings=SETTINGS,
        )
        no["T7"] = t7.ticket_no
        await scan_warnings(db, now=NOW, settings=SETTINGS)
    return no


def move_console_to(console: Console, when: datetime) -> None:
    """Shift the console's clock so that it reads ``when`` now (and runs on from there)."""
    console.clock.offset = timedelta()
    console.clock.advance((when - console.clock()).total_seconds())
