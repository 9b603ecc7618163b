"""call control: transfers (转接) of calls and the audit of supervisors' listening (班长监听/密语/强插)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-14 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import config.database

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'call_transfers',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('uniqueid', sa.String(length=64), nullable=False),
        sa.Column('ticket_no', sa.String(length=32), nullable=True),
        sa.Column('mode', sa.String(length=16), nullable=False),
        sa.Column('target_kind', sa.String(length=16), nullable=False),
        sa.Column('target', sa.String(length=128), nullable=False),
        sa.Column('target_label', sa.String(length=128), nullable=False),
        sa.Column('by_user', sa.String(length=64), nullable=False),
        sa.Column('at', config.database.AwareDateTime(timezone=True), nullable=False),
        sa.Column('outcome', sa.String(length=16), nullable=False),
        sa.Column('outcome_at', config.database.AwareDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_call_transfers')),
    )
    with op.batch_alter_table('call_transfers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_call_transfers_uniqueid'), ['uniqueid'], unique=False)
        batch_op.create_index(batch_op.f('ix_call_transfers_ticket_no'), ['ticket_no'], unique=False)
    op.create_table(
        'supervision_actions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('at', config.database.AwareDateTime(timezone=True), nullable=False),
        sa.Column('supervisor', sa.String(length=64), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('agent', sa.String(length=64), nullable=False),
        sa.Column('uniqueid', sa.String(length=64), nullable=False),
        sa.Column('notified', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_supervision_actions')),
    )
    with op.batch_alter_table('supervision_actions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_supervision_actions_at'), ['at'], unique=False)


def downgrade() -> None:
    op.drop_table('supervision_actions')
    op.drop_table('call_transfers')
