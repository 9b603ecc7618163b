"""Console roles and the data each role may see (ownership scope)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


class Role(StrEnum):
    AGENT = "agent"  # 话务员
    DISPATCHER = "dispatcher"  # 派单员
    HANDLER = "handler"  # 承办人 (belongs to a department, 承办单位)
    LEADER = "leader"  # 领导
    SUPERVISOR = (
        "supervisor"  # 班长 (shift supervisor: the live agent board, listen / whisper / barge)
    )
    GRID = "grid"  # 网格员 (belongs to a grid, 网格)
    ADMIN = "admin"  # 管理员

    @property
    def label(self) -> str:
        return ROLE_LABELS[self]


ROLE_LABELS: dict[Role, str] = {
    Role.AGENT: "话务员",
    Role.DISPATCHER: "派单员",
    Role.HANDLER: "承办人",
    Role.LEADER: "领导",
    Role.SUPERVISOR: "班长",
    Role.GRID: "网格员",
    Role.ADMIN: "管理员",
}

ALL_ROLES: frozenset[Role] = frozenset(Role)
# Roles that call citizens back and therefore see full phone numbers.
CALLING_ROLES: frozenset[Role] = frozenset({Role.AGENT, Role.DISPATCHER, Role.ADMIN})
# Roles that do the satisfaction call-back (回访; tickets.states): the only ones that see the name and number
# of a caller who asked for confidentiality (保密).
CONFIDENTIAL_ROLES: frozenset[Role] = frozenset({Role.AGENT, Role.ADMIN})


class ScopedUser(Protocol):
    role: str
    department: str | None
    grid: str | None


@dataclass(frozen=True)
class DataScope:
    """What slice of ticket data a user may see: everything, one department's, or one grid's.

    Later routes call ``scope.allows(department=…, grid=…)`` on a loaded record, or ``scope.filter(stmt, …)``
    on a query, so a handler never sees another department's tickets and a grid worker only their grid's.
    """

    department: str | None = None
    grid: str | None = None
    nothing: bool = False  # a handler without department or a grid worker without grid sees nothing

    @classmethod
    def for_user(cls, user: ScopedUser) -> DataScope:
        if user.role == Role.HANDLER:
            return cls(department=user.department) if user.department else cls(nothing=True)
        if user.role == Role.GRID:
            return cls(grid=user.grid) if user.grid else cls(nothing=True)
        return cls()

    @property
    def unrestricted(self) -> bool:
        return not self.nothing and self.department is None and self.grid is None

    def allows(self, *, department: str | None = None, grid: str | None = None) -> bool:
        if self.nothing:
            return False
        if self.department is not None and department != self.department:
            return False
        return self.grid is None or grid == self.grid

    def filter(self, stmt: Any, *, department_col: Any = None, grid_col: Any = None) -> Any:
        """Narrow a SQLAlchemy select to this scope (columns of the queried table)."""
        if self.nothing:
            return stmt.where(False)
        if self.department is not None:
            if department_col is None:
                return stmt.where(False)
            stmt = stmt.where(department_col == self.department)
        if self.grid is not None:
            if grid_col is None:
                return stmt.where(False)
            stmt = stmt.where(grid_col == self.grid)
        return stmt
