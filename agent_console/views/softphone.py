"""The browser softphone (浏览器软电话): the SIP account of the user's own extension (an agent's on the
workspace, a supervisor's on the 班长席 page, where a listen / whisper / barge rings it), and the administrators'
test phone (测试电话) that calls 12345 from the browser's microphone.

The accounts come from :data:`agent_console.softphone.SOFTPHONES` (by default a password issued for every fetch
through the switchboard); answers carry ``Cache-Control: no-store`` and the page keeps the password in memory only,
fetching a new one before ``expires_in_s`` (see :mod:`agent_console.softphone`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field

from agent_console.desk.services import settings_of
from agent_console.errors import NotFound, Unavailable
from agent_console.roles import Role
from agent_console.routing import Call, RouteTable, render_page
from agent_console.schemas import Model
from agent_console.softphone import SOFTPHONES, IssuedSoftphones, SipAccount
from agent_console.switchboard import switchboard_of

routes = RouteTable("softphone")
# agents on the workspace; 班长 and leaders on the supervisors' board, where listen / whisper / barge ring it
SOFTPHONE_USERS = frozenset({Role.AGENT, Role.ADMIN, Role.SUPERVISOR, Role.LEADER})
ADMINS = frozenset({Role.ADMIN})
NO_STORE = {"Cache-Control": "no-store"}
PBX_DOWN = "电话系统未运行或未开通浏览器软电话，请联系管理员"


class SipAccountOut(Model):
    extension: str = Field(description="分机号（SIP 用户名）")
    uri: str = Field(description="SIP 地址")
    password: str = Field(description="本次获取时签发的临时 SIP 密码，仅供浏览器注册使用，不显示")
    ws_url: str = Field(description="SIP over WebSocket 地址")
    display_name: str
    expires_in_s: int = Field(description="临时密码的有效秒数：到期前须重新获取并重新注册")
    wrap_up_s: int = Field(description="挂机后话后整理秒数（0：手动示闲）")


@routes.on_setup
def setup_softphones(app: web.Application) -> None:
    """Passwords issued through the app's switchboard unless ``create_app`` was given a directory."""
    if SOFTPHONES not in app:
        app[SOFTPHONES] = IssuedSoftphones(settings_of(app), switchboard_of(app))


def _answer(call: Call[Any], account: SipAccount | None) -> web.Response:
    if account is None:
        raise Unavailable(PBX_DOWN)
    out = SipAccountOut(
        extension=account.extension,
        uri=account.uri,
        password=account.password,
        ws_url=account.ws_url,
        display_name=account.display_name,
        expires_in_s=account.expires_in_s,
        wrap_up_s=settings_of(call.app).softphone.wrap_up_s,
    )
    return web.json_response(out.model_dump(mode="json"), headers=NO_STORE)


@routes.api(
    "GET",
    "/api/v1/console/softphone/account",
    summary="本人浏览器软电话分机的 SIP 账号（仅供注册，不显示）",
    roles=SOFTPHONE_USERS,
    response=SipAccountOut,
    errors=(404, 503),
)
async def softphone_account(call: Call[None]) -> web.Response:
    username = call.user.username
    if username not in settings_of(call.app).softphone.extensions:
        raise NotFound(f"未为账号 {username} 分配浏览器软电话分机")
    return _answer(call, await call.app[SOFTPHONES].agent_account(username))


@routes.api(
    "GET",
    "/api/v1/console/softphone/test-phone",
    summary="测试电话的 SIP 账号（管理员从浏览器拨打 12345）",
    roles=ADMINS,
    response=SipAccountOut,
    errors=(503,),
)
async def test_phone_account(call: Call[None]) -> web.Response:
    return _answer(call, await call.app[SOFTPHONES].test_phone_account())


@routes.page("GET", "/test-phone", title="测试电话", roles=ADMINS, nav="测试电话")
async def test_phone_page(call: Call[None]) -> web.Response:
    return render_page(call, "test_phone.html", {"number": "12345"})
