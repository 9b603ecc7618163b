"""Shared by the ticket-screen tests: a console with departments, a second department's handler, a call
control that records what the console asked of the telephony side, and small API helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console.calls import AgentState
from agent_console.desk.services import DeskServices, services_of
from agent_console.roles import Role
from config import Settings
from tests.agent_console.harness import (
    Browser,
    Console,
    console_settings,
    start_console,
    stop_console,
)
from tickets.dispatch_suggest import DispatchSuggester
from tickets.services import upsert_departments

DEPT_A = "市城市管理局"  # the harness's handler belongs here
DEPT_B = "市住房和城乡建设局"
DEPARTMENTS = [(DEPT_A, DEPT_A), (DEPT_B, DEPT_B), ("市生态环境局", "市生态环境局")]
PHONE = "13812345678"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64  # enough of a PNG for the attachment checks
SUBMISSION = {
    "channel": "web",
    "caller_phone": "13700001234",
    "content": "东湖路路灯连续三晚不亮，夜里行人不安全",
    "address": "城东区东湖路",
}  # a citizen's request on the public API


class RecordingCallControl:
    """Stands in for the AMI controller (wired only by `hotline run`): records each request."""

    def __init__(self) -> None:
        self.states: list[tuple[str, AgentState, str]] = []
        self.callbacks: list[str] = []

    async def set_agent_state(self, interface: str, state: AgentState, reason: str = "") -> None:
        self.states.append((interface, state, reason))

    async def start_callback(self, ticket_no: str) -> None:
        self.callbacks.append(ticket_no)


def recording_desk(settings: Settings, **wired: Any) -> DeskServices:
    """The ticket screens' services with a :class:`RecordingCallControl` for telephony, the dispatch suggester
    of the settings and ``wired`` (e.g. ``knowledge_ask``); for ``start_console(..., desk=...)``."""
    return DeskServices(
        call_control=RecordingCallControl(),
        suggester=DispatchSuggester.from_settings(settings),
        **wired,
    )


async def prepare(console: Console) -> RecordingCallControl:
    """Departments and ``handler_b`` in a console started with :func:`recording_desk`; its call control."""
    async with console.sessionmaker() as db:
        await upsert_departments(db, DEPARTMENTS)
    await console.add_user("handler_b", Role.HANDLER, department=DEPT_B)
    control = services_of(console.app).call_control
    assert isinstance(control, RecordingCallControl), (
        "start the console with desk=recording_desk(settings)"
    )
    return control


@pytest.fixture
async def desk(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> AsyncIterator[Console]:
    """The console with three departments, ``handler`` (市城市管理局) and ``handler_b`` (住建局); its data
    folder (attachments) is the test's tmp_path."""
    own = console_settings(settings.model_copy(update={"data_dir": str(tmp_path)}))
    c = await start_console(own, sessionmaker, desk=recording_desk(own))
    c.control = await prepare(c)  # type: ignore[attr-defined]
    yield c
    await stop_console(c)


def draft(**over: Any) -> dict[str, Any]:
    return {
        "channel": "phone",
        "caller_phone": PHONE,
        "caller_name": "孙女士",
        "district": "城东区",
        "address": "幸福路12号",
        "kind": "投诉",
        "content": "幸福小区门口垃圾堆积好几天没人清理，臭味很大",
    } | over


async def json_of(b: Browser, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    resp = await (b.write(method, path, body) if method != "GET" else b.request("GET", path))
    text = await resp.text()
    assert resp.status == status, f"{method} {path}: {resp.status} {text}"
    return await resp.json()


async def act(
    b: Browser, ticket: dict[str, Any], action: str, status: int = 200, **fields: Any
) -> dict[str, Any]:
    body = {"action": action, "expected_version": ticket["version"]} | fields
    return await json_of(
        b, "POST", f"/api/v1/console/tickets/{ticket['ticket_no']}/actions", body, status
    )


async def dispatched_ticket(
    console: Console, department: str = DEPT_A, **over: Any
) -> dict[str, Any]:
    """A ticket filed by the agent, reviewed and dispatched (直派) to ``department``."""
    agent = await console.logged_in("agent")
    dispatcher = await console.logged_in("dispatcher")
    t = await json_of(agent, "POST", "/api/v1/console/tickets", draft(**over), 201)
    t = await act(dispatcher, t, "review")
    return await act(dispatcher, t, "dispatch", lead_department=department, mode="direct")


async def upload(b: Browser, ticket_no: str, name: str, data: bytes) -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=name, content_type="application/octet-stream")
    return await b.request(
        "POST",
        f"/api/v1/console/tickets/{ticket_no}/attachments",
        data=form,
        headers={"X-CSRF-Token": await b.csrf()},
    )


async def submit(b: Browser, body: dict[str, Any], **headers: str) -> tuple[int, dict[str, Any]]:
    """POST a citizen's request to the public API: (status, JSON body)."""
    resp = await b.request("POST", "/api/v1/tickets", json=body, headers=headers)
    return resp.status, await resp.json()
