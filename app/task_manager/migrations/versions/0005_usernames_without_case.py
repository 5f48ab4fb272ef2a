"""One account per name whatever its case: a unique index on lower(username).

Expand only: the previous release keeps working during a rolling update (a registration of
a name another case of which exists is refused by the index, and answered as a taken name).
Names registered before may differ only in case (alice, Alice): the migration then stops
before it changes anything and names them, for an operator to rename one of each pair
(`UPDATE users SET username = 'alice2' WHERE username = 'Alice'`, and tell its owner).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

INDEX = "uq_users_username_lower"
RENAME = "UPDATE users SET username = '<new name>' WHERE username = '<name>'"


def upgrade():
    users = sa.table("users", sa.column("username", sa.String))
    rows = op.get_bind().execute(sa.select(users.c.username).order_by(users.c.username)).scalars().all()
    groups: dict[str, list[str]] = {}
    for name in rows:
        groups.setdefault(name.lower(), []).append(name)
    clashes = [names for names in groups.values() if len(names) > 1]
    if clashes:
        listed = "; ".join(", ".join(names) for names in clashes)
        raise RuntimeError(
            f"usernames that differ only in case: {listed}. Rename all but one of each ({RENAME}), "
            "tell their owners, and run the update again: nothing was changed")
    op.create_index(INDEX, "users", [sa.text("lower(username)")], unique=True)


def downgrade():
    op.drop_index(INDEX, table_name="users")
