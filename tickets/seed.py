"""Departments (承办单位) from the dispatch catalogue (派单目录), so tickets can be dispatched to them.

The catalogue names departments but gives them no codes, so a department's name is its code too: a dispatch
suggestion's ``department`` can be passed as ``lead_department`` unchanged.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from tickets.dispatch_catalogue import Catalogue
from tickets.services import upsert_departments


def catalogue_departments(catalogue: Catalogue) -> list[tuple[str, str]]:
    """``(code, name)`` of every department the catalogue names, once each, in file order."""
    names = dict.fromkeys(entry.department for entry in catalogue.entries)
    return [(name, name) for name in names]


async def seed_departments(session: AsyncSession, catalogue: Catalogue) -> int:
    """Add the catalogue's departments (or mark them active again); idempotent. Returns how many it names."""
    return await upsert_departments(session, catalogue_departments(catalogue))
