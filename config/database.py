"""Storage conventions every package's tables share: constraint names, aware timestamps, append-only audit
tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class ImmutableRowError(RuntimeError):
    """An audit row was about to be changed or deleted."""


def immutable(model: type[Any], what: str) -> None:
    """Refuse every UPDATE and DELETE of ``model``'s rows through the ORM: audit trails only grow."""

    def refuse(_mapper: Any, _conn: Any, target: Any) -> None:
        raise ImmutableRowError(f"{what} {target.id} is immutable")

    event.listen(model, "before_update", refuse)
    event.listen(model, "before_delete", refuse)


def new_metadata() -> MetaData:
    """A MetaData with the shared constraint naming convention (needed by Alembic on SQLite)."""
    return MetaData(naming_convention=NAMING_CONVENTION)


class AwareDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp stored as UTC; SQLite's naive values come back as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: every timestamp must carry a time zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
