"""The OpenAPI 3.1 document: valid against the official schema, complete, and true to the answers."""

from __future__ import annotations

import jsonschema_rs
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from agent_console.app import FEATURES
from agent_console.openapi import build_openapi
from agent_console.routing import RouteRegistry
from tests.agent_console.harness import Console


def operations(doc: dict) -> dict[tuple[str, str], dict]:
    return {(m.upper(), p): op for p, item in doc["paths"].items() for m, op in item.items()}


async def test_document_is_valid_openapi_31_and_lists_every_route(console: Console) -> None:
    resp = await console.browser().request("GET", "/api/v1/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    OPENAPI_31_VALIDATOR.validate(doc)
    ops = operations(doc)
    registry = RouteRegistry.of(FEATURES)
    assert set(ops) == {(r.method, r.path) for r in registry.routes}
    for route in registry.routes:
        op = ops[(route.method, route.path)]
        assert op["x-roles"] == sorted(route.roles)
        assert op["security"] == ([] if route.public else [{"session": []}])
    for name, schema in doc["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name


async def test_declared_schemas_match_real_answers(console: Console) -> None:
    doc = build_openapi(RouteRegistry.of(FEATURES), version="test")
    b = await console.logged_in("admin")

    def validator(status: str, method: str, path: str) -> jsonschema_rs.Validator:
        schema = doc["paths"][path][method]["responses"][status]["content"]["application/json"][
            "schema"
        ]
        return jsonschema_rs.validator_for(schema | {"components": doc["components"]})

    me = await b.request("GET", "/api/v1/me")
    validator("200", "get", "/api/v1/me").validate(await me.json())
    users = await b.request("GET", "/api/v1/users")
    validator("200", "get", "/api/v1/users").validate(await users.json())
    bad = await b.write("POST", "/api/v1/users", {"username": "x"})
    assert bad.status == 422
    validator("422", "post", "/api/v1/users").validate(await bad.json())
    anonymous = await console.browser().request("GET", "/api/v1/me")
    validator("401", "get", "/api/v1/me").validate(await anonymous.json())


def test_write_operations_document_their_body_and_csrf_refusal() -> None:
    doc = build_openapi(RouteRegistry.of(FEATURES), version="test")
    create = doc["paths"]["/api/v1/users"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/UserCreate"
    }
    assert {"201", "401", "403", "409", "422"} <= set(create["responses"])
    patch = doc["paths"]["/api/v1/users/{username}"]["patch"]
    assert patch["parameters"] == [
        {"name": "username", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
    assert "404" in patch["responses"]
