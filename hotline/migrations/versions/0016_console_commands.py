"""console commands: the console-to-controller command channel on PostgreSQL (agent_console.command_channel)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-16 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import config.database

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_commands",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("arguments", sa.JSON(), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.String(length=500), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", config.database.AwareDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", config.database.AwareDateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", config.database.AwareDateTime(timezone=True), nullable=True),
        sa.Column("done_at", config.database.AwareDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_commands")),
    )
    with op.batch_alter_table("console_commands", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_console_commands_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index("ix_console_commands_state_target", ["state", "target"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("console_commands", schema=None) as batch_op:
        batch_op.drop_index("ix_console_commands_state_target")
        batch_op.drop_index(batch_op.f("ix_console_commands_created_at"))
    op.drop_table("console_commands")
