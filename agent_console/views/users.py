"""Account management (用户管理), for administrators."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent_console import keys
from agent_console.auth import list_users
from agent_console.errors import ConsoleError
from agent_console.roles import ROLE_LABELS, Role
from agent_console.routing import Call, RouteTable, render_page
from agent_console.schemas import Model, UserCreate, UserList, UserOut, UserUpdate
from agent_console.views.session import see_other

routes = RouteTable("users")
ADMINS = {Role.ADMIN}


class ActiveForm(Model):
    active: bool


@routes.api("GET", "/api/v1/users", summary="用户列表", roles=ADMINS, response=UserList)
async def users_list(call: Call[None]) -> UserList:
    async with call.db() as db:
        users = await list_users(db)
    return UserList(users=[UserOut.of(u) for u in users])


@routes.api(
    "POST",
    "/api/v1/users",
    summary="新建用户",
    roles=ADMINS,
    request=UserCreate,
    response=UserOut,
    status=201,
    errors=(409,),
)
async def users_create_api(call: Call[UserCreate]) -> UserOut:
    async with call.db() as db:
        user = await call.app[keys.ACCOUNTS].create_user(db, call.body, call.origin, call.now)
    return UserOut.of(user)


@routes.api(
    "PATCH",
    "/api/v1/users/{username}",
    summary="修改用户（角色、单位、网格、密码、启用）",
    roles=ADMINS,
    request=UserUpdate,
    response=UserOut,
    errors=(409,),
)
async def users_update_api(call: Call[UserUpdate]) -> UserOut:
    async with call.db() as db:
        user = await call.app[keys.ACCOUNTS].update_user(
            db, call.request.match_info["username"], call.body, call.origin, call.now
        )
    return UserOut.of(user)


async def _page(call: Call[Any], *, error: str | None = None, status: int = 200) -> web.Response:
    async with call.db() as db:
        users = await list_users(db)
    context = {
        "users": users,
        "roles": ROLE_LABELS,
        "error": error,
        "form": call.form if error else {},
        "created": call.request.query.get("created"),
        "invalid_fields": {d["field"] for d in call.invalid.details} if call.invalid else set(),
    }
    return render_page(call, "users.html", context, status=status)


@routes.page("GET", "/users", title="用户管理", roles=ADMINS, nav="用户管理", name="users_page")
async def users_page(call: Call[None]) -> web.Response:
    return await _page(call)


@routes.page(
    "POST",
    "/users",
    title="用户管理",
    roles=ADMINS,
    form=UserCreate,
    name="users_create",
    errors=(409, 422),
)
async def users_create(call: Call[UserCreate]) -> web.Response:
    if call.invalid is not None:
        return await _page(call, error=call.invalid.message, status=call.invalid.status)
    try:
        async with call.db() as db:
            user = await call.app[keys.ACCOUNTS].create_user(db, call.body, call.origin, call.now)
    except ConsoleError as exc:
        return await _page(call, error=exc.message, status=exc.status)
    return see_other(f"/users?created={user.username}")


@routes.page(
    "POST",
    "/users/{username}/active",
    title="启用或停用用户",
    roles=ADMINS,
    form=ActiveForm,
    name="users_set_active",
    errors=(404, 409, 422),
)
async def users_set_active(call: Call[ActiveForm]) -> web.Response:
    if call.invalid is not None:
        return await _page(call, error=call.invalid.message, status=call.invalid.status)
    try:
        async with call.db() as db:
            await call.app[keys.ACCOUNTS].update_user(
                db,
                call.request.match_info["username"],
                UserUpdate(active=call.body.active),
                call.origin,
                call.now,
            )
    except ConsoleError as exc:
        return await _page(call, error=exc.message, status=exc.status)
    return see_other("/users")
