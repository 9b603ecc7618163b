"""knowledge review marks: entries whose spoken answer the import derived (自动生成，请审核), misses handled

Entries stored before this revision had their spoken answer written by people: not derived.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-10 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import config.database

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('kb_entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('speech_derived', sa.Boolean(), server_default=sa.false(), nullable=False))

    with op.batch_alter_table('kb_misses', schema=None) as batch_op:
        batch_op.add_column(sa.Column('handled_at', config.database.AwareDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('handled_by', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('handled_entry_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_kb_misses_handled_at'), ['handled_at'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_kb_misses_handled_entry_id_kb_entries'), 'kb_entries',
                                    ['handled_entry_id'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    with op.batch_alter_table('kb_misses', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_kb_misses_handled_entry_id_kb_entries'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_kb_misses_handled_at'))
        batch_op.drop_column('handled_entry_id')
        batch_op.drop_column('handled_by')
        batch_op.drop_column('handled_at')

    with op.batch_alter_table('kb_entries', schema=None) as batch_op:
        batch_op.drop_column('speech_derived')
