"""call log per PBX: the Asterisk whose controller logged a call (several Asterisks, one controller each)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-17 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('ivr_call') as batch:
        batch.add_column(
            sa.Column('pbx', sa.String(length=64), server_default='', nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table('ivr_call') as batch:
        batch.drop_column('pbx')
