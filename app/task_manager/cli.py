"""Operator commands under `flask --app task_manager` or the `task-manager` console script.

The playbooks call these; each prints one machine-readable line or JSON document and
exits non-zero on failure, so a task can assert on the outcome.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from flask_migrate import downgrade, upgrade
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from . import dbcopy
from .api.auth import create_user
from .errors import ApiError
from .extensions import MIGRATIONS_DIR, db, engine_name, migration_engine
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


def _reason(exc: Exception) -> str:
    """The driver's message on one line (libpq's names the server, never a password)."""
    return " ".join(str(getattr(exc, "orig", None) or exc).split())


def database_command(function):
    """with_appcontext, and a database that is down or refuses is one line on stderr and
    exit 1, never a traceback."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (OperationalError, InterfaceError, PoolTimeoutError) as exc:
            raise click.ClickException(f"database unavailable: {_reason(exc)}") from None
        except dbcopy.CopyError as exc:
            raise click.ClickException(str(exc)) from None

    return with_appcontext(wrapper)


def _migrating(action, **kwargs) -> None:
    """Run a migration; a refusal (the API's role has no DDL rights) is an error, not a trace."""
    try:
        action(directory=MIGRATIONS_DIR, **kwargs)
    except RuntimeError as exc:  # a migration that refuses the data it finds says why and what to do
        raise click.ClickException(f"migration failed: {exc}") from None
    except DBAPIError as exc:
        if isinstance(exc, OperationalError | InterfaceError):
            raise
        hint = ("" if current_app.config["MIGRATION_DATABASE_URI"] or engine_name() != "postgresql"
                else " (set MIGRATION_DATABASE_URL to the schema owner's URL)")
        raise click.ClickException(f"migration failed: {_reason(exc)}{hint}") from None


@click.command("init-db")
@database_command
def init_db_command():
    """Create the database if needed and apply every migration (idempotent)."""
    _migrating(upgrade)
    click.echo(f"database at revision {_revision()}")


def _add_user(username: str, password: str) -> User:
    try:
        username = check_username({"username": username})
        check_password({"password": password})
        return create_user(username, password)
    except ApiError as exc:
        raise click.ClickException(exc.message) from None


@click.command("create-user")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              envvar="TASK_MANAGER_NEW_PASSWORD", help="Prompted for when not given (or TASK_MANAGER_NEW_PASSWORD).")
@database_command
def create_user_command(username: str, password: str):
    """Create a user account."""
    user = _add_user(username, password)
    click.echo(f"created user {user.username} (id {user.id})")


@click.command("create-demo-user")
@click.option("--json", "as_json", is_flag=True, help='Print {"username": ..., "created": true|false}.')
@database_command
def create_demo_user_command(as_json: bool):
    """Create the manual's demo account demo_user / demo_password, if missing."""
    exists = db.session.scalar(select(User).where(User.named(DEMO_USERNAME))) is not None
    if not exists:
        # Past the password rules on purpose: the manual documents this password, and the
        # account exists only where an operator asked for it (demos, smoke tests).
        create_user(DEMO_USERNAME, DEMO_PASSWORD)
    if as_json:
        click.echo(json.dumps({"username": DEMO_USERNAME, "created": not exists}))
    else:
        click.echo(f"unchanged: {DEMO_USERNAME} exists" if exists else f"created: {DEMO_USERNAME}")


@click.command("check-db")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"engine", "reachable", "ok", "problems"} (PostgreSQL: also "revision", "heads", "tables").')
@database_command
def check_db_command(as_json: bool):
    """SQLite: PRAGMA integrity_check and foreign_key_check. PostgreSQL: the schema is at
    the head revision and every table is readable. Exit 1 unless all is well.

    A PostgreSQL server this host cannot reach is "reachable": false, apart from damage: the
    data there is unknown, and nothing here may be restored over it (recover.yml)."""
    if engine_name() == "postgresql":
        try:
            report = _check_postgresql()
        except (OperationalError, InterfaceError, PoolTimeoutError) as exc:
            report = {"engine": "postgresql", "reachable": False, "ok": False,
                      "problems": [f"database unavailable: {_reason(exc)}"]}
    else:
        report = _check_sqlite()
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False))
    else:
        for line in report["problems"]:
            click.echo(line, err=True)
        if report["ok"]:
            click.echo("ok")
    if not report["ok"]:
        sys.exit(1)


def _check_sqlite() -> dict:
    problems = []
    if _sqlite_path() is None:
        db.session.execute(text("SELECT 1")).all()
    else:
        try:
            with db.engine.connect() as conn:
                integrity = [row[0] for row in conn.exec_driver_sql("PRAGMA integrity_check").all()]
                foreign = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
        except DBAPIError as exc:  # not even readable as a database
            integrity, foreign = [], []
            problems.append(f"integrity: cannot read the database: {exc.orig}")
        if integrity != ["ok"]:
            problems.extend(f"integrity: {line}" for line in integrity)
        problems.extend(f"foreign key violation: {tuple(row)}" for row in foreign)
    return {"engine": "sqlite", "reachable": True, "ok": not problems, "problems": problems}


def _check_postgresql() -> dict:
    """Connect as the API does; the revision must be the head of this release's migrations,
    and every table must answer a SELECT (the API's role has its grants)."""
    heads = sorted(_script(MIGRATIONS_DIR).get_heads())
    problems, tables = [], {}
    with db.engine.connect() as conn:
        revision = dbcopy.revision(conn)
        if revision not in heads:
            problems.append(f"schema: at revision {revision}, not at head {', '.join(heads)} (task-manager migrate)")
        for table in db.metadata.sorted_tables:
            try:
                with conn.begin_nested():
                    conn.execute(select(text("1")).select_from(table).limit(1)).all()
                tables[table.name] = "ok"
            except DBAPIError as exc:
                if isinstance(exc, OperationalError | InterfaceError):
                    raise
                tables[table.name] = "error"
                problems.append(f"table {table.name}: {_reason(exc)}")
        conn.rollback()
    return {"engine": "postgresql", "reachable": True, "ok": not problems, "problems": problems, "revision": revision,
            "heads": heads, "tables": tables}


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
    stats["engine"] = engine_name()
    path = _sqlite_path()
    if path is not None:
        stats["database_bytes"] = sum(
            p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()
        )
    elif stats["engine"] == "postgresql":
        stats["database_bytes"] = db.session.scalar(text("SELECT pg_database_size(current_database())"))
    return stats


@click.command("stats")
@click.option("--days", type=click.IntRange(min=1), default=None, help="Also count what happened in the last N days.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for the monthly report).")
@database_command
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
@database_command
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
    """The schema revision the database is at (None: no schema yet, or no database at all)."""
    with migration_engine() as engine, engine.connect() as conn:
        try:
            return dbcopy.revision(conn)
        except DBAPIError:
            if engine.dialect.name == "sqlite":
                return None  # a file that is no database (yet): nothing is at any revision
            raise


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
@database_command
def schema_command(release_dir: str | None):
    """Print JSON: the database's schema revision and the migrations' head(s)."""
    heads = sorted(_script(_migrations_of(release_dir) if release_dir else MIGRATIONS_DIR).get_heads())
    current = _revision()
    click.echo(json.dumps({"current": current, "heads": heads, "at_head": current in heads}))


@click.command("migrate")
@click.option("--to", "target", default="head", show_default=True, help="A revision; older ones migrate down.")
@database_command
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
    _migrating(downgrade if older else upgrade, revision=target)
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
              help="VACUUM only when at least this share of the file is free pages "
                   "(PostgreSQL: of a table's rows, live and dead, are dead).")
@click.option("--force", is_flag=True, help="VACUUM whatever the free space (PostgreSQL: every table).")
@click.option("--dry-run", is_flag=True, help="Say whether VACUUM would run and what it would reclaim; change nothing.")
@database_command
def optimize_command(min_free_ratio: float, force: bool, dry_run: bool):
    """The manual's VACUUM and ANALYZE, done only when they would do something.

    Prints one JSON line: bytes before and after, whether VACUUM ran (PostgreSQL: per
    table too). On PostgreSQL it connects as MIGRATION_DATABASE_URL's role when set: only
    a table's owner may VACUUM it.
    """
    if engine_name() == "postgresql":
        _optimize_postgresql(min_free_ratio, force, dry_run)
        return
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
                "engine": "sqlite", "vacuumed": False, "would_vacuum": bool(vacuum), "bytes_before": pages * page_size,
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
        "engine": "sqlite", "vacuumed": bool(vacuum), "bytes_before": pages * page_size,
        "bytes_after": after * page_size, "free_pages_before": free,
    }))


# The app's tables as the statistics see them, and whether this role may VACUUM each one
# (its owner, a member of the owner's role, the database's owner or a superuser).
PG_TABLE_FIGURES = text("""
    SELECT s.relname AS name, s.n_live_tup AS live, s.n_dead_tup AS dead,
           pg_total_relation_size(s.relid) AS bytes,
           pg_has_role(c.relowner, 'USAGE')
             OR pg_has_role((SELECT datdba FROM pg_database WHERE datname = current_database()), 'USAGE')
             OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS may_vacuum
    FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
    WHERE s.schemaname = current_schema() AND s.relname = ANY(:names)
    ORDER BY s.relname
""")


def _pg_tables(conn) -> dict:
    conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")  # this moment's figures, not a cached copy
    names = [table.name for table in db.metadata.sorted_tables]
    return {row.name: row for row in conn.execute(PG_TABLE_FIGURES, {"names": names})}


def _optimize_postgresql(min_free_ratio: float, force: bool, dry_run: bool) -> None:
    """VACUUM (ANALYZE) each table whose dead rows reach the ratio of its rows, live and dead."""
    with migration_engine() as engine, engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        before = _pg_tables(conn)
        chosen = {
            name for name, row in before.items()
            if force or (row.dead > 0 and row.dead / (row.live + row.dead) >= min_free_ratio)
        }
        refused = sorted(name for name in chosen if not before[name].may_vacuum)
        if refused and not dry_run:
            raise click.ClickException(
                f"only a table's owner may VACUUM it, and {', '.join(refused)} need it: run optimize with "
                "MIGRATION_DATABASE_URL set to the schema owner's URL"
            )
        if not dry_run:
            # VACUUM cannot run inside a transaction: this connection autocommits.
            for name in sorted(chosen):
                conn.exec_driver_sql(f'VACUUM (ANALYZE) "{name}"')
        after = before if dry_run else _pg_tables(conn)
    tables = {}
    for name, row in before.items():
        tables[name] = {
            "live_tuples": row.live, "dead_tuples": row.dead,
            "dead_ratio": round(row.dead / (row.live + row.dead), 4) if row.live + row.dead else 0.0,
            "bytes_before": row.bytes, "bytes_after": after[name].bytes,
            "vacuumed": name in chosen and not dry_run,
        }
        if dry_run:
            tables[name]["would_vacuum"] = name in chosen
            tables[name]["may_vacuum"] = bool(row.may_vacuum)
    report = {"engine": "postgresql", "vacuumed": bool(chosen) and not dry_run}
    if dry_run:
        report["would_vacuum"] = bool(chosen)
    report.update(
        bytes_before=sum(row.bytes for row in before.values()), bytes_after=sum(row.bytes for row in after.values()),
        tables=tables,
    )
    click.echo(json.dumps(report))


def _tables_and_heads():
    return db.metadata.sorted_tables, sorted(_script(MIGRATIONS_DIR).get_heads())


@contextmanager
def _source(source_url: str | None):
    """The database to read: --from's, or the app's own."""
    if source_url is None:
        yield db.engine
    else:
        with dbcopy.engine_for(source_url) as engine:
            yield engine


FROM_HELP = ("Read this database instead of the app's own (e.g. sqlite:////path/task_manager.db, "
             "once the settings name PostgreSQL).")


def _print_comparison(report: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report))
    else:
        for name, figures in report["tables"].items():
            state = "equal" if figures["equal"] else "DIFFERENT"
            click.echo(f"{name}: {figures['rows_source']} -> {figures['rows_target']} rows, {state}")
        if "copied" in report:
            click.echo("copied" if report["copied"] else "not copied: the copy differs, it was rolled back")
        else:
            click.echo("equal" if report["equal"] else "different")
    if not report["equal"]:
        sys.exit(1)


OTHER_DATABASE = "TASK_MANAGER_TARGET_DATABASE_URL"


def _other(source_url: str | None, other_url: str | None, option: str) -> str:
    """The other side: as given, or, when --from names the source, this app's own database
    as its schema owner (the move to PostgreSQL: the settings already name the new one, and
    no password passes through a command line)."""
    if other_url:
        return other_url
    if source_url is None:
        raise click.UsageError(f"give {option} (or set {OTHER_DATABASE}), or --from to use this app's own database")
    return current_app.config["MIGRATION_DATABASE_URI"] or current_app.config["SQLALCHEMY_DATABASE_URI"]


@click.command("copy-database")
@click.option("--from", "source_url", default=None, metavar="URL", help=FROM_HELP)
@click.option("--to", "target_url", default=None, envvar=OTHER_DATABASE, metavar="URL",
              help=f"The empty, migrated database to fill (postgresql://...; or set {OTHER_DATABASE}, "
                   "which keeps the password out of the process list). With --from, default: this app's "
                   "own database, as its schema owner.")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"tables": {name: {"rows_source", "rows_target", "checksum_source", '
                   '"checksum_target", "equal"}}, "equal", "copied"}.')
@database_command
def copy_database_command(source_url: str | None, target_url: str, as_json: bool):
    """Copy every table of this database into an empty one at the same schema revision.

    One transaction, parents before children; PostgreSQL's id sequences are set to the
    largest id copied; then every table's row count and checksum are compared on both
    sides, and the copy is committed only when all are equal. Exit 0 only then. A target
    that holds any row is refused: nothing is overwritten. Stop the API first.
    """
    tables, heads = _tables_and_heads()
    target_url = _other(source_url, target_url, "--to")
    try:
        with _source(source_url) as source:
            report = dbcopy.copy(source, target_url, tables, heads)
    except DBAPIError as exc:
        if isinstance(exc, OperationalError | InterfaceError):
            raise
        raise click.ClickException(f"copy failed, nothing was copied: {_reason(exc)}") from None
    _print_comparison(report, as_json)


@click.command("compare-database")
@click.option("--from", "source_url", default=None, metavar="URL", help=FROM_HELP)
@click.option("--with", "other_url", default=None, envvar=OTHER_DATABASE, metavar="URL",
              help=f"The database to compare with (or set {OTHER_DATABASE}). With --from, default: this "
                   "app's own database.")
@click.option("--json", "as_json", is_flag=True, help="Print the same JSON as copy-database, without \"copied\".")
@database_command
def compare_database_command(source_url: str | None, other_url: str, as_json: bool):
    """Compare every table's row count and checksum with another database (exit 0 when all equal)."""
    tables, heads = _tables_and_heads()
    other_url = _other(source_url, other_url, "--with")
    with _source(source_url) as source:
        _print_comparison(dbcopy.compare_with(source, other_url, tables, heads), as_json)


COMMANDS = (
    init_db_command, create_user_command, create_demo_user_command, check_db_command, stats_command,
    purge_completed_command, optimize_command, schema_command, migrate_command, count_writes_command,
    copy_database_command, compare_database_command,
)


def register(app: Flask) -> None:
    for command in COMMANDS:
        app.cli.add_command(command)
