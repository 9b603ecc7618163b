"""Reports on the ``seed_cockpit`` history: the weekly disclosure (JSON, printable page, XLSX) and the ticket
export (opens in openpyxl, phones masked per role, formula-like text escaped, a handler's own tickets only)."""

from __future__ import annotations

from io import BytesIO

import openpyxl
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console.models import AuditEntry
from agent_console.roles import Role
from agent_console.views.reports import safe_cell
from config import Settings
from tests.agent_console.harness import (
    Browser,
    Console,
    console_settings,
    start_console,
    stop_console,
)
from tests.agent_console.seed_cockpit import FORMULA_CONTENT, NOW, move_console_to, seed_cockpit


@pytest.fixture
async def seeded(console: Console) -> Console:
    console.numbers = await seed_cockpit(console.sessionmaker)  # type: ignore[attr-defined]
    move_console_to(console, NOW)
    return console


def workbook(body: bytes) -> list[list]:
    sheet = openpyxl.load_workbook(BytesIO(body)).active
    return [list(row) for row in sheet.iter_rows(values_only=True)]


async def download(b: Browser, path: str) -> tuple[bytes, dict]:
    async with b.http.get(b.url(path)) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("application/vnd.openxmlformats")
        assert resp.headers["Content-Disposition"].startswith("attachment; filename*=UTF-8''")
        return await resp.read(), dict(resp.headers)


async def xlsx(b: Browser, path: str) -> tuple[list[list], dict]:
    body, headers = await download(b, path)
    return workbook(body), headers


async def test_weekly_disclosure_ranks_departments(seeded: Console) -> None:
    """Week of Mon 03-10: zjj has T4 (signed in time, closed on time, satisfied); hbj has T5 (signed late, not
    closed, 不满意). T6 was never dispatched and is not listed."""
    leader = await seeded.logged_in("leader")
    data = await (await leader.request("GET", "/api/v1/reports/disclosure?week=2025-03-12")).json()
    assert (data["week_start"], data["week_end"]) == ("2025-03-10", "2025-03-16")
    rows = [
        (
            r["rank"],
            r["department"],
            r["received"],
            r["closed"],
            r["on_time_rate"],
            r["satisfaction_rate"],
        )
        for r in data["rows"]
    ]
    assert rows == [(1, "区住房和城乡建设局", 1, 1, 1.0, 1.0), (2, "区生态环境局", 1, 0, None, 0.0)]
    page = await (await leader.request("GET", "/reports/disclosure?week=2025-03-12")).text()
    assert "2025-03-10 至 2025-03-16" in page and "区住房和城乡建设局" in page and "100.0%" in page
    assert 'data-print id="print"' in page and "js/print.js" in page
    sheet, _ = await xlsx(leader, "/reports/disclosure.xlsx?week=2025-03-12")
    assert sheet[1] == [
        "排名",
        "承办单位",
        "受理量",
        "办结量",
        "办结率",
        "按期办结率",
        "满意率",
        "响应率",
        "综合得分",
    ]
    assert sheet[2][:4] == [1, "区住房和城乡建设局", 1, 1] and sheet[2][5] == 1.0
    assert sheet[3][:4] == [2, "区生态环境局", 1, 0] and sheet[3][5] is None
    default = await (await leader.request("GET", "/api/v1/reports/disclosure")).json()
    assert default["week_start"] == "2025-03-10"  # the last complete week before Wed 03-19
    assert (
        await (await seeded.logged_in("agent")).request("GET", "/reports/disclosure")
    ).status == 403


async def test_export_masks_phones_for_a_leader_and_escapes_formulas(seeded: Console) -> None:
    sheet, headers = await xlsx(await seeded.logged_in("leader"), "/reports/tickets.xlsx")
    header, rows = sheet[0], sheet[1:]
    assert headers["X-Export-Rows"] == "7" and len(rows) == 7
    phones = {r[header.index("工单号")]: r[header.index("来电号码")] for r in rows}
    numbers = seeded.numbers  # type: ignore[attr-defined]
    assert phones[numbers["T1"]] == "139****0001" and all("****" in p for p in phones.values())
    t7 = next(r for r in rows if r[0] == numbers["T7"])
    assert t7[header.index("诉求摘要")] == "'" + FORMULA_CONTENT
    assert t7[header.index("区县")] == "城西区" and t7[header.index("状态")] == "办结"
    raw = openpyxl.load_workbook(
        BytesIO((await download(await seeded.logged_in("leader"), "/reports/tickets.xlsx"))[0])
    ).active
    assert not any(
        c.data_type == "f" for row in raw.iter_rows() for c in row
    )  # no cell is a formula

    agent_sheet, _ = await xlsx(
        await seeded.logged_in("agent"), "/reports/tickets.xlsx?created_from=2025-03-19"
    )
    assert sorted(r[8] for r in agent_sheet[1:]) == [
        "13900000001",
        "13900000001",
        "13900000002",
    ]  # full numbers


async def test_export_gives_a_handler_only_its_department(seeded: Console) -> None:
    await seeded.add_user("hbj_handler", Role.HANDLER, department="hbj")
    handler = await seeded.logged_in("hbj_handler")
    sheet, _ = await xlsx(
        handler, "/reports/tickets.xlsx?department=zjj"
    )  # asking for another is ignored
    numbers = seeded.numbers  # type: ignore[attr-defined]
    assert sorted(r[0] for r in sheet[1:]) == sorted([numbers["T2"], numbers["T5"]])
    assert all(r[11] == "区生态环境局" for r in sheet[1:])


async def test_export_stops_at_the_row_limit(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    small = console_settings(settings)
    small = small.model_copy(
        update={"cockpit": small.cockpit.model_copy(update={"export_max_rows": 5})}
    )
    console = await start_console(small, sessionmaker)
    try:
        await seed_cockpit(console.sessionmaker)
        sheet, headers = await xlsx(await console.logged_in("admin"), "/reports/tickets.xlsx")
        assert len(sheet) == 6 and headers["X-Export-Truncated"] == "true"
    finally:
        await stop_console(console)


async def audit_rows(console: Console, action: str) -> list[AuditEntry]:
    async with console.sessionmaker() as db:
        return list((await db.scalars(select(AuditEntry).where(AuditEntry.action == action))).all())


async def test_every_export_is_audited_with_its_actor_filters_and_rows(seeded: Console) -> None:
    await seeded.add_user("hbj_handler", Role.HANDLER, department="hbj")
    handler = await seeded.logged_in("hbj_handler")
    _, headers = await xlsx(
        handler, "/reports/tickets.xlsx?department=zjj&phone=13900000001&created_from=2025-03-01"
    )
    [row] = await audit_rows(seeded, "export.tickets")
    assert (row.actor, row.ip) == ("hbj_handler", "127.0.0.1")
    assert row.target.startswith("工单导出-") and row.target.endswith(".xlsx")
    assert row.detail == {
        "role": "handler",
        "rows": int(headers["X-Export-Rows"]),
        "truncated": False,
        "filters": {"department": "hbj", "phone": "139****0001", "created_from": "2025-03-01"},
    }
    await xlsx(await seeded.logged_in("leader"), "/reports/disclosure.xlsx?week=2025-03-12")
    [disclosed] = await audit_rows(seeded, "export.disclosure")
    assert (disclosed.actor, disclosed.detail) == (
        "leader",
        {"role": "leader", "rows": 2, "week": "2025-03-10"},
    )


def test_formula_like_text_is_escaped() -> None:
    assert [
        safe_cell(v)
        for v in ("=1+1", "+86", "-3", "@SUM(A1)", "\tx", "正常", 5, None, "a\x00b\x1b")
    ] == ["'=1+1", "'+86", "'-3", "'@SUM(A1)", "'\tx", "正常", 5, None, "ab"]
