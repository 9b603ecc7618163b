"""bot hosts: each speech bot's load report (address, active sessions, capacity, heartbeat)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-15 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import config.database

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bot_hosts",
        sa.Column("address", sa.String(length=128), nullable=False),
        sa.Column("active_sessions", sa.Integer(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("heartbeat_at", config.database.AwareDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_bot_hosts")),
    )


def downgrade() -> None:
    op.drop_table("bot_hosts")
