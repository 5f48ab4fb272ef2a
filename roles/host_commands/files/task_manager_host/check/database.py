"""The PostgreSQL db host's measurements: the unit postgresql@15-main, what the server says
of itself (the database's size, client connections against max_connections, its data
directory, replication), the disks of the data directory and of the backups, and the
newest backup. psycopg (Debian's python3-psycopg) is imported only when the server is
asked: the app hosts do not have it."""

from __future__ import annotations

import collections
import shutil
from datetime import datetime
from pathlib import Path

from task_manager_host import paths
from task_manager_host.check import shared_figures
from task_manager_host.check.layout import CheckError

# The README describes a streaming replica; none is deployed, and the report says so only
# while pg_stat_replication agrees.
NO_REPLICATION = "none: one PostgreSQL server, no standby (the README describes a streaming replica on paper)"


def postgresql_figures(config: dict) -> tuple[dict, str | None]:
    """What PostgreSQL says of itself, and None; or {} and why it could not be asked."""
    try:
        import psycopg  # noqa: PLC0415  (Debian's python3-psycopg: only the db host has it)
    except ImportError as exc:
        raise CheckError("python3-psycopg is missing: the db host's check reads PostgreSQL through it") from exc
    try:
        # The maintenance database, never the task manager's own: every figure is the server's,
        # and inside a database the schema owner controls (its search_path, its functions and
        # operators) a superuser's query could run the owner's code with a superuser's rights.
        conn = psycopg.connect(dbname="postgres", user="postgres", connect_timeout=10, autocommit=True,
                               options="-c search_path=pg_catalog")
    except psycopg.Error as exc:
        return {}, f"does not accept connections: {one_line(exc)}"
    try:
        with conn:
            return read_postgresql(conn, config["db_name"]), None
    except psycopg.Error as exc:
        return {}, f"could not be measured: {one_line(exc)}"


def one_line(exc: BaseException) -> str:
    # libpq's messages run over several lines (with a hint); the report keeps one per finding.
    return " ".join(str(exc).split()) or type(exc).__name__


def read_postgresql(conn, db_name: str) -> dict:
    def value(sql: str, *params):
        return conn.execute(sql, params or None).fetchone()[0]

    # A server that hangs must not hang the playbook that waits for this report.
    conn.execute("SET statement_timeout = '10s'")
    standbys = [row[0] for row in conn.execute("SELECT coalesce(state, 'unknown') FROM pg_stat_replication")]
    return {
        "database_bytes": value("SELECT pg_database_size(%s::name)", db_name),
        # Sessions of clients, not the server's own workers; this check's own is left out,
        # as it is gone the moment the report is printed.
        "connections": value("SELECT count(*) FROM pg_stat_activity "
                             "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"),
        "max_connections": int(value("SHOW max_connections")),
        "data_directory": value("SHOW data_directory"),
        "replication": replication_text(standbys),
    }


def replication_text(states: list[str]) -> str:
    """The replication line from pg_stat_replication's states, one per standby."""
    if not states:
        return NO_REPLICATION
    counted = ", ".join(f"{count} {state}" for state, count in sorted(collections.Counter(states).items()))
    return f"{len(states)} standby{'s' if len(states) > 1 else ''}: {counted}"


def percent(part: int | None, whole: int | None) -> float | None:
    return round(100 * part / whole, 1) if part is not None and whole else None


def measure_database(config: dict) -> dict:
    """Every figure of the PostgreSQL host, nothing judged. A server that does not answer
    leaves its own figures None and says why in postgresql_error; the disks and the
    backups are measured all the same."""
    now = datetime.now()
    units = shared_figures.systemd([paths.PG_UNIT])
    pg, error = postgresql_figures(config)
    # Debian's cluster 15/main. Its data directory is asked of the server; this one is measured
    # when the server does not answer, because a full disk is a common reason for that.
    data_dir = Path(pg.get("data_directory") or paths.PG_DATA_DIR)
    disk = shutil.disk_usage(data_dir) if data_dir.is_dir() else None
    backup_dir = Path(config["backup_dir"])
    backup_disk = shutil.disk_usage(backup_dir) if backup_dir.is_dir() else disk
    return {
        "checked_at": now.strftime("%Y-%m-%d %H:%M:%S"),
        "kind": "database",
        "units": shared_figures.unit_states(units),
        "postgresql_error": error,
        "database": config["db_name"],
        "database_mb": shared_figures.megabytes(pg.get("database_bytes")),
        "connections": pg.get("connections"),
        "max_connections": pg.get("max_connections"),
        "connections_percent": percent(pg.get("connections"), pg.get("max_connections")),
        "data_directory": str(data_dir) if disk else None,
        **shared_figures.disk_figures(disk, "disk"),
        **shared_figures.disk_figures(backup_disk, "backup_disk"),
        "newest_backup_age_hours": shared_figures.age_hours(shared_figures.newest_backup(backup_dir)),
        "replication": pg.get("replication"),
    }
