"""Phone masking per role, and the data scope of each role."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import column, select, table

from agent_console.masking import mask_phone
from agent_console.roles import DataScope, Role

MASKED = [
    ("13812345678", "138****5678"),
    ("+86 138 1234 5678", "138****5678"),
    ("0931-1234567", "0931-***4567"),
    ("093112345678", "0931-****5678"),
    ("010-12345678", "010-****5678"),
    ("(021)87654321", "021-****4321"),
    ("8123456", "***3456"),
    ("12345", "12345"),
    ("", ""),
]


@pytest.mark.parametrize(("phone", "masked"), MASKED)
@pytest.mark.parametrize("role", [Role.HANDLER, Role.LEADER, Role.GRID, "unknown-role"])
def test_roles_that_do_not_call_back_see_masked_numbers(
    role: Role | str, phone: str, masked: str
) -> None:
    assert mask_phone(phone, role) == masked


@pytest.mark.parametrize("role", [Role.AGENT, Role.DISPATCHER, Role.ADMIN, "agent"])
def test_roles_that_call_back_see_full_numbers(role: Role | str) -> None:
    assert mask_phone("13812345678", role) == "13812345678"
    assert mask_phone("0931-1234567", role) == "0931-1234567"


@dataclass
class Person:
    role: str
    department: str | None = None
    grid: str | None = None


def test_handler_sees_only_their_department_and_grid_worker_only_their_grid() -> None:
    handler = DataScope.for_user(Person("handler", department="市住建局"))
    assert handler.allows(department="市住建局") and not handler.allows(department="市水务局")
    grid = DataScope.for_user(Person("grid", grid="城关网格"))
    assert grid.allows(grid="城关网格") and not grid.allows(grid="东岗网格", department="市住建局")
    assert DataScope.for_user(Person("leader")).unrestricted
    assert not DataScope.for_user(Person("handler")).allows(department=None)


def test_scope_narrows_a_query() -> None:
    tickets = table("tickets", column("department"), column("grid"))
    stmt = DataScope.for_user(Person("handler", department="市住建局")).filter(
        select(tickets), department_col=tickets.c.department, grid_col=tickets.c.grid
    )
    sql = str(stmt.compile(compile_kwargs={"literal_binds": True}))
    assert "WHERE tickets.department = '市住建局'" in sql
    everyone = DataScope.for_user(Person("admin")).filter(
        select(tickets), department_col=tickets.c.department
    )
    assert "WHERE" not in str(everyone)
