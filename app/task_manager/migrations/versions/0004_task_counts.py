"""Task counts per user and status, kept by triggers (the list stops counting every task).

Expand only: the previous release neither reads nor writes the table, and the triggers
keep it right under that release's writes too, so it keeps working during a rolling update.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from task_manager import task_counts

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "task_counts",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("tasks", sa.Integer(), nullable=False),
        sa.CheckConstraint("tasks > 0", name=op.f("ck_task_counts_tasks")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_task_counts_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "status", name=op.f("pk_task_counts")),
    )
    task_counts.create(op.get_bind())


def downgrade():
    task_counts.drop(op.get_bind())
    op.drop_table("task_counts")
