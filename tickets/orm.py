"""SQLAlchemy internals the ticket domain relies on for speed, in one place (pinned by tests/tickets/test_orm.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from sqlalchemy import inspect
from sqlalchemy.orm import configure_mappers

T = TypeVar("T")


def as_loaded(cls: type[T], values: Mapping[str, Any]) -> T:
    """An instance of the mapped class ``cls`` holding ``values`` (column attributes) as loading its row would
    leave it: committed, without history, no attribute events fired; transient until it gets an identity
    (``make_transient_to_detached``).

    Checked against SQLAlchemy 2.1.9: ``Mapper.class_manager.new_instance()`` makes an instrumented instance
    without the constructor, and an attribute's committed value is the one in the instance's ``__dict__`` (what a
    load fills). The public route, the constructor then ``make_transient_to_detached``, costs 5–9 times as much,
    which counts for the repeat links of a busy caller's new ticket.
    """
    mapper = inspect(cls)
    if (
        not mapper.configured
    ):  # the constructor would configure the mappers (the first object of a process)
        configure_mappers()
    instance: T = mapper.class_manager.new_instance()
    instance.__dict__.update(values)
    return instance
