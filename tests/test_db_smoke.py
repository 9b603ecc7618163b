from sqlalchemy import text


async def test_engine_runs_sql(engine) -> None:
    async with engine.connect() as conn:
        assert (await conn.execute(text("select 1"))).scalar() == 1
