#!/usr/bin/env python3
"""Scratch git repositories of this project's committed code, as release sources for tests.

The one builder that Molecule and the bench share; answers in JSON.

    fixture-repo.py releases DEST
        three tagged releases, for the runbook scenarios:
          v1.0.0  the project as committed
          v1.1.0  a real schema migration: tasks.estimate_minutes (9001), in the model and the API
          v1.2.0  another migration (9002), and a /health that always fails: an update to it must roll back
        The project's own newest migration is written to BASE_SCHEMA: the fixture's migrations
        follow it, and the scenarios expect it after a rollback to v1.0.0.

    fixture-repo.py next DEST
        one more release of the project as committed, tagged bench-N (created when missing):
        each call gives an update to deploy.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = Path("app/task_manager")
IDENTITY = ["-c", "user.name=fixture", "-c", "user.email=fixture@example.invalid"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *IDENTITY, *args], check=True, text=True,
                          capture_output=True).stdout


def export_project(dest: Path) -> None:
    """The project's committed app/ and frontend/ (never the work tree's edits) into dest."""
    for sub in ("app", "frontend"):
        subprocess.run(["rm", "-rf", str(dest / sub)], check=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", "HEAD", "app", "frontend"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def init(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(dest)], check=True)


def commit_and_tag(repo: Path, tag: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", tag)
    git(repo, "tag", tag)


def patch(path: Path, old: str, new: str) -> None:
    # Loudly: a refactor of the project that moves these lines must update this fixture.
    text = path.read_text()
    if old not in text:
        sys.exit(f"fixture-repo: {path} no longer has {old!r}")
    path.write_text(text.replace(old, new, 1))


def newest_migration(repo: Path) -> str:
    revisions = []
    for path in (repo / PKG / "migrations" / "versions").glob("*.py"):
        match = re.search(r"^revision = ['\"]([^'\"]+)['\"]", path.read_text(), re.MULTILINE)
        if match:
            revisions.append(match.group(1))
    return sorted(revisions)[-1]


def add_column_migration(revision: str, down: str, column: str, sa_type: str, doc: str) -> str:
    return f'''"""{doc}

Revision ID: {revision}
"""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("tasks") as batch_op:
        batch_op.add_column(sa.Column("{column}", {sa_type}, nullable=True))


def downgrade():
    with op.batch_alter_table("tasks") as batch_op:
        batch_op.drop_column("{column}")
'''


def set_version(repo: Path, old: str, new: str) -> None:
    patch(repo / "app/pyproject.toml", f'version = "{old}"', f'version = "{new}"')


def break_health(pkg: Path) -> None:
    """/health answers 503 although everything works: a release update.yml must roll back."""
    patch(pkg / "api/health.py", '    body["checks"] = {"database": "ok"}\n',
          '    body["checks"] = {"database": "ok"}\n'
          '    body["status"] = "BROKEN"  # the fixture release that must roll back\n'
          '    return jsonify(body), 503\n')


def releases(dest: Path) -> dict:
    subprocess.run(["rm", "-rf", str(dest)], check=True)
    init(dest)
    export_project(dest)
    base = newest_migration(dest)
    (dest / "BASE_SCHEMA").write_text(base + "\n")
    commit_and_tag(dest, "v1.0.0")

    pkg = dest / PKG
    patch(pkg / "models.py", "    completed_at: Mapped[datetime | None] = mapped_column(DateTime)\n",
          "    completed_at: Mapped[datetime | None] = mapped_column(DateTime)\n"
          "    estimate_minutes: Mapped[int | None] = mapped_column()\n")
    # The API's answer is declared in schemas.py: the new field goes there too.
    patch(pkg / "schemas.py", "    completed_at: Timestamp | None\n",
          "    completed_at: Timestamp | None\n    estimate_minutes: int | None = None\n")
    (pkg / "migrations/versions/9001_task_estimates.py").write_text(
        add_column_migration("9001", base, "estimate_minutes", "sa.Integer()", "Add tasks.estimate_minutes."))
    set_version(dest, "1.0.0", "1.1.0")
    commit_and_tag(dest, "v1.1.0")

    (pkg / "migrations/versions/9002_task_labels.py").write_text(
        add_column_migration("9002", "9001", "label", "sa.String(32)", "Add tasks.label."))
    break_health(pkg)
    set_version(dest, "1.1.0", "1.2.0")
    commit_and_tag(dest, "v1.2.0")
    return {"repo": str(dest), "tags": ["v1.0.0", "v1.1.0", "v1.2.0"], "base_schema": base}


def next_release(dest: Path, *, broken_health: bool = False) -> dict:
    if not (dest / ".git").exists():
        init(dest)
    export_project(dest)
    if broken_health:
        break_health(dest / PKG)
    tags = git(dest, "tag", "--list", "bench-*").split()
    number = 1 + max((int(t.split("-")[1]) for t in tags), default=0)
    tag = f"bench-{number}"
    # A marker, so that each release differs from the last even when the project did not change.
    (dest / "app" / "BENCH_BUILD").write_text(f"{tag}\n")
    commit_and_tag(dest, tag)
    return {"repo": str(dest), "tag": tag}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("releases", "v1.0.0, v1.1.0 and v1.2.0 (rebuilt from scratch)"),
                       ("next", "one more bench-N release")):
        command = sub.add_parser(name, help=text)
        command.add_argument("dest", type=Path)
        if name == "next":
            command.add_argument("--broken-health", action="store_true", help="its /health answers 503")
    args = parser.parse_args(argv)
    dest = args.dest.resolve()
    answer = releases(dest) if args.command == "releases" else next_release(dest, broken_health=args.broken_health)
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
