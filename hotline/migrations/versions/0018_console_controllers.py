"""console controllers: each controller announces its PBX on the command channel (several Asterisks); the
index of an agent's live call in the call log (a transfer goes to that call's PBX)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-18 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import config.database

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_controllers",
        sa.Column("pbx", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("heartbeat_at", config.database.AwareDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pbx", name=op.f("pk_console_controllers")),
    )
    with op.batch_alter_table("ivr_call") as batch:
        batch.create_index(
            "ix_ivr_call_open_agent",
            ["agent_interface"],
            unique=False,
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("ivr_call") as batch:
        batch.drop_index("ix_ivr_call_open_agent")
    op.drop_table("console_controllers")
