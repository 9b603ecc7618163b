"""leader shifts and leader-answered calls name the leader's console account

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 02:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('ivr_leader_shift', schema=None) as batch_op:
        batch_op.add_column(sa.Column('account', sa.String(length=64), nullable=False, server_default=''))
    with op.batch_alter_table('ivr_call', schema=None) as batch_op:
        batch_op.add_column(sa.Column('leader_account', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_ivr_call_leader_account'), ['leader_account'], unique=False)
    # existing windows: the account whose display name is the leader's, when exactly one leader account has it
    op.execute(
        "UPDATE ivr_leader_shift SET account = (SELECT u.username FROM console_users u "
        "WHERE u.display_name = ivr_leader_shift.leader_name AND u.role = 'leader') "
        "WHERE (SELECT count(*) FROM console_users u WHERE u.display_name = ivr_leader_shift.leader_name "
        "AND u.role = 'leader') = 1"
    )


def downgrade() -> None:
    with op.batch_alter_table('ivr_call', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ivr_call_leader_account'))
        batch_op.drop_column('leader_account')
    with op.batch_alter_table('ivr_leader_shift', schema=None) as batch_op:
        batch_op.drop_column('account')
