"""The OpenAPI 3.1 document, generated from the route registry (pydantic models → JSON Schema).

Each operation carries ``x-roles`` (the roles allowed; empty = public) and ``x-kind`` (api, page, socket, ops).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from agent_console.errors import STATUS_ERRORS, error_codes
from agent_console.routing import Route, RouteRegistry
from agent_console.schemas import ErrorBody
from agent_console.security import UNSAFE_METHODS

REF = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"{(\w+)(?::[^}]*)?}")
_ERROR_DESCRIPTIONS = {status: cls.default_message for status, cls in STATUS_ERRORS.items()}


def _models(registry: RouteRegistry) -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {"ErrorBody": ErrorBody}
    for r in registry.routes:
        for m in (r.request, r.query, r.response):
            if m is not None:
                found.setdefault(m.__name__, m)
    return list(found.values())


def _document_error_codes(schemas: dict[str, Any]) -> None:
    """List every error code, by HTTP status, on ``ErrorInfo.code``."""
    codes = error_codes()
    listing = "；".join(f"{status}：{'、'.join(found)}" for status, found in codes.items())
    prop = schemas["ErrorInfo"]["properties"]["code"]
    prop["description"] = (
        f"{prop['description']}。console.* 为控制台自身的拒绝，其余为业务领域的拒绝（ticket 工单、"
        "kb 知识库、leader 领导接听日、blocklist 来电黑名单、callback 回访、ami 电话系统 …），"
        "可带同一领域更具体的错误码"
        f"（如 ticket.naive_time、kb.invalid_entry）。按 HTTP 状态：{listing}"
    )
    prop["examples"] = sorted({code for found in codes.values() for code in found})


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _parameters(route: Route, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    params = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
        for n in _PATH_PARAM.findall(route.path)
    ]
    if route.query is not None:
        q = schemas[route.query.__name__]
        required = set(q.get("required", []))
        params += [
            {"name": name, "in": "query", "required": name in required, "schema": prop}
            for name, prop in q.get("properties", {}).items()
        ]
    return params


def _error_statuses(route: Route) -> list[int]:
    statuses = []
    if route.request is not None or route.query is not None:
        statuses += [400, 422]
    if not route.public:
        statuses += [401, 403]
    if "{" in route.path:
        statuses.append(404)
    if route.method in UNSAFE_METHODS and 403 not in statuses:
        statuses.append(403)  # CSRF token missing or wrong
    return sorted(set(statuses) | set(route.errors))


def _success(route: Route) -> dict[str, Any]:
    if route.kind == "page":
        if route.method == "GET":
            return {
                "200": {
                    "description": "HTML 页面",
                    "content": {"text/html": {"schema": {"type": "string"}}},
                }
            }
        return {"303": {"description": "处理后跳转"}}
    if route.kind == "socket":
        return {"101": {"description": "WebSocket 连接（实时推送）"}}
    if route.response is None:
        return {
            str(route.status): {
                "description": route.summary,
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        }
    return {
        str(route.status): {
            "description": route.summary,
            "content": {"application/json": {"schema": _ref(route.response)}},
        }
    }


def _operation(route: Route, schemas: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.name,
        "summary": route.summary,
        "tags": list(route.tags) or [route.kind],
        "x-kind": route.kind,
        "x-roles": sorted(route.roles),
        "security": [] if route.public else [{"session": []}],
        "responses": _success(route),
    }
    params = _parameters(route, schemas)
    if params:
        op["parameters"] = params
    if route.request is not None:
        media = "application/x-www-form-urlencoded" if route.kind == "page" else "application/json"
        op["requestBody"] = {"required": True, "content": {media: {"schema": _ref(route.request)}}}
    for status in _error_statuses(route):
        op["responses"][str(status)] = {
            "description": _ERROR_DESCRIPTIONS[status],
            "content": {"application/json": {"schema": _ref(ErrorBody)}},
        }
    return op


def build_openapi(registry: RouteRegistry, *, version: str) -> dict[str, Any]:
    """The document for every registered route, with the schemas of their models under components."""
    _, defs = models_json_schema([(m, "validation") for m in _models(registry)], ref_template=REF)
    schemas: dict[str, Any] = defs.get("$defs", {})
    _document_error_codes(schemas)
    paths: dict[str, dict[str, Any]] = {}
    for route in registry.routes:
        path = _PATH_PARAM.sub(r"{\1}", route.path)
        paths.setdefault(path, {})[route.method.lower()] = _operation(route, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "12345 热线坐席控制台 API",
            "version": version,
            "description": "接诉即办坐席、派单、承办、领导驾驶舱的接口。写操作需带 X-CSRF-Token 头。",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "hotline_session",
                    "description": "登录后的会话 Cookie；写操作另需 X-CSRF-Token 头（见 /api/v1/me）",
                },
            },
        },
    }
