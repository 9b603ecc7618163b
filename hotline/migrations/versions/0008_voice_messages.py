"""voice messages (留言): the message of a call and the ticket it was filed as

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import config.database

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'voice_messages',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('call_id', sa.String(length=64), nullable=False),
        sa.Column('file', sa.String(length=200), nullable=False),
        sa.Column('caller_phone', sa.String(length=20), nullable=False),
        sa.Column('record_status', sa.String(length=16), nullable=False),
        sa.Column('ticket_id', sa.Integer(), nullable=False),
        sa.Column('transcription', sa.String(length=16), nullable=False),
        sa.Column('created_at', config.database.AwareDateTime(timezone=True), nullable=False),
        sa.Column('transcribed_at', config.database.AwareDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_voice_messages_ticket_id_tickets'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_voice_messages')),
        sa.UniqueConstraint('call_id', name=op.f('uq_voice_messages_call_id')),
    )
    with op.batch_alter_table('voice_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_voice_messages_ticket_id'), ['ticket_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_voice_messages_transcription'), ['transcription'], unique=False)


def downgrade() -> None:
    op.drop_table('voice_messages')
