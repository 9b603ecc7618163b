"""knowledge misses stored before numbers were masked: mask them now (PIPL)

The bot now masks phone numbers in a missed question before storing it; rows written by earlier versions keep
the caller's full number. This rewrites them with the same rule (config.pii.mask_phones).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from config.pii import mask_phones

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000
misses = sa.table('kb_misses', sa.column('id', sa.Integer), sa.column('question_text', sa.Text))


def upgrade() -> None:
    conn = op.get_bind()
    last = 0
    while rows := conn.execute(sa.select(misses.c.id, misses.c.question_text).where(misses.c.id > last)
                               .order_by(misses.c.id).limit(BATCH)).all():
        changed = [{"row_id": i, "text": mask_phones(t)} for i, t in rows if mask_phones(t) != t]
        if changed:
            conn.execute(misses.update().where(misses.c.id == sa.bindparam("row_id"))
                         .values(question_text=sa.bindparam("text")), changed)
        last = rows[-1][0]


def downgrade() -> None:
    """The full numbers are gone: nothing to restore."""
