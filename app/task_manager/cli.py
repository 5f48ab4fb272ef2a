"""Operator commands under `flask --app task_manager` or the `task-manager` console script.

The playbooks call these; each prints one machine-readable line or JSON document and
exits non-zero on failure, so a task can assert on the outcome.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime, timedelta
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext
from flask_migrate import downgrade, upgrade
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from .api.auth import create_user
from .errors import ApiError
from .extensions import MIGRATIONS_DIR, db
from .models import TASK_STATUSES, Task, User, utcnow
from .validation import password as check_password
from .validation import username as check_username

DEMO_USERNAME = "demo_user"
DEMO_PASSWORD = "demo_password"  # noqa: S105  (the manual's documented demo account; opt-in only


def _sqlite_path() -> Path | None:
    uri = current_app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("sqlite:///") and ":memory:" not in uri:
        return Path(uri.removeprefix("sqlite:///"))
    return None


@click.command("init-db")
@with_appcontext
def init_db_command():
    """Create the database if needed and apply every migration (idempotent)."""
    upgrade(directory=MIGRATIONS_DIR)
    revision = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()
    click.echo(f"database at revision {revision}")


def _add_user(username: str, password: str) -> User:
    try:
        check_username({"username": username})
        check_password({"password": password})
        return create_user(username, password)
    except ApiError as exc:
        raise click.ClickException(exc.message) from None


@click.command("create-user")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              envvar="TASK_MANAGER_NEW_PASSWORD", help="Prompted for when not given (or TASK_MANAGER_NEW_PASSWORD).")
@with_appcontext
def create_user_command(username: str, password: str):
    """Create a user account."""
    user = _add_user(username, password)
    click.echo(f"created user {user.username} (id {user.id})")


@click.command("create-demo-user")
@click.option("--json", "as_json", is_flag=True, help='Print {"username": ..., "created": true|false}.')
@with_appcontext
def create_demo_user_command(as_json: bool):
    """Create the manual's demo account demo_user / demo_password, if missing."""
    exists = db.session.scalar(select(User).where(User.username == DEMO_USERNAME)) is not None
    if not exists:
        # Past the password rules on purpose: the manual documents this password, and the
        # account exists only where an operator asked for it (demos, smoke tests).
        create_user(DEMO_USERNAME, DEMO_PASSWORD)
    if as_json:
        click.echo(json.dumps({"username": DEMO_USERNAME, "created": not exists}))
    else:
        click.echo(f"unchanged: {DEMO_USERNAME} exists" if exists else f"created: {DEMO_USERNAME}")


@click.command("check-db")
@with_appcontext
def check_db_command():
    """PRAGMA integrity_check and foreign_key_check; exit 1 unless both are clean."""
    if _sqlite_path() is None:
        db.session.execute(text("SELECT 1")).all()
        click.echo("ok")
        return
    try:
        with db.engine.connect() as conn:
            integrity = [row[0] for row in conn.exec_driver_sql("PRAGMA integrity_check").all()]
            foreign = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    except DBAPIError as exc:  # not even readable as a database
        click.echo(f"integrity: cannot read the database: {exc.orig}", err=True)
        sys.exit(1)
    if integrity != ["ok"] or foreign:
        for line in integrity:
            click.echo(f"integrity: {line}", err=True)
        for row in foreign:
            click.echo(f"foreign key violation: {tuple(row)}", err=True)
        sys.exit(1)
    click.echo("ok")


def usage_stats(since: datetime | None) -> dict:
    counts = dict.fromkeys(TASK_STATUSES, 0)
    counts.update(db.session.execute(select(Task.status, func.count()).group_by(Task.status)).all())
    stats = {
        "generated_at": utcnow().isoformat(timespec="seconds") + "Z",
        "users": db.session.scalar(select(func.count(User.id))),
        "tasks": {"total": sum(counts.values()), "by_status": counts},
    }
    if since is not None:
        stats["period"] = {
            "since": since.isoformat(timespec="seconds") + "Z",
            "users_registered": db.session.scalar(select(func.count(User.id)).where(User.created_at >= since)),
            "tasks_created": db.session.scalar(select(func.count(Task.id)).where(Task.created_at >= since)),
            "tasks_completed": db.session.scalar(select(func.count(Task.id)).where(Task.completed_at >= since)),
        }
    path = _sqlite_path()
    if path is not None:
        stats["database_bytes"] = sum(
            p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()
        )
    return stats


@click.command("stats")
@click.option("--days", type=click.IntRange(min=1), default=None, help="Also count what happened in the last N days.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for the monthly report).")
@with_appcontext
def stats_command(days: int | None, as_json: bool):
    """Usage statistics: users, tasks by status, database size."""
    since = utcnow() - timedelta(days=days) if days else None
    stats = usage_stats(since)
    if as_json:
        click.echo(json.dumps(stats, ensure_ascii=False, indent=2))
        return
    click.echo(f"users: {stats['users']}")
    click.echo(f"tasks: {stats['tasks']['total']}")
    for status, count in stats["tasks"]["by_status"].items():
        click.echo(f"  {status}: {count}")
    for key, value in stats.get("period", {}).items():
        click.echo(f"{key}: {value}")
    if "database_bytes" in stats:
        click.echo(f"database_bytes: {stats['database_bytes']}")


@click.command("purge-completed")
@click.option("--days", type=click.IntRange(min=1), default=90, show_default=True)
@click.option("--dry-run", is_flag=True, help="Count what would be deleted, delete nothing.")
@click.option("--json", "as_json", is_flag=True, help='Print {"days", "dry_run", "matched", "deleted"}.')
@with_appcontext
def purge_completed_command(days: int, dry_run: bool, as_json: bool):
    """Delete completed tasks whose completed_at is older than N days (the manual's 11.2)."""
    cutoff = utcnow() - timedelta(days=days)
    condition = (Task.status == "completed") & (Task.completed_at < cutoff)
    matched = db.session.scalar(select(func.count(Task.id)).where(condition))
    deleted = 0
    if not dry_run and matched:
        deleted = Task.query.filter(condition).delete()
        db.session.commit()
    if as_json:
        click.echo(json.dumps({"days": days, "dry_run": dry_run, "matched": matched, "deleted": deleted}))
    elif dry_run:
        click.echo(f"would delete {matched} completed tasks older than {days} days")
    else:
        click.echo(f"deleted {deleted} completed tasks older than {days} days")


def _revision() -> str | None:
    """The schema revision the database is at (None: no schema yet)."""
    with db.engine.connect() as conn:
        try:
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        except DBAPIError:
            return None


def _script(directory: str):
    from alembic.config import Config  # noqa: PLC0415  (only the schema commands need Alembic's API)
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    config = Config()
    config.set_main_option("script_location", directory)
    return ScriptDirectory.from_config(config)


def _migrations_of(release_dir: str) -> str:
    found = sorted(Path(release_dir).glob("venv/lib/python*/site-packages/task_manager/migrations"))
    if not found:
        raise click.ClickException(f"no task_manager migrations in the release at {release_dir}")
    return str(found[-1])


@click.command("schema")
@click.option("--migrations-of", "release_dir", default=None,
              help="Report the heads of another release's migrations (a release directory).")
@with_appcontext
def schema_command(release_dir: str | None):
    """Print JSON: the database's schema revision and the migrations' head(s)."""
    heads = sorted(_script(_migrations_of(release_dir) if release_dir else MIGRATIONS_DIR).get_heads())
    current = _revision()
    click.echo(json.dumps({"current": current, "heads": heads, "at_head": current in heads}))


@click.command("migrate")
@click.option("--to", "target", default="head", show_default=True, help="A revision; older ones migrate down.")
@with_appcontext
def migrate_command(target: str):
    """Upgrade (or downgrade) the schema to a revision; print JSON {"from", "to", "changed"}."""
    from alembic.util import CommandError  # noqa: PLC0415

    before = _revision()
    script = _script(MIGRATIONS_DIR)
    try:
        known = target == "head" or script.get_revision(target) is not None
    except CommandError:
        known = False
    if not known:
        raise click.ClickException(f"unknown revision {target!r}")
    ancestors = {rev.revision for rev in script.iterate_revisions(before, "base")} if before else set()
    older = target not in ("head", before) and target in ancestors
    if older:
        downgrade(directory=MIGRATIONS_DIR, revision=target)
    else:
        upgrade(directory=MIGRATIONS_DIR, revision=target)
    after = _revision()
    click.echo(json.dumps({"from": before, "to": after, "changed": before != after}))


# The access-log line (task_manager/requestlog.py):
#   <asctime> <client> "<METHOD> <path>" <status> <ms>ms <size>, every field escaped.
ACCESS_LINE = re.compile(
    r'(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d{3} \S+ "(?P<method>[A-Z]+) (?P<path>[^"]*)" '
    r"(?P<status>\d{3}) \d+\.\dms \S+"
)
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@click.command("count-writes")
@click.option("--since", required=True, help="YYYY-MM-DD HH:MM:SS, the logs' local time.")
@with_appcontext
def count_writes_command(since: str):
    """Print JSON: successful task writes in logs/access.log since a time (what a restore loses)."""
    try:
        datetime.strptime(since, "%Y-%m-%d %H:%M:%S")  # compared as text with the log's local stamps
    except ValueError:
        raise click.BadParameter("use YYYY-MM-DD HH:MM:SS", param_hint="--since") from None
    log = Path(current_app.config["LOG_DIR"]) / "access.log"
    writes = 0
    if log.exists():
        with log.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                match = ACCESS_LINE.fullmatch(line.rstrip("\n"))
                writes += bool(
                    match and match["stamp"] >= since and match["method"] in WRITE_METHODS
                    and match["path"].startswith("/api/tasks") and match["status"].startswith("2")
                )
    click.echo(json.dumps({"since": since, "task_writes": writes}))


@click.command("optimize")
@click.option("--min-free-ratio", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="VACUUM only when at least this share of the file is free pages.")
@click.option("--force", is_flag=True, help="VACUUM whatever the free space.")
@click.option("--dry-run", is_flag=True, help="Say whether VACUUM would run and what it would reclaim; change nothing.")
@with_appcontext
def optimize_command(min_free_ratio: float, force: bool, dry_run: bool):
    """The manual's VACUUM and ANALYZE, done only when they would do something.

    Prints one JSON line: pages before and after, whether VACUUM ran.
    """
    path = _sqlite_path()
    if path is None:
        click.echo(json.dumps({"vacuumed": False, "reason": "not SQLite"}))
        return
    # VACUUM cannot run inside a transaction.
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        page_size = conn.exec_driver_sql("PRAGMA page_size").scalar()
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
        free = conn.exec_driver_sql("PRAGMA freelist_count").scalar()
        vacuum = force or (pages > 0 and free / pages >= min_free_ratio and free > 0)
        if dry_run:
            click.echo(json.dumps({
                "vacuumed": False, "would_vacuum": bool(vacuum), "bytes_before": pages * page_size,
                "bytes_after": (pages - free) * page_size if vacuum else pages * page_size, "free_pages_before": free,
            }))
            return
        if vacuum:
            conn.exec_driver_sql("VACUUM")
            conn.exec_driver_sql("ANALYZE")
        # PRAGMA optimize runs ANALYZE itself only on tables whose statistics are stale.
        conn.exec_driver_sql("PRAGMA optimize")
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        after = conn.exec_driver_sql("PRAGMA page_count").scalar()
    click.echo(json.dumps({
        "vacuumed": bool(vacuum), "bytes_before": pages * page_size, "bytes_after": after * page_size,
        "free_pages_before": free,
    }))


COMMANDS = (
    init_db_command, create_user_command, create_demo_user_command, check_db_command, stats_command,
    purge_completed_command, optimize_command, schema_command, migrate_command, count_writes_command,
)


def register(app: Flask) -> None:
    for command in COMMANDS:
        app.cli.add_command(command)


def _factory() -> Flask:
    from . import create_app  # noqa: PLC0415  (the package imports this module)

    return create_app()


@click.group(cls=FlaskGroup, create_app=_factory, add_default_commands=True, load_dotenv=False)
def main():
    """task-manager: the operator's commands (same as `flask --app task_manager ...`)."""


if __name__ == "__main__":
    main()
