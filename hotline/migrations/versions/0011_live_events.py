"""live events across console processes: the table PostgreSQL's NOTIFY points into (agent_console.hub_pg)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-12 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import config.database

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'console_live_events',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('topic', sa.String(length=200), nullable=False),
        sa.Column('kind', sa.String(length=64), nullable=False),
        sa.Column('origin', sa.String(length=32), nullable=False),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.Column('created_at', config.database.AwareDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_console_live_events')),
    )
    with op.batch_alter_table('console_live_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_console_live_events_created_at'), ['created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('console_live_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_console_live_events_created_at'))
    op.drop_table('console_live_events')
