"""Account management: API, admin page form, XSS-inert rendering, and the `hotline users` command."""

from __future__ import annotations

import argparse
import asyncio
import io
import sys

import pytest
from sqlalchemy import select

from agent_console.models import AuditEntry, User
from config import Settings
from tests.agent_console.harness import Console, console_settings, password_of

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


async def test_admin_creates_lists_and_updates_users(console: Console) -> None:
    admin = await console.logged_in("admin")
    created = await admin.write(
        "POST",
        "/api/v1/users",
        {
            "username": "Wang.Fang",
            "display_name": "王芳",
            "role": "handler",
            "department": "市住建局",
            "password": "wang-fang-pass",
        },
    )
    assert created.status == 201
    body = await created.json()
    assert (
        body["username"] == "wang.fang"
        and body["role_label"] == "承办人"
        and "password" not in str(body)
    )
    again = await admin.write(
        "POST",
        "/api/v1/users",
        {
            "username": "wang.fang",
            "display_name": "王芳",
            "role": "agent",
            "password": "wang-fang-pass",
        },
    )
    assert (
        again.status == 409
        and (await again.json())["error"]["message"] == "用户名 wang.fang 已存在"
    )
    listed = await (await admin.request("GET", "/api/v1/users")).json()
    assert "wang.fang" in [u["username"] for u in listed["users"]]
    moved = await admin.write("PATCH", "/api/v1/users/wang.fang", {"department": "市水务局"})
    assert (await moved.json())["department"] == "市水务局"
    missing = await admin.write("PATCH", "/api/v1/users/nobody", {"active": False})
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "console.not_found"


async def test_handler_needs_a_department_and_grid_worker_a_grid(console: Console) -> None:
    admin = await console.logged_in("admin")
    for role in ("handler", "grid"):
        resp = await admin.write(
            "POST",
            "/api/v1/users",
            {
                "username": f"no-{role}",
                "display_name": "某人",
                "role": role,
                "password": "long-enough-pw",
            },
        )
        assert resp.status == 422
        assert (await resp.json())["error"]["code"] == "console.invalid_input"


async def test_bad_json_is_a_400_in_chinese(console: Console) -> None:
    admin = await console.logged_in("admin")
    resp = await admin.request(
        "POST",
        "/api/v1/users",
        data="{not json",
        headers={"X-CSRF-Token": await admin.csrf(), "Content-Type": "application/json"},
    )
    assert resp.status == 400
    assert (await resp.json())["error"] == {
        "code": "console.bad_request",
        "message": "请求体不是有效的 JSON",
    }


async def test_admin_page_form_creates_a_user_and_keeps_input_on_error(console: Console) -> None:
    admin = await console.logged_in("admin")
    csrf = await admin.csrf()
    bad = await admin.request(
        "POST",
        "/users",
        data={
            "csrf_token": csrf,
            "username": "li.si",
            "display_name": "李四",
            "role": "grid",
            "grid": "",
            "password": "li-si-password",
        },
    )
    assert bad.status == 422
    html = await bad.text()
    assert "网格员必须指定网格" in html and 'value="李四"' in html and "li-si-password" not in html
    ok = await admin.request(
        "POST",
        "/users",
        data={
            "csrf_token": csrf,
            "username": "li.si",
            "display_name": "李四",
            "role": "grid",
            "grid": "城关网格",
            "password": "li-si-password",
        },
    )
    assert ok.status == 303 and ok.headers["Location"] == "/users?created=li.si"
    page = await (await admin.request("GET", "/users?created=li.si")).text()
    assert "已创建用户 li.si" in page and "城关网格" in page


async def test_display_name_with_markup_renders_inert(console: Console) -> None:
    admin = await console.logged_in("admin")
    resp = await admin.write(
        "POST",
        "/api/v1/users",
        {
            "username": "mallory",
            "display_name": XSS,
            "role": "agent",
            "password": password_of("mallory"),
        },
    )
    assert resp.status == 201
    victim_pages = [
        await (await admin.request("GET", "/users")).text(),
        await (await (await console.logged_in("mallory")).request("GET", "/")).text(),
    ]
    for html in victim_pages:
        assert "<script>alert" not in html and "<img src=x" not in html
        assert (
            "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"
            in html
        )


def run_command(settings: Settings, argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    from hotline.cli import build_parser

    args: argparse.Namespace = build_parser().parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = io.StringIO(stdin), out, err
    try:
        code = args.handler(settings, args)
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def db_settings(settings: Settings, engine) -> Settings:  # type: ignore[no-untyped-def]
    url = engine.url.render_as_string(hide_password=False)
    s = console_settings(settings)
    return s.model_copy(update={"database": s.database.model_copy(update={"url": url})})


async def test_users_add_and_list_commands(db_settings: Settings, sessionmaker) -> None:  # type: ignore[no-untyped-def]
    def run(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
        return run_command(db_settings, argv, stdin)

    code, out, _ = await asyncio.to_thread(
        run,
        [
            "users",
            "add",
            "zhao",
            "--role",
            "handler",
            "--department",
            "区城管局",
            "--display-name",
            "赵六",
            "--password-stdin",
        ],
        "zhao-password-1\n",
    )
    assert code == 0 and "已创建 承办人 zhao（赵六）" in out
    code, _, err = await asyncio.to_thread(
        run, ["users", "add", "zhao", "--role", "agent", "--password-stdin"], "zhao-password-1\n"
    )
    assert code == 1 and "已存在" in err
    code, _, err = await asyncio.to_thread(
        run, ["users", "add", "qian", "--role", "grid", "--password-stdin"], "qian-password-1\n"
    )
    assert code == 1 and "网格员必须指定网格" in err
    code, _, err = await asyncio.to_thread(
        run, ["users", "add", "sun", "--role", "agent", "--password-stdin"], "short\n"
    )
    assert code == 1 and "至少需要" in err
    code, out, _ = await asyncio.to_thread(run, ["users", "list"])
    assert code == 0 and out.splitlines() == ["zhao\t赵六\t承办人\t区城管局"]
    async with sessionmaker() as db:
        user = (await db.execute(select(User).where(User.username == "zhao"))).scalar_one()
        audit = (await db.execute(select(AuditEntry))).scalars().one()
    assert (
        user.password_hash.startswith("$argon2id$") and "zhao-password-1" not in user.password_hash
    )
    assert (audit.actor, audit.action, audit.target) == (None, "user.create", "zhao")
