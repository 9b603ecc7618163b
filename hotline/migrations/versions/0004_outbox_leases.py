"""notification outbox: message keys for gateways, delivery leases, retry backoff

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import config.database

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('notification_outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('message_key', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('next_attempt_at', config.database.AwareDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('lease_owner', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('lease_until', config.database.AwareDateTime(timezone=True), nullable=True))
    # messages queued before this revision: a key from their id (new ones get a UUID)
    op.execute("UPDATE notification_outbox SET message_key = 'outbox-' || id")
    with op.batch_alter_table('notification_outbox', schema=None) as batch_op:
        batch_op.alter_column('message_key', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_notification_outbox_message_key'), ['message_key'])


def downgrade() -> None:
    with op.batch_alter_table('notification_outbox', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_notification_outbox_message_key'), type_='unique')
        batch_op.drop_column('lease_until')
        batch_op.drop_column('lease_owner')
        batch_op.drop_column('next_attempt_at')
        batch_op.drop_column('message_key')
