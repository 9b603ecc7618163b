"""leader shifts per PBX: the Asterisk whose controller adds the leader to its queue (several Asterisks, one
controller each); existing windows stay on the default PBX ("")

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-20 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ivr_leader_shift") as batch:
        batch.add_column(sa.Column("pbx", sa.String(length=64), server_default="", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("ivr_leader_shift") as batch:
        batch.drop_column("pbx")
