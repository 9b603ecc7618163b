"""Alembic environment: always handed an open connection by hotline.migrate."""

from alembic import context

from hotline.db import all_metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=all_metadata(),
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
