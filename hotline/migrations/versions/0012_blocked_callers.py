"""blocklist of nuisance callers (恶意骚扰来电): entries and their immutable audit events

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-13 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import config.database

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOT_LIFTED = sa.text('lifted_at IS NULL')


def upgrade() -> None:
    op.create_table(
        'blocked_callers',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('phone', sa.String(length=20), nullable=False),
        sa.Column('reason', sa.String(length=200), nullable=False),
        sa.Column('expires_at', config.database.AwareDateTime(timezone=True), nullable=True),
        sa.Column('created_by', sa.String(length=64), nullable=False),
        sa.Column('created_at', config.database.AwareDateTime(timezone=True), nullable=False),
        sa.Column('lifted_at', config.database.AwareDateTime(timezone=True), nullable=True),
        sa.Column('lifted_by', sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_blocked_callers')),
    )
    with op.batch_alter_table('blocked_callers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_blocked_callers_phone'), ['phone'], unique=False)
        batch_op.create_index('ux_blocked_callers_phone_not_lifted', ['phone'], unique=True,
                              sqlite_where=_NOT_LIFTED, postgresql_where=_NOT_LIFTED)
    op.create_table(
        'blocked_caller_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('blocked_id', sa.Integer(), nullable=False),
        sa.Column('at', config.database.AwareDateTime(timezone=True), nullable=False),
        sa.Column('actor', sa.String(length=64), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('note', sa.String(length=200), nullable=False),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(['blocked_id'], ['blocked_callers.id'],
                                name=op.f('fk_blocked_caller_events_blocked_id_blocked_callers'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_blocked_caller_events')),
    )
    with op.batch_alter_table('blocked_caller_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_blocked_caller_events_blocked_id'), ['blocked_id'], unique=False)


def downgrade() -> None:
    op.drop_table('blocked_caller_events')
    op.drop_table('blocked_callers')
