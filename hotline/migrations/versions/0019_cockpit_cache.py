"""cockpit cache: the leader cockpit's panels shared by every console worker on PostgreSQL
(agent_console.cockpit_cache_pg)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-19 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import config.database

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cockpit_cache",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("computed_at", config.database.AwareDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", config.database.AwareDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_cockpit_cache")),
    )
    with op.batch_alter_table("cockpit_cache", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cockpit_cache_day"), ["day"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cockpit_cache", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cockpit_cache_day"))
    op.drop_table("cockpit_cache")
