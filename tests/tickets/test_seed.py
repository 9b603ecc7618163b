"""Departments seeded from the dispatch catalogue (派单目录)."""

from __future__ import annotations

from sqlalchemy import select

from tickets.dispatch_catalogue import load_catalogue
from tickets.models import Department
from tickets.seed import catalogue_departments, seed_departments


async def departments(session) -> list[tuple[str, str, bool]]:
    rows = await session.execute(
        select(Department).order_by(Department.code).execution_options(populate_existing=True)
    )
    return [(d.code, d.name, d.active) for d in rows.scalars()]


async def test_seed_is_idempotent_and_reactivates(sessionmaker, catalogue) -> None:
    async with sessionmaker() as session:
        assert await seed_departments(session, catalogue) == 2  # 区住房和城乡建设局 is named twice
        first = await departments(session)
        assert first == sorted(
            [
                ("区住房和城乡建设局", "区住房和城乡建设局", True),
                ("区城市管理局", "区城市管理局", True),
            ]
        )
        (await session.get(Department, "区城市管理局")).active = False
        await session.commit()
        assert await seed_departments(session, catalogue) == 2
        assert await departments(session) == first


async def test_shipped_catalogue_seeds_every_department_it_names(sessionmaker, settings) -> None:
    catalogue = load_catalogue(settings)
    async with sessionmaker() as session:
        await seed_departments(session, catalogue)
        stored = {code for code, _name, _active in await departments(session)}
    assert stored == {e.department for e in catalogue.entries}
    assert len(catalogue_departments(catalogue)) == len(stored)
