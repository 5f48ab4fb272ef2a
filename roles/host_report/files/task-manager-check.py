#!/usr/bin/python3
"""task-manager-check: the manual's daily, weekly and monthly checks and section 9's
limits, measured on the host and printed as one JSON document.

  task-manager-check [--max-response-ms 200] [--max-db-mb 100] [--max-memory-mb 512]
                     [--max-cpu-percent 50] [--max-disk-percent 80] [--max-backup-age-hours H]
                     [--max-connections-percent 80] [--max-errors N] [--max-failed-logins N] [--no-record]

The layout says which host this is, and so what is measured ("kind" in the document):
  app       the API's host: units, /health, counts from the logs, memory, CPU, disk,
            and, where the database is kept here (SQLite), its size and the newest backup.
            On an app host of a PostgreSQL deployment (database_on_this_host false)
            database_mb, the backup disk and newest_backup_age_hours are None and
            database_checked_on names the db host, where they are measured.
  database  the PostgreSQL db host (database_engine postgresql, database_on_this_host
            true): the unit postgresql@15-main, the database's size, client connections
            against max_connections, the disks of the data directory and of the backups,
            the newest backup, and replication (pg_stat_replication; none is deployed).
            It connects as postgres over the local socket, with Debian's python3-psycopg;
            libpq's PGHOST and PGPORT may point elsewhere. A server that does not answer
            is a broken limit in the report, not a failed check.
Counts from the logs (errors, failed logins, request times) are since the previous
check, whose time is kept in the state file (app hosts only); --no-record leaves it as it is.
measure() and measure_database() gather the figures (on an app host the service's own
files read as the service user), judge() holds them to the limits; the document is both.

Installed as /usr/local/sbin/task-manager-check; roles/host_report also runs this file as it is.
Paths from the environment: TASK_MANAGER_LAYOUT (the host's layout, written by the base
role: /etc/task-manager/layout.json), TASK_MANAGER_CHECK_STATE (the time of the previous
check, /var/lib/task-manager/check-state.json), TASK_MANAGER_CHECK_FACTS (the release
history; by default the layout's facts_file).
Exit status 0 whatever the findings (the report says which limits are broken), 1 when
the check itself could not run, 2 with --fail-on-breach when a limit is broken.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import re
import shutil
import ssl
import stat
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

# Where it reads and keeps things; the environment may point elsewhere (the tests do).
DEFAULT_LAYOUT = "/etc/task-manager/layout.json"  # where things are: written by the base role
DEFAULT_STATE = "/var/lib/task-manager/check-state.json"
DEFAULT_FACTS = "/etc/ansible/facts.d/task_manager.fact"  # the release history the playbooks keep
# Absolute path: root runs this command, so PATH decides nothing. A module constant, so the
# tests can point it at a stand-in.
SYSTEMCTL = "/usr/bin/systemctl"
# Debian's cluster 15/main. Its data directory is asked of the server; this one is measured
# when the server does not answer, because a full disk is a common reason for that.
PG_UNIT = "postgresql@15-main.service"
PG_DATA_DIR = "/var/lib/postgresql/15/main"
# The README describes a streaming replica; none is deployed, and the report says so only
# while pg_stat_replication agrees.
NO_REPLICATION = "none: one PostgreSQL server, no standby (the README describes a streaming replica on paper)"
NEVER = "0000-00-00 00:00:00"  # the "previous check" before the first one: every line counts
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")
# Whole lines only, in the formats the app writes (task_manager/requestlog.py and
# logging_setup.py), so text a client managed to get into a line never counts: the app
# escapes line breaks, quotes and backslashes in every field it logs.
#   access.log:        <asctime> <client> "<METHOD> <path>" <status> <ms>ms <size>
ACCESS_LINE = re.compile(
    r'(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (?P<client>[0-9A-Fa-f.:]+|-) '
    r'"(?P<method>[^"\s]+) (?P<path>[^"]*)" (?P<status>\d{3}) (?P<ms>\d+\.\d)ms (?P<size>\d+|-)'
)
#   task_manager.log:  <asctime> <LEVEL> [<pid>] <logger>: <message>
APP_LINE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) \[\d+\] (?P<logger>[\w.]+): "
# The warning auth.py writes for a wrong password (and for tries made while slowed down).
FAILED_LOGIN = re.compile(APP_LINE + r"認証失敗")
ERROR_LINE = re.compile(APP_LINE)
# Sign-in and registration hash passwords with scrypt on purpose (about 0.1-0.2 s):
# they are left out of the response-time figure, which is about the task API.
SLOW_BY_DESIGN = ("/api/auth/login", "/api/auth/register", "/api/auth/password")


class CheckError(Exception):
    """The check itself could not run: exit status 1."""


def config_file() -> Path:
    return Path(os.environ.get("TASK_MANAGER_LAYOUT", DEFAULT_LAYOUT))


def state_file() -> Path:
    return Path(os.environ.get("TASK_MANAGER_CHECK_STATE", DEFAULT_STATE))


def facts_file(config: dict) -> Path:
    return Path(os.environ.get("TASK_MANAGER_CHECK_FACTS") or config.get("facts_file") or DEFAULT_FACTS)


def holds_database(config: dict) -> bool:
    """Whether the database and its backups are kept on this host. Layouts written before
    PostgreSQL have no such key: a single SQLite host holds it."""
    # A string "False" would be truthy; the layout is JSON that people also edit by hand.
    return str(config.get("database_on_this_host", True)).lower() != "false"


def host_kind(config: dict) -> str:
    """database on the PostgreSQL host, app everywhere else (a SQLite host included)."""
    if config.get("database_engine") == "postgresql" and holds_database(config):
        return "database"
    return "app"


def newest_backup(backup_dir: Path) -> float | None:
    """The mtime of the newest backup set's manifest; safety copies (taken before a
    restore) are not backups. A link is skipped: the backup command writes plain files."""
    manifests = [p for p in backup_dir.glob("*/backup_*.json") if p.parent.name != "safety" and not p.is_symlink()]
    return max((p.stat().st_mtime for p in manifests), default=None)


def age_hours(mtime: float | None) -> float | None:
    return round((time.time() - mtime) / 3600, 2) if mtime else None


def megabytes(size: int | None, digits: int = 2) -> float | None:
    return None if size is None else round(size / 1048576, digits)


def disk_figures(usage, name: str) -> dict:
    """<name>_percent and <name>_free_mb of a shutil.disk_usage result (None: not measured)."""
    if usage is None:
        return {f"{name}_percent": None, f"{name}_free_mb": None}
    return {f"{name}_percent": round(100 * usage.used / usage.total, 1), f"{name}_free_mb": round(usage.free / 1048576)}


def unit_states(units: dict) -> dict:
    return {u: {k: v.get(k) for k in ("ActiveState", "UnitFileState", "NRestarts")} for u, v in units.items()}


def since_lines(path: Path, since: str):
    """Lines of a log (and its newest rotated file) stamped at or after `since`."""
    files = [*sorted(path.parent.glob(path.name + "-*"))[-1:], path]
    for file in files:
        if file.suffix == ".gz" or not file.exists():
            continue
        with file.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                match = STAMP.match(line)
                if match and match.group(1) >= since:
                    yield line


def request_durations(lines) -> list[float]:
    """Milliseconds of each request in access-log lines, sign-in and registration aside."""
    durations = []
    for line in lines:
        match = ACCESS_LINE.fullmatch(line.rstrip("\n"))
        if match and match["path"].split("?", 1)[0] not in SLOW_BY_DESIGN:
            durations.append(float(match["ms"]))
    return durations


def failed_logins(lines) -> int:
    """Failed sign-ins: only the app's own warning line, from its own logger."""
    return sum(
        1 for line in lines
        if (m := FAILED_LOGIN.match(line)) and m["level"] == "WARNING" and m["logger"] == "task_manager"
    )


def error_lines(lines) -> int:
    return sum(1 for line in lines if (m := ERROR_LINE.match(line)) and m["level"] in ("ERROR", "CRITICAL"))


def systemd(units: list[str]) -> dict:
    props = "ActiveState,SubState,UnitFileState,NRestarts,MainPID,MemoryCurrent"
    # S603: a fixed absolute program and an argument list, no shell.
    out = subprocess.run([SYSTEMCTL, "show", *units, "-p", props], capture_output=True, text=True, check=False)  # noqa: S603
    result, blocks = {}, out.stdout.strip().split("\n\n")
    for unit, block in zip(units, blocks, strict=False):
        result[unit] = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
    return result


def process_tree(main_pid: int) -> list[int]:
    pids, children = [main_pid], {}
    for proc_stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = proc_stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(proc_stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    for pid in pids:
        pids.extend(children.get(pid, []))
    return pids


def memory_bytes(pids: list[int]) -> int:
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total


def cpu_percent(pids: list[int], seconds: float = 1.0) -> float:
    def ticks() -> int:
        total = 0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except (OSError, IndexError, ValueError):
                continue
        return total

    start = ticks()
    time.sleep(seconds)
    used = (ticks() - start) / os.sysconf("SC_CLK_TCK")
    return round(100 * used / seconds / (os.cpu_count() or 1), 1)


def service_files(config: dict, since: str) -> dict:
    """What the service's own files say: request times, errors and failed sign-ins from
    its logs, the database's size, the newest backup (those two None on a host that does
    not hold the database). They belong to the service user, so root reads them as that
    user: a link planted among them reads nothing more."""
    logs = Path(config["log_dir"])
    database = Path(config["database"])
    here = holds_database(config)
    return {
        "durations": request_durations(since_lines(logs / "access.log", since)),
        "errors": error_lines(since_lines(logs / "errors.log", since)),
        "failed_logins": failed_logins(since_lines(logs / "task_manager.log", since)),
        "db_bytes": sum(p.stat().st_size for p in (database, Path(f"{database}-wal"), Path(f"{database}-shm"))
                        if p.exists()) if here else None,
        "newest_backup": newest_backup(Path(config["backup_dir"])) if here else None,
    }


def as_service_user(config: dict, func, *args) -> dict:
    """func(*args) in a child that has dropped to the service user; its JSON result."""
    if os.geteuid() != 0:
        return func(*args)
    import grp  # noqa: PLC0415  (Unix-only, needed only here)
    import pwd  # noqa: PLC0415

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop, measure, answer, and never return into the parent's code
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(grp.getgrnam(config["group"]).gr_gid)
            os.setuid(pwd.getpwnam(config["user"]).pw_uid)
            with os.fdopen(write_end, "w", encoding="utf-8") as out:
                json.dump(func(*args), out)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, encoding="utf-8") as answer:
        text = answer.read()
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise OSError(f"measuring the service's files as {config['user']} failed")
    return json.loads(text)


def health(url: str) -> dict:
    times, body, status = [], {}, None
    # The host asks itself over loopback: its certificate names the public domain.
    context = ssl._create_unverified_context() if re.match(r"https://(127\.|localhost[:/])", url) else None  # noqa: S323
    for _ in range(3):
        started = time.perf_counter()
        try:
            # S310: the loopback URL comes from the role's own settings.
            with urllib.request.urlopen(url, timeout=5, context=context) as response:  # noqa: S310
                status, body = response.status, json.load(response)
        except Exception as exc:  # any failure is the finding
            status, body = getattr(exc, "code", None), {"error": type(exc).__name__}
        if not isinstance(body, dict):
            body = {"error": "not a JSON object"}
        times.append((time.perf_counter() - started) * 1000)
    return {"url": url, "status": status, "ok": status == 200 and body.get("status") == "OK",
            "ms": round(statistics.median(times), 1), "release": body.get("release"), "version": body.get("version")}


def read_json(path: Path) -> dict:
    """A JSON object from a file, or {} when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_config() -> dict:
    path = config_file()
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckError(f"cannot read {path}: {exc}") from exc


def service_state(config: dict) -> tuple[dict, list[int], int]:
    """The units' systemd state, the service's process tree and its memory in bytes."""
    service = config.get("service", "task-manager")
    units = systemd([f"{service}.service", f"{service}.socket", "nginx.service", "cron.service"])
    main_pid = int(units[f"{service}.service"].get("MainPID", "0") or 0)
    pids = process_tree(main_pid) if main_pid else []
    memory = units[f"{service}.service"].get("MemoryCurrent", "")
    return units, pids, int(memory) if memory.isdigit() else memory_bytes(pids)


# A p95 of fewer requests is only the slowest of them: one cold request after a restart
# would break the manual's limit. It is reported, and judged from this many requests on.
P95_MIN_REQUESTS = 20


def p95(durations: list[float]) -> float | None:
    if len(durations) >= 2:
        return round(statistics.quantiles(durations, n=20)[-1], 1)
    return durations[0] if durations else None


def measure(config: dict, args: argparse.Namespace) -> dict:
    """Every figure the check reports, measured and nothing judged: the report without
    its limits and breaches. OSError or ValueError when the check itself cannot run."""
    now = datetime.now()
    since = read_json(state_file()).get("last_check", NEVER)
    if not isinstance(since, str):
        since = NEVER
    units, pids, memory = service_state(config)
    files = as_service_user(config, service_files, config, since)
    durations = files["durations"]
    here = holds_database(config)
    disk = shutil.disk_usage(Path(config["database"]).parent)
    # Backups often live on a disk of their own; a full one stops the nightly backup.
    # Where the database is elsewhere, so are its backups: their disk is measured there.
    backup_dir = Path(config["backup_dir"])
    backup_disk = (shutil.disk_usage(backup_dir) if backup_dir.is_dir() else disk) if here else None
    facts = read_json(facts_file(config))
    return {
        "checked_at": now.strftime("%Y-%m-%d %H:%M:%S"),
        "kind": "app",
        "since": None if since.startswith("0000") else since,
        "units": unit_states(units),
        "health": [health(args.api_url), health(args.web_url)],
        "requests": len(durations),
        "request_ms_p95": p95(durations),
        "request_ms_p95_judged": len(durations) >= P95_MIN_REQUESTS,
        "errors": files["errors"],
        "failed_logins": files["failed_logins"],
        "database_mb": megabytes(files["db_bytes"]),
        "memory_mb": megabytes(memory, 1),
        "cpu_percent": cpu_percent(pids) if pids else None,
        **disk_figures(disk, "disk"),
        **disk_figures(backup_disk, "backup_disk"),
        "newest_backup_age_hours": age_hours(files["newest_backup"]),
        "database_checked_on": None if here else config.get("db_host"),
        "release": facts.get("current"), "version": facts.get("version"),
        "history": facts.get("history", [])[:5],
    }


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
    units = systemd([PG_UNIT])
    pg, error = postgresql_figures(config)
    data_dir = Path(pg.get("data_directory") or PG_DATA_DIR)
    disk = shutil.disk_usage(data_dir) if data_dir.is_dir() else None
    backup_dir = Path(config["backup_dir"])
    backup_disk = shutil.disk_usage(backup_dir) if backup_dir.is_dir() else disk
    return {
        "checked_at": now.strftime("%Y-%m-%d %H:%M:%S"),
        "kind": "database",
        "units": unit_states(units),
        "postgresql_error": error,
        "database": config["db_name"],
        "database_mb": megabytes(pg.get("database_bytes")),
        "connections": pg.get("connections"),
        "max_connections": pg.get("max_connections"),
        "connections_percent": percent(pg.get("connections"), pg.get("max_connections")),
        "data_directory": str(data_dir) if disk else None,
        **disk_figures(disk, "disk"),
        **disk_figures(backup_disk, "backup_disk"),
        "newest_backup_age_hours": age_hours(newest_backup(backup_dir)),
        "replication": pg.get("replication"),
    }


# The backups' schedule, as the backup role writes it in cron: each line starts one kind's
# unit. The newest backup may be as old as the longest gap between two runs, plus the time
# a run takes and a little slack; without a schedule (cron turned off), the daily one's.
CRON_DIR = "/etc/cron.d"
BACKUP_CRON_LINE = re.compile(r"^\s*(?P<spec>(\S+\s+){4}\S+)\s+\S+\s+.*task-manager-backup@(?P<kind>[a-z-]+)\.service")
BACKUP_SLACK_HOURS = 2
UNSCHEDULED_BACKUP_AGE_HOURS = 26
CRON_FIELDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def cron_values(field: str, low: int, high: int) -> set[int]:
    """One cron field's values: *, N, A-B, */S, A-B/S and lists of them."""
    values: set[int] = set()
    for part in field.split(","):
        span, _, step = part.partition("/")
        if span == "*":
            first, last = low, high
        elif "-" in span:
            first, last = (int(x) for x in span.split("-", 1))
        else:
            first = last = int(span)
        if not low <= first <= last <= high:
            raise ValueError(f"{part} is outside {low}-{high}")
        values |= set(range(first, last + 1, int(step) if step else 1))
    return values


def backup_schedule(cron_dir: Path) -> list[str]:
    """The five-field times of the cron lines that start a backup, in the project's cron files."""
    specs = []
    for path in sorted(cron_dir.glob("task-manager-*")):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        specs += [match.group("spec") for match in map(BACKUP_CRON_LINE.match, lines) if match]
    return specs


def longest_gap_hours(specs: list[str], start: datetime | None = None, days: int = 400) -> float | None:
    """The longest time between two runs of any of these cron times, over a year and a bit
    (every month length and weekday meet): None when they never run."""
    start = (start or datetime(2026, 1, 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    runs: list[datetime] = []
    for spec in specs:
        fields = spec.split()
        minutes, hours, days_of_month, months, weekdays = (
            cron_values(field, low, high) for field, (low, high) in zip(fields, CRON_FIELDS, strict=True))
        weekdays = {day % 7 for day in weekdays}
        # cron's rule: with both the day of the month and the weekday restricted, either runs it.
        either = fields[2] != "*" and fields[4] != "*"
        for offset in range(days):
            day = start + timedelta(days=offset)
            by_date, by_weekday = day.day in days_of_month, day.isoweekday() % 7 in weekdays
            if day.month in months and ((by_date or by_weekday) if either else (by_date and by_weekday)):
                runs += [day.replace(hour=h, minute=m) for h in sorted(hours) for m in sorted(minutes)]
    runs.sort()
    if not runs:
        return None
    gaps = [(later - earlier).total_seconds() / 3600 for earlier, later in itertools.pairwise(runs)]
    return round(max(gaps), 2) if gaps else None


def backup_age_limit(given: float | None, cron_dir: Path | None = None) -> float:
    """The limit the newest backup's age is held to: the one given, else the schedule's."""
    if given:
        return given
    try:
        gap = longest_gap_hours(backup_schedule(cron_dir or Path(os.environ.get("TASK_MANAGER_CRON_DIR", CRON_DIR))))
    except ValueError:
        gap = None
    return UNSCHEDULED_BACKUP_AGE_HOURS if gap is None else gap + BACKUP_SLACK_HOURS


def limits_from(args: argparse.Namespace, kind: str = "app") -> dict:
    backup_age_hours = backup_age_limit(args.max_backup_age_hours)
    if kind == "database":
        return {"database_mb": args.max_db_mb, "connections_percent": args.max_connections_percent,
                "disk_percent": args.max_disk_percent, "backup_age_hours": backup_age_hours}
    return {
        "response_ms": args.max_response_ms, "database_mb": args.max_db_mb, "memory_mb": args.max_memory_mb,
        "cpu_percent": args.max_cpu_percent, "disk_percent": args.max_disk_percent,
        "backup_age_hours": backup_age_hours, "errors": args.max_errors,
        "failed_logins": args.max_failed_logins, "failed_logins_5m": args.failed_login_burst,
    }


# Report figure, the limit it is held to, and how a breach reads ({} the figure, {name}
# any other figure of the report).
FIGURE_LIMITS = (
    ("request_ms_p95", "response_ms", "p95 request time since the last check {} ms"),
    ("database_mb", "database_mb", "database is {} MB"),
    ("memory_mb", "memory_mb", "service memory is {} MB"),
    ("cpu_percent", "cpu_percent", "service CPU is {} %"),
    ("disk_percent", "disk_percent", "disk is {} % used"),
    ("backup_disk_percent", "disk_percent", "backup disk is {} % used"),
    ("errors", "errors", "{} errors in errors.log since the last check"),
    ("failed_logins", "failed_logins", "{} failed logins since the last check"),
)
DATABASE_FIGURE_LIMITS = (
    ("database_mb", "database_mb", "database is {} MB"),
    ("connections_percent", "connections_percent",
     "{} % of max_connections in use ({connections} of {max_connections})"),
    ("disk_percent", "disk_percent", "data directory's disk is {} % used"),
    ("backup_disk_percent", "disk_percent", "backup disk is {} % used"),
)


def judge(report: dict, limits: dict) -> list[str]:
    """The limits a measured report breaks, as sentences; [] when it keeps them all.
    A limit of None is not checked; a figure of None (not measured) breaks nothing,
    except a missing backup on the host that keeps the backups."""
    breaches = [f"{unit} is {info['ActiveState']}" for unit, info in report["units"].items()
                if info["ActiveState"] != "active"]
    if report.get("kind") == "database":
        if report["postgresql_error"]:
            breaches.append(f"PostgreSQL {report['postgresql_error']}")
        table = DATABASE_FIGURE_LIMITS
    else:
        breaches += health_breaches(report["health"], limits)
        table = FIGURE_LIMITS
        if not report["request_ms_p95_judged"]:
            report = {**report, "request_ms_p95": None}
    return breaches + figure_breaches(report, limits, table) + backup_breaches(report, limits)


def health_breaches(health: list[dict], limits: dict) -> list[str]:
    breaches = []
    for item in health:
        if not item["ok"]:
            breaches.append(f"{item['url']} answered {item['status']}")
        elif item["ms"] > limits["response_ms"]:
            breaches.append(f"{item['url']} took {item['ms']} ms (limit {limits['response_ms']:g})")
    return breaches


def figure_breaches(report: dict, limits: dict, table: tuple) -> list[str]:
    return [f"{text.format(report[key], **report)} (limit {limits[limit]:g})" for key, limit, text in table
            if limits[limit] is not None and report[key] is not None and report[key] > limits[limit]]


def backup_breaches(report: dict, limits: dict) -> list[str]:
    if report.get("database_checked_on"):
        return []  # the backups are kept, and checked, on the db host
    age = report["newest_backup_age_hours"]
    if age is None:
        return ["there is no backup"]
    if age > limits["backup_age_hours"]:
        return [f"newest backup is {age} h old (limit {limits['backup_age_hours']:g})"]
    return []


def record(report: dict) -> None:
    """Keep the time of this check: the next one counts the logs from here."""
    path = state_file()
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    write_whole(path, json.dumps({"last_check": report["checked_at"]}) + "\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="task-manager-check")
    parser.add_argument("--api-url", default="http://127.0.0.1:5000/health")
    parser.add_argument("--web-url", default="http://127.0.0.1:8080/health")
    parser.add_argument("--max-response-ms", type=float, default=200)
    parser.add_argument("--max-db-mb", type=float, default=100)
    parser.add_argument("--max-memory-mb", type=float, default=512)
    parser.add_argument("--max-cpu-percent", type=float, default=50)
    parser.add_argument("--max-disk-percent", type=float, default=80)
    parser.add_argument("--max-backup-age-hours", type=float, default=None,
                        help="the newest backup's age limit; by default the backup schedule's longest gap + 2 h")
    parser.add_argument("--max-connections-percent", type=float, default=80)
    parser.add_argument("--max-errors", type=int, default=None)
    parser.add_argument("--max-failed-logins", type=int, default=None)
    parser.add_argument("--failed-login-burst", type=int, default=20,
                        help="failed sign-ins in 5 minutes that the monitoring alerts on (published, not judged here)")
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--fail-on-breach", action="store_true",
                        help="exit 2 when a limit is broken (the daily timer's unit, whose failure is told)")
    parser.add_argument("--textfile", default=None,
                        help="also write the figures and their limits there, for node_exporter's textfile collector")
    return parser.parse_args(argv)


# For Prometheus: each figure of the report that has a limit, with the limit it is held
# to, so that an alert compares the two and a limit changed in the inventory moves the alert.
# The off-host copies' lines, each as that command writes it: anything else (another
# family, a malformed line that would make node_exporter drop this whole file) is left out.
RELAYED_LINE = re.compile(
    r"# (HELP|TYPE) task_manager_offsite_[a-z_]+ [ -~]{1,200}"
    r'|task_manager_offsite_[a-z_]+\{what="(copy|check)"\} -?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?')
RELAYED_MAX_BYTES = 16384


def relayed(path: str | None) -> list[str]:
    """The off-host copies' figures, which their account writes in its own directory (it may
    write nowhere else): its own well-formed lines, and nothing else it might say."""
    if not path:
        return []
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return []
            text = handle.read(RELAYED_MAX_BYTES + 1).decode("utf-8")
    except (OSError, ValueError):
        return []
    if len(text) > RELAYED_MAX_BYTES:
        return []
    return [line for line in text.splitlines() if RELAYED_LINE.fullmatch(line)]


def textfile(report: dict, relay: str | None = None) -> str:
    table = DATABASE_FIGURE_LIMITS if report.get("kind") == "database" else FIGURE_LIMITS
    rows = [(key, report.get(key), report["limits"].get(limit)) for key, limit, _ in table]
    rows.append(("newest_backup_age_hours", report.get("newest_backup_age_hours"),
                 None if report.get("database_checked_on") else report["limits"].get("backup_age_hours")))
    # A limit with no figure of the check's: the alert counts the API's own failed sign-ins.
    rows.append(("failed_logins_5m", None, report["limits"].get("failed_logins_5m")))
    lines = ["# HELP task_manager_check_figure A figure the on-host check measured",
             "# TYPE task_manager_check_figure gauge"]
    lines += [f'task_manager_check_figure{{figure="{key}"}} {value:g}' for key, value, _ in rows if value is not None]
    lines += ["# HELP task_manager_check_limit The limit the check holds the figure to",
              "# TYPE task_manager_check_limit gauge"]
    lines += [f'task_manager_check_limit{{figure="{key}"}} {limit:g}' for key, _, limit in rows if limit is not None]
    lines += ["# HELP task_manager_check_breaches The limits the check found broken",
              "# TYPE task_manager_check_breaches gauge", f"task_manager_check_breaches {len(report['breaches'])}",
              "# HELP task_manager_check_timestamp_seconds When the check ran (Unix time)",
              "# TYPE task_manager_check_timestamp_seconds gauge",
              f"task_manager_check_timestamp_seconds {time.time():.3f}"]
    return "\n".join(lines + relayed(relay)) + "\n"


def write_whole(path: Path, text: str) -> None:
    """Whole or not at all (node_exporter may read at any moment), readable by every account,
    and never through a link: a new file of its own (O_EXCL, a name nobody could plant) in
    the directory, renamed over the name, which replaces a link there rather than follow it.
    As root, only into a directory no other account can write."""
    directory = path.parent
    if os.geteuid() == 0:
        info = directory.lstat()
        if info.st_uid != 0 or info.st_mode & 0o022 or not stat.S_ISDIR(info.st_mode):
            raise CheckError(f"not writing {path} as root: another account can write {directory} "
                             "(run the check as that account, as the figures' unit does)")
    fd, scratch = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            os.fchmod(handle.fileno(), 0o644)
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config()
        kind = host_kind(config)
        report = measure_database(config) if kind == "database" else measure(config, args)
    except (CheckError, OSError, ValueError) as exc:
        print(f"task-manager-check: {exc}", file=sys.stderr)
        return 1
    limits = limits_from(args, kind)
    report["limits"] = limits
    report["breaches"] = judge(report, limits)
    # The db host counts nothing from logs: there is no "since the last check" to keep.
    if kind == "app" and not args.no_record:
        try:
            record(report)
        except (CheckError, OSError) as exc:
            print(f"task-manager-check: the time of this check not kept: {exc}", file=sys.stderr)
            return 1
    if args.textfile:
        try:
            write_whole(Path(args.textfile), textfile(report, config.get("offsite_metrics_file")))
        except (CheckError, OSError) as exc:
            print(f"task-manager-check: figures not written to {args.textfile}: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(report, ensure_ascii=False))
    if args.fail_on_breach and report["breaches"]:
        print("task-manager-check: LIMITS BROKEN: " + "; ".join(report["breaches"]), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
