#!/usr/bin/env bash
# Make a scratch git repository of this project with three tagged releases:
#   v1.0.0  the project as it is
#   v1.1.0  a real schema migration: tasks.estimate_minutes (9001), in the model and the API
#   v1.2.0  another migration (9002), and a /health that always fails: an update to it must roll back
# The project's own newest migration is written to BASE_SCHEMA: the fixture's migrations
# follow it, and the scenario expects it after a rollback to v1.0.0.
#   make-fixture-repo.sh PROJECT DEST
set -euo pipefail
project=$1 dest=$2
rm -rf "$dest"
mkdir -p "$dest"
git -C "$project" archive --format=tar HEAD app frontend | tar -x -C "$dest"
cd "$dest"
sed -nE "s/^revision = ['\"]([^'\"]+)['\"]/\\1/p" app/task_manager/migrations/versions/*.py | sort | tail -1 > BASE_SCHEMA
git init -q -b main
git config user.name fixture
git config user.email fixture@example.invalid
git add -A
git commit -qm "v1.0.0"
git tag v1.0.0

pkg=app/task_manager
python3 - "$pkg" "$(cat BASE_SCHEMA)" <<'PY'
import pathlib, sys
pkg = pathlib.Path(sys.argv[1])
base = sys.argv[2]
def patch(path, old, new):
    # Loudly: a refactor of the project that moves these lines must update this fixture.
    text = path.read_text()
    if old not in text:
        sys.exit(f"make-fixture-repo: {path} no longer has {old!r}")
    path.write_text(text.replace(old, new, 1))


patch(pkg / "models.py", "    completed_at: Mapped[datetime | None] = mapped_column(DateTime)\n",
      "    completed_at: Mapped[datetime | None] = mapped_column(DateTime)\n"
      "    estimate_minutes: Mapped[int | None] = mapped_column()\n")
# The API's answer is declared in schemas.py: the new field goes there too.
patch(pkg / "schemas.py", "    completed_at: Timestamp | None\n",
      "    completed_at: Timestamp | None\n    estimate_minutes: int | None = None\n")
(pkg / "migrations/versions/9001_task_estimates.py").write_text('''"""Add tasks.estimate_minutes.

Revision ID: 9001
"""

import sqlalchemy as sa
from alembic import op

revision = "9001"
down_revision = "BASE"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("tasks") as batch_op:
        batch_op.add_column(sa.Column("estimate_minutes", sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table("tasks") as batch_op:
        batch_op.drop_column("estimate_minutes")
'''.replace("BASE", base))
pyproject = pathlib.Path("app/pyproject.toml")
pyproject.write_text(pyproject.read_text().replace('version = "1.0.0"', 'version = "1.1.0"', 1))
PY
git add -A
git commit -qm "v1.1.0: task estimates"
git tag v1.1.0

python3 - "$pkg" <<'PY'
import pathlib, sys
pkg = pathlib.Path(sys.argv[1])
(pkg / "migrations/versions/9002_task_labels.py").write_text('''"""Add tasks.label.

Revision ID: 9002
Revises: 9001
"""

import sqlalchemy as sa
from alembic import op

revision = "9002"
down_revision = "9001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("tasks") as batch_op:
        batch_op.add_column(sa.Column("label", sa.String(32), nullable=True))


def downgrade():
    with op.batch_alter_table("tasks") as batch_op:
        batch_op.drop_column("label")
''')
health = pkg / "api/health.py"
s = health.read_text()
s = s.replace('    body["checks"] = {"database": "ok"}\n',
              '    body["checks"] = {"database": "ok"}\n    body["status"] = "BROKEN"  # the fixture release that must roll back\n'
              '    return jsonify(body), 503\n', 1)
health.write_text(s)
pyproject = pathlib.Path("app/pyproject.toml")
pyproject.write_text(pyproject.read_text().replace('version = "1.1.0"', 'version = "1.2.0"', 1))
PY
git add -A
git commit -qm "v1.2.0: broken health"
git tag v1.2.0
git log --oneline --decorate
