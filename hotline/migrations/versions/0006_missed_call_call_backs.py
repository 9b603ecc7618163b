"""missed-call call-backs (漏接电话回拨): the task table, the call log's link to it, the kind of a call-back attempt

Attempts placed before this revision are satisfaction call-backs (回访): kind "survey".

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-09 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import config.database

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'ivr_missed_call',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('number', sa.String(length=64), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('first_call', sa.String(length=64), nullable=False),
        sa.Column('first_call_at', config.database.AwareDateTime(timezone=True), nullable=False),
        sa.Column('calls', sa.Integer(), nullable=False),
        sa.Column('state', sa.String(length=24), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', config.database.AwareDateTime(timezone=True), nullable=True),
        sa.Column('outcome', sa.String(length=128), nullable=False),
        sa.Column('reached_call', sa.String(length=64), nullable=True),
        sa.Column('created_at', config.database.AwareDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', config.database.AwareDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_ivr_missed_call')),
        sa.UniqueConstraint('number', 'day', name=op.f('uq_ivr_missed_call_number'))
    )
    with op.batch_alter_table('ivr_missed_call', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ivr_missed_call_day'), ['day'], unique=False)
        batch_op.create_index(batch_op.f('ix_ivr_missed_call_reached_call'), ['reached_call'], unique=False)
        batch_op.create_index(batch_op.f('ix_ivr_missed_call_state'), ['state'], unique=False)

    with op.batch_alter_table('ivr_call', schema=None) as batch_op:
        batch_op.add_column(sa.Column('missed_call_id', sa.Integer(), nullable=True))

    with op.batch_alter_table('ivr_callback_attempt', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), server_default='survey', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('ivr_callback_attempt', schema=None) as batch_op:
        batch_op.drop_column('kind')

    with op.batch_alter_table('ivr_call', schema=None) as batch_op:
        batch_op.drop_column('missed_call_id')

    with op.batch_alter_table('ivr_missed_call', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ivr_missed_call_state'))
        batch_op.drop_index(batch_op.f('ix_ivr_missed_call_reached_call'))
        batch_op.drop_index(batch_op.f('ix_ivr_missed_call_day'))

    op.drop_table('ivr_missed_call')
