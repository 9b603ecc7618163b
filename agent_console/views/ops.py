"""Machine endpoints: health, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

import asyncio

from aiohttp import web
from pydantic import BaseModel, ConfigDict
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from agent_console import keys
from agent_console.errors import Unauthenticated
from agent_console.routing import Call, RouteTable, json_response
from agent_console.schemas import Health
from agent_console.security import bearer_matches

routes = RouteTable("ops")
HEALTH_DB_TIMEOUT_S = 5.0


class MetricsTokenRequired(Unauthenticated):
    code = "console.metrics_token_required"
    default_message = "需要指标访问令牌（Authorization: Bearer）"


class OpenApiDocument(BaseModel):
    """An OpenAPI 3.1 document."""

    model_config = ConfigDict(extra="allow")
    openapi: str
    info: dict[str, object]
    paths: dict[str, object]


@routes.ops("GET", "/healthz", summary="健康检查（含数据库）", response=Health)
async def healthz(call: Call[None]) -> web.Response:
    try:
        async with call.db() as db:
            async with asyncio.timeout(HEALTH_DB_TIMEOUT_S):
                await db.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        body = Health(status="unavailable", database=f"error: {type(exc).__name__}")
        return json_response(body.model_dump(), status=503)
    return json_response(Health(status="ok", database="ok").model_dump())


@routes.ops(
    "GET", "/metrics", summary="Prometheus 指标（设置 console.metrics_token 后需 Bearer 令牌）"
)
async def metrics(call: Call[None]) -> web.Response:
    token = call.app[keys.SETTINGS].console.metrics_token
    if token and not bearer_matches(call.request, token):
        refused = json_response(MetricsTokenRequired().body(), status=401)
        refused.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return refused
    await call.app[keys.METRICS].refresh()
    body, content_type = call.app[keys.METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


@routes.ops(
    "GET",
    "/api/v1/openapi.json",
    summary="本接口的 OpenAPI 3.1 文档",
    response=OpenApiDocument,
    name="openapi",
)
async def openapi(call: Call[None]) -> web.Response:
    return json_response(call.app[keys.OPENAPI])
