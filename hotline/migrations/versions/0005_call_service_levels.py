"""call log: queue, abandon stage, bot requeue, end of talk and wrap-up (service levels)

Calls logged before this revision keep NULL there: their abandons count in no stage, their talk time runs to
the hang-up and they have no wrap-up.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import config.database

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('ivr_call', schema=None) as batch_op:
        batch_op.add_column(sa.Column('queue', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('abandoned_in', sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column('from_bot', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('talk_ended_at', config.database.AwareDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('wrap_up_s', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('ivr_call', schema=None) as batch_op:
        batch_op.drop_column('wrap_up_s')
        batch_op.drop_column('talk_ended_at')
        batch_op.drop_column('from_bot')
        batch_op.drop_column('abandoned_in')
        batch_op.drop_column('queue')
