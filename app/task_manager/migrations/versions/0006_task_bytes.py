"""Bytes of text each user's tasks hold, kept by triggers: the storage quota reads one row;
and each user's task writes in the current minute, for the write rate limit.

Expand only: the previous release neither reads nor writes the table, and the triggers keep
it right under that release's writes too, so it keeps working during a rolling update.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from task_manager import task_bytes

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "task_bytes",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("bytes > 0", name=op.f("ck_task_bytes_bytes")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_task_bytes_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_task_bytes")),
    )
    task_bytes.create(op.get_bind())
    op.create_table(
        "write_counts",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("writes", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_write_counts_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_write_counts")),
    )


def downgrade():
    op.drop_table("write_counts")
    task_bytes.drop(op.get_bind())
    op.drop_table("task_bytes")
