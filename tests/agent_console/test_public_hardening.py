"""The citizens' API under abuse: refused requests do not count, keys are bound to the phone, the client address
behind trusted proxies, bad bodies, control characters (on SQLite and PostgreSQL), Unicode digits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console.auth import Origin, record_audit
from agent_console.models import AuditEntry
from agent_console.public_limits import prune_public_records, run_public_pruning
from config import Settings
from tests.agent_console.harness import (
    Browser,
    Console,
    console_settings,
    start_console,
    stop_console,
)
from tests.agent_console.tickets_support import SUBMISSION, json_of, submit

WRONG_PHONE = "13900009999"


async def lookup(b: Browser, ticket_no: str, phone: str, **headers: str) -> int:
    return (
        await b.request("GET", f"/api/v1/tickets/{ticket_no}?phone={phone}", headers=headers)
    ).status


@pytest.fixture
async def behind_proxy(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Console]:
    """The console behind a reverse proxy on 127.0.0.1 (the test clients' default address)."""
    c = await start_console(
        console_settings(settings, trusted_proxies=("127.0.0.1", "10.0.0.0/8")),
        sessionmaker,
        seed=False,
    )
    yield c
    await stop_console(c)


# --- refused requests do not count ---------------------------------------------------------------------------


async def test_a_flood_of_refused_lookups_does_not_block_the_owner_after_the_window(
    desk: Console,
) -> None:
    limit = desk.settings.console.public_rate_per_minute
    owner = desk.browser("127.0.0.2")
    _, filed = await submit(owner, SUBMISSION)
    no = filed["ticket_no"]
    attackers = [desk.browser(f"127.0.1.{n}") for n in range(1, 2 * limit + 1)]
    statuses = [await lookup(a, no, WRONG_PHONE) for a in attackers]
    assert (
        statuses == [404] * limit + [429] * limit
    )  # the ticket number's limit, whatever the address
    desk.clock.advance(50)
    assert {await lookup(a, no, WRONG_PHONE) for a in attackers} == {
        429
    }  # still flooding, all refused
    desk.clock.advance(11)  # a minute after the requests that got through
    assert await lookup(owner, no, SUBMISSION["caller_phone"]) == 200


async def test_refused_submissions_do_not_count_against_the_phone(desk: Console) -> None:
    limit = desk.settings.console.public_rate_per_minute
    phone = "13700005555"
    flooders = [desk.browser(f"127.0.2.{n + 1}") for n in range(2 * limit)]

    async def flood(round_: str) -> list[int]:
        return [
            (await submit(f, SUBMISSION | {"caller_phone": phone, "content": f"{round_}{n}"}))[0]
            for n, f in enumerate(flooders)
        ]

    assert await flood("第一轮") == [201] * limit + [429] * limit
    desk.clock.advance(50)
    assert set(await flood("第二轮")) == {429}
    desk.clock.advance(11)
    status, _ = await submit(
        desk.browser("127.0.3.1"), SUBMISSION | {"caller_phone": phone, "content": "本人"}
    )
    assert status == 201


# --- idempotency keys are the phone's own -------------------------------------------------------------------


async def test_a_key_reused_with_another_phone_files_that_phones_own_ticket(desk: Console) -> None:
    citizen = desk.browser()
    key = {"Idempotency-Key": "shared-key-1"}
    _, first = await submit(citizen, SUBMISSION, **key)
    status, other = await submit(
        citizen, SUBMISSION | {"caller_phone": "13600001111", "content": "噪音扰民"}, **key
    )
    assert (
        status == 201 and other["duplicate"] is False and other["ticket_no"] != first["ticket_no"]
    )
    _, other_again = await submit(
        citizen, SUBMISSION | {"caller_phone": "136 0000 1111", "content": "重发"}, **key
    )
    _, first_again = await submit(citizen, SUBMISSION | {"content": "重发"}, **key)
    assert (other_again["ticket_no"], other_again["duplicate"]) == (other["ticket_no"], True)
    assert (first_again["ticket_no"], first_again["duplicate"]) == (first["ticket_no"], True)
    staff = await desk.logged_in("dispatcher")
    filed = await json_of(staff, "GET", f"/api/v1/console/tickets/{other['ticket_no']}")
    assert filed["content"] == "噪音扰民"


async def test_a_key_is_honoured_for_its_ttl_only(desk: Console) -> None:
    citizen = desk.browser()
    _, first = await submit(citizen, SUBMISSION, **{"Idempotency-Key": "k-ttl"})
    desk.clock.advance(23 * 3600)
    _, within = await submit(
        citizen, SUBMISSION | {"content": "重发"}, **{"Idempotency-Key": "k-ttl"}
    )
    desk.clock.advance(2 * 3600)
    status, after = await submit(
        citizen, SUBMISSION | {"content": "再发"}, **{"Idempotency-Key": "k-ttl"}
    )
    assert (
        within["ticket_no"] == first["ticket_no"]
        and status == 201
        and after["ticket_no"] != first["ticket_no"]
    )


# --- the client address ----------------------------------------------------------------------------------------


async def test_behind_a_trusted_proxy_the_limit_is_per_forwarded_client(
    behind_proxy: Console,
) -> None:
    limit = behind_proxy.settings.console.public_rate_per_minute
    proxy = behind_proxy.browser()  # 127.0.0.1, trusted
    for n in range(limit):
        status, _ = await submit(
            proxy,
            SUBMISSION | {"caller_phone": f"1370000{n:04d}"},
            **{"X-Forwarded-For": "203.0.113.7"},
        )
        assert status == 201
    # the client cannot escape by prepending an address; trusted hops on the right are skipped
    for forwarded in (
        "203.0.113.7",
        "198.51.100.1, 203.0.113.7",
        "198.51.100.1, 203.0.113.7, 10.1.2.3",
    ):
        status, _ = await submit(
            proxy, SUBMISSION | {"caller_phone": "13800000000"}, **{"X-Forwarded-For": forwarded}
        )
        assert status == 429, forwarded
    status, _ = await submit(
        proxy, SUBMISSION | {"caller_phone": "13800000000"}, **{"X-Forwarded-For": "203.0.113.8"}
    )
    assert status == 201  # another client behind the same proxy
    async with behind_proxy.sessionmaker() as db:
        addresses = set(
            (
                await db.execute(select(AuditEntry.ip).where(AuditEntry.action == "public.create"))
            ).scalars()
        )
    assert addresses == {"203.0.113.7", "203.0.113.8"}


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(behind_proxy: Console) -> None:
    limit = behind_proxy.settings.console.public_rate_per_minute
    direct = behind_proxy.browser("127.0.0.9")  # not a trusted proxy
    for n in range(limit):
        status, _ = await submit(
            direct,
            SUBMISSION | {"caller_phone": f"1370000{n:04d}"},
            **{"X-Forwarded-For": f"198.51.100.{n}"},
        )
        assert status == 201
    status, _ = await submit(
        direct,
        SUBMISSION | {"caller_phone": "13800000000"},
        **{"X-Forwarded-For": "198.51.100.200"},
    )
    assert status == 429


# --- retention -------------------------------------------------------------------------------------------------


async def test_old_public_records_are_pruned_and_others_kept(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    now = datetime(2025, 6, 1, 12, tzinfo=UTC)
    rows = [("public.create", 31), ("public.lookup", 29), ("public.idempotency", 40), ("login", 40)]
    async with sessionmaker() as db:
        for action, days in rows:
            await record_audit(
                db, Origin(None, "127.0.0.1", None), action, "x", now - timedelta(days=days)
            )
        await db.commit()
        assert await prune_public_records(db, now, 30) == 2
        kept = (
            (await db.execute(select(AuditEntry.action).order_by(AuditEntry.action)))
            .scalars()
            .all()
        )
    assert kept == ["login", "public.lookup"]


async def test_the_pruning_job_prunes_with_the_configured_retention(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    now = datetime(2025, 6, 1, 12, tzinfo=UTC)
    async with sessionmaker() as db:
        for days in (6, 8):
            await record_audit(
                db,
                Origin(None, "127.0.0.1", None),
                "public.lookup",
                "x",
                now - timedelta(days=days),
            )
        await db.commit()
    stop = asyncio.Event()

    def clock() -> datetime:  # one round: the job stops after the round that read the clock
        stop.set()
        return now

    week = settings.model_copy(
        update={"console": settings.console.model_copy(update={"public_audit_retention_days": 7})}
    )
    await run_public_pruning(sessionmaker, week, stop, clock)
    async with sessionmaker() as db:
        assert await db.scalar(select(func.count()).select_from(AuditEntry)) == 1


# --- bad bodies ----------------------------------------------------------------------------------------------


async def raw_post(b: Browser, body: bytes) -> tuple[int, dict[str, Any]]:
    resp = await b.request(
        "POST", "/api/v1/tickets", data=body, headers={"Content-Type": "application/json"}
    )
    return resp.status, await resp.json()


async def test_deeply_nested_json_is_a_clean_400(desk: Console) -> None:
    citizen = desk.browser()
    status, body = await raw_post(citizen, b"[" * 100_000 + b"]" * 100_000)
    assert status == 400 and body["error"]["code"] == "console.too_deeply_nested"
    status, body = await raw_post(citizen, b'{"content": ' + b"[" * 40 + b"]" * 40 + b"}")
    assert status == 400 and body["error"]["code"] == "console.too_deeply_nested"


async def test_a_body_over_the_limit_is_413_in_json(desk: Console) -> None:
    status, body = await raw_post(
        desk.browser(), b'{"content": "' + b"x" * (1024 * 1024 + 1) + b'"}'
    )
    assert status == 413 and body["error"]["code"] == "console.payload_too_large"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("content", "路灯\x00不亮"),
        ("content", "路灯\x1b[31m不亮"),
        ("caller_name", "张\t三"),
        ("address", "东湖路\n1号"),
        ("district", "城东区\x7f"),
    ],
)
async def test_control_characters_are_refused_on_every_database(
    desk: Console, field: str, value: str
) -> None:
    status, body = await submit(desk.browser(), SUBMISSION | {field: value})
    assert status == 422 and body["error"]["details"][0] == {
        "field": field,
        "code": "control_character",
        "message": body["error"]["details"][0]["message"],
    }
    assert "控制字符" in body["error"]["message"]
    listed = await json_of(await desk.logged_in("dispatcher"), "GET", "/api/v1/console/tickets")
    assert listed["tickets"] == []


async def test_multi_line_text_keeps_its_line_breaks(desk: Console) -> None:
    status, out = await submit(desk.browser(), SUBMISSION | {"content": "路灯不亮\r\n\t已经三天"})
    assert status == 201
    staff = await json_of(
        await desk.logged_in("dispatcher"), "GET", f"/api/v1/console/tickets/{out['ticket_no']}"
    )
    assert staff["content"] == "路灯不亮\r\n\t已经三天"


async def test_console_forms_refuse_control_characters(desk: Console) -> None:
    agent = await desk.logged_in("agent")
    resp = await agent.write(
        "POST",
        "/api/v1/console/tickets",
        SUBMISSION | {"channel": "phone", "content": "垃圾\x00堆积"},
    )
    assert (
        resp.status == 422
        and (await resp.json())["error"]["details"][0]["code"] == "control_character"
    )
    form = (
        {"csrf_token": await agent.csrf()}
        | SUBMISSION
        | {"channel": "phone", "caller_name": "孙\x00女士"}
    )
    page = await agent.request("POST", "/workspace/tickets", data=form)
    assert page.status == 422 and "控制字符" in await page.text()
    t = await json_of(
        agent, "POST", "/api/v1/console/tickets", SUBMISSION | {"channel": "phone"}, 201
    )
    dispatcher = await desk.logged_in("dispatcher")
    resp = await dispatcher.write(
        "POST",
        f"/api/v1/console/tickets/{t['ticket_no']}/actions",
        {"action": "review", "expected_version": t["version"], "note": "已审\x00核"},
    )
    assert (
        resp.status == 422
        and (await resp.json())["error"]["details"][0]["code"] == "control_character"
    )
    listed = await json_of(dispatcher, "GET", "/api/v1/console/tickets")
    assert [x["ticket_no"] for x in listed["tickets"]] == [t["ticket_no"]]


# --- Unicode digits --------------------------------------------------------------------------------------------


async def test_full_width_phone_is_the_same_caller(desk: Console) -> None:
    """Per-phone limits and look-ups see one number, however it was typed."""
    citizen = desk.browser()
    status, out = await submit(citizen, SUBMISSION | {"caller_phone": "１３７００００１２３４"})
    assert status == 201
    assert await lookup(citizen, out["ticket_no"], "13700001234") == 200
    status, again = await submit(citizen, SUBMISSION)
    assert (status, again["ticket_no"]) == (200, out["ticket_no"])
    status, body = await submit(citizen, SUBMISSION | {"caller_phone": "137" + "٠٠٠٠١٢٣٤"})
    assert status == 422 and body["error"]["details"][0]["field"] == "caller_phone"
