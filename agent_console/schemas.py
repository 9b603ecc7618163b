"""JSON shapes of the console API (pydantic models; their JSON Schemas go into the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent_console.roles import Role
from tickets.text import Line

USERNAME_PATTERN = r"^[A-Za-z0-9_.@-]{2,64}$"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ErrorDetail(Model):
    field: str
    code: str
    message: str


ERROR_CODE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$"


class ErrorInfo(Model):
    code: str = Field(pattern=ERROR_CODE_PATTERN, description="稳定的机器可读错误码（area.reason）")
    message: str = Field(description="中文错误说明")
    details: list[ErrorDetail] = []


class ErrorBody(Model):
    error: ErrorInfo


class _Placement(Model):
    """Role with its department (handler) or grid (grid worker)."""

    role: Role
    department: Line | None = Field(
        default=None, max_length=128, description="承办单位（承办人必填）"
    )
    grid: Line | None = Field(default=None, max_length=128, description="网格（网格员必填）")

    @model_validator(mode="after")
    def _placement_fits_role(self) -> Self:
        if self.role == Role.HANDLER and not self.department:
            raise ValueError("承办人必须指定承办单位")
        if self.role == Role.GRID and not self.grid:
            raise ValueError("网格员必须指定网格")
        return self


class UserCreate(_Placement):
    username: str = Field(pattern=USERNAME_PATTERN, description="登录名（字母、数字、_ . @ -）")
    display_name: Line = Field(min_length=1, max_length=64, description="姓名")
    password: str = Field(min_length=1, max_length=256)


class UserUpdate(Model):
    """Fields to change; omitted ones stay. Changing role, placement, password or active ends the user's sessions."""

    display_name: Line | None = Field(default=None, min_length=1, max_length=64)
    role: Role | None = None
    department: Line | None = Field(default=None, max_length=128)
    grid: Line | None = Field(default=None, max_length=128)
    password: str | None = Field(default=None, min_length=1, max_length=256)
    active: bool | None = None

    @model_validator(mode="after")
    def _given_fields_are_not_null(self) -> UserUpdate:
        """Omitting a field keeps it; sending null for one that cannot be empty is an input error."""
        for name in ("display_name", "role", "password", "active"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} 不能为空")
        return self


class UserOut(Model):
    username: str
    display_name: str
    role: Role
    role_label: str
    department: str | None
    grid: str | None
    active: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, user: Any) -> UserOut:
        role = Role(user.role)
        return cls(
            username=user.username,
            display_name=user.display_name,
            role=role,
            role_label=role.label,
            department=user.department,
            grid=user.grid,
            active=user.active,
            created_at=user.created_at,
            updated_at=user.updated_at,
        )


class UserList(Model):
    users: list[UserOut]


class Me(Model):
    user: UserOut
    csrf_token: str = Field(description="写操作需在 X-CSRF-Token 头中带上此值")
    session_expires_at: datetime


class Health(Model):
    status: str
    database: str
