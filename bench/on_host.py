#!/usr/bin/env python3
"""The benchmarks' hands on the bench host (copied there and run as root; stdlib only,
but for psycopg when the app runs on PostgreSQL: then it runs with the release's venv).

on_host.py memory [UNIT]            PSS and RSS of every process of a systemd unit
on_host.py seed USER COUNT [BYTES]  give USER exactly COUNT or more tasks (direct SQL, as the service user)
on_host.py grow USER MEGABYTES      add 1 KB tasks to USER until the database is that large
on_host.py dbsize                   the database's size
on_host.py count USER               USER's tasks
on_host.py baseline up|down         the minimal WSGI app behind a copy of the nginx site
on_host.py fill FREE_MB | unfill    leave only FREE_MB free on the backup file system
on_host.py corrupt                  overwrite the database's first page with garbage
on_host.py manual-backup            the manual's backup.sh on the database (cp, sqlite3 .dump), removed after
"""

import datetime as dt
import json
import os
import pwd
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path("/opt/task-manager")
DB = ROOT / "shared/instance/task_manager.db"
BACKUPS = ROOT / "shared/backups"
FILLER = BACKUPS / "bench-filler"
HELPERS = Path(__file__).resolve().parent
SITE = Path("/etc/nginx/sites-available/task-manager.conf")
BASELINE_SITE = Path("/etc/nginx/sites-enabled/bench-minimal.conf")
BASELINE_UNIT = "task-manager-bench-minimal"
BASELINE_BIND = "127.0.0.1:5099"
WORDS = [
    "報告書",
    "会議",
    "資料",
    "確認",
    "レビュー",
    "予算",
    "顧客",
    "連絡",
    "設計",
    "テスト",
    "修正",
    "リリース",
    "調査",
    "見積",
    "report",
    "meeting",
    "invoice",
    "deploy",
    "review",
    "backup",
    "budget",
    "design",
    "release",
]


def as_service_user() -> None:
    user = pwd.getpwnam("task-manager")
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)


LAYOUT = Path("/etc/task-manager/layout.json")
DATABASE_ENV = Path("/etc/task-manager/database.env")
MIGRATION_ENV = Path("/etc/task-manager/migration.env")


def postgresql() -> bool:
    return json.loads(LAYOUT.read_text(encoding="utf-8")).get("database_engine") == "postgresql"


def postgresql_url(env: Path = DATABASE_ENV, name: str = "DATABASE_URL") -> str:
    """The API's own URL (its role may write rows), or the tables' owner's from migration.env,
    read before privileges are dropped."""
    for line in env.read_text(encoding="utf-8").splitlines():
        if line.startswith(f"{name}="):
            return line.partition("=")[2]
    raise SystemExit(f"no {name} in {env}")


def sqlite_text(value):
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return value.isoformat() if isinstance(value, dt.date) else value


class Database:
    """The app's database, SQLite or PostgreSQL, behind one small interface: SQL with ? placeholders."""

    def __init__(self):
        self.pg = postgresql()
        if self.pg:
            import psycopg  # noqa: PLC0415  (in the release's venv)

            self.conn = psycopg.connect(postgresql_url())
        else:
            as_service_user()
            self.conn = sqlite3.connect(DB, timeout=30)
            self.conn.execute("PRAGMA busy_timeout = 30000")
            self.conn.execute("PRAGMA foreign_keys = ON")

    def execute(self, sql: str, params=()):
        return self.conn.execute(sql.replace("?", "%s") if self.pg else sql, params)

    def insert_many(self, sql: str, rows: list[tuple]) -> None:
        if self.pg:
            with self.conn.cursor() as cursor:
                cursor.executemany(sql.replace("?", "%s"), rows)
        else:  # SQLite stores what SQLAlchemy writes: ISO text
            self.conn.executemany(sql, [tuple(sqlite_text(v) for v in row) for row in rows])
        self.conn.commit()

    def size(self) -> dict:
        tasks = self.execute("SELECT count(*) FROM tasks").fetchone()[0]
        if self.pg:
            size = self.execute("SELECT pg_database_size(current_database())").fetchone()[0]
            return {"database_bytes": size, "tasks": tasks}
        pages = self.execute("PRAGMA page_count").fetchone()[0]
        page_size = self.execute("PRAGMA page_size").fetchone()[0]
        wal = Path(f"{DB}-wal")
        return {"database_bytes": pages * page_size, "file_bytes": DB.stat().st_size,
                "wal_bytes": wal.stat().st_size if wal.exists() else 0, "tasks": tasks}

    def settle(self) -> None:
        """SQLite: everything into the main file (its size is then the database's).
        PostgreSQL: the planner's statistics brought up to date, as autovacuum would within
        a minute: the first loads measured after a seed of an empty table otherwise ran on
        a plan for a few rows (a list at concurrency 1 took 4.0 ms instead of 1.9)."""
        if self.pg:
            import psycopg  # noqa: PLC0415  (in the release's venv)

            self.conn.commit()
            # Only the tables' owner may analyze them; the API's role may not.
            with psycopg.connect(postgresql_url(MIGRATION_ENV, "MIGRATION_DATABASE_URL"), autocommit=True) as owner:
                owner.execute("ANALYZE")
        else:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        self.conn.commit()
        self.conn.close()


def connect() -> sqlite3.Connection:
    conn = sqlite3.connect(DB, timeout=30)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def user_id(conn, name: str) -> int:
    row = conn.execute("SELECT id FROM users WHERE username = ?", (name,)).fetchone()
    if row is None:
        raise SystemExit(f"no user {name}: sign up through the API first")
    return row[0]


def add_tasks(conn, uid: int, count: int, description_bytes: int) -> None:
    rng = random.Random(uid * 7919 + count)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    batch = []
    for i in range(count):
        created = now - dt.timedelta(minutes=rng.randint(0, 60 * 24 * 365))
        status = rng.choice(("pending", "pending", "in_progress", "completed"))
        title = " ".join(rng.choices(WORDS, k=rng.randint(2, 5)))[:200]
        desc = (" ".join(rng.choices(WORDS, k=description_bytes // 6)))[:description_bytes] or None
        due = (created + dt.timedelta(days=rng.randint(1, 60))).date() if rng.random() < 0.5 else None
        batch.append(
            (
                uid,
                title,
                desc,
                status,
                rng.choice(("low", "medium", "high")),
                due,
                created,
                created,
                created if status == "completed" else None,
            )
        )
        if len(batch) == 5000 or i == count - 1:
            conn.insert_many(
                "INSERT INTO tasks (user_id, title, description, status, priority, due_date, created_at,"
                " updated_at, completed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                batch,
            )
            batch.clear()


def db_size() -> dict:
    db = Database()
    try:
        return db.size()
    finally:
        db.close()


def unit_pids(unit: str) -> list[int]:
    main = int(
        subprocess.run(
            ["systemctl", "show", "-p", "MainPID", "--value", unit], capture_output=True, text=True, check=True
        ).stdout.strip()
        or 0
    )
    if not main:
        return []
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [main]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def read_rollups(pids: list[int]) -> str:
    """The processes' smaps_rollup. The service runs in a user namespace of its own
    (PrivateUsers=yes), where only a process inside may read them: the reading joins it
    (nsenter). A process in ours (the minimal app) is read as its own user instead."""
    paths = [f"/proc/{pid}/smaps_rollup" for pid in pids]
    joined = subprocess.run(["nsenter", "-t", str(pids[0]), "-U", "cat", *paths],
                            capture_output=True, text=True, check=False)
    if joined.stdout:
        return joined.stdout
    return subprocess.run(["setpriv", "--reuid=task-manager", "--regid=task-manager", "--init-groups", "cat", *paths],
                          capture_output=True, text=True, check=False).stdout


def memory_of(pids: list[int]) -> dict:
    pss = rss = 0
    for line in read_rollups(pids).splitlines() if pids else []:
        key, _, rest = line.partition(":")
        if key == "Pss":
            pss += int(rest.split()[0]) * 1024
        elif key == "Rss":
            rss += int(rest.split()[0]) * 1024
    return {"processes": len(pids), "pss_bytes": pss, "rss_bytes": rss}


BASELINE_APPS = {"wsgi": "minimal_app:app", "flask": "minimal_app:flask_app"}


def baseline(action: str, kind: str = "wsgi") -> dict:
    """up KIND (wsgi or flask: bench/minimal_app.py) on the baseline's port, or down."""
    if action == "down":
        BASELINE_SITE.unlink(missing_ok=True)
        subprocess.run(["systemctl", "reload", "nginx"], check=True)
        subprocess.run(["systemctl", "stop", BASELINE_UNIT], check=False, capture_output=True)
        return {"baseline": "down"}
    # The service's own settings, with only the address changed (secrets are not needed).
    env = {}
    for line in Path("/etc/task-manager/app.env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    env["TASK_MANAGER_BIND"] = BASELINE_BIND
    env["PYTHONPATH"] = str(HELPERS)
    subprocess.run(["systemctl", "stop", BASELINE_UNIT], check=False, capture_output=True)
    subprocess.run(["systemctl", "reset-failed", BASELINE_UNIT], check=False, capture_output=True)
    subprocess.run(
        [
            "systemd-run",
            "--unit",
            BASELINE_UNIT,
            "--property=User=task-manager",
            f"--property=WorkingDirectory={ROOT / 'shared'}",
            *(f"--setenv={k}={v}" for k, v in env.items()),
            str(ROOT / "current/venv/bin/gunicorn"),
            "--config",
            "python:task_manager.gunicorn_conf",
            BASELINE_APPS[kind],
        ],
        check=True,
        capture_output=True,
    )
    site = SITE.read_text()
    for old, new in (
        ("task_manager_api", "bench_minimal_api"),
        ("unix:/run/task-manager/api.sock", BASELINE_BIND),
        ("listen 8080", "listen 8081"),
        ("listen [::]:8080", "listen [::]:8081"),
        # Behind a load balancer: the TLS port the balancer reaches.
        ("listen 8444 ssl", "listen 8445 ssl"),
        ("listen [::]:8444 ssl", "listen [::]:8445 ssl"),
        ("task-manager.access.log", "bench-minimal.access.log"),
        ("task-manager.error.log", "bench-minimal.error.log"),
    ):
        site = site.replace(old, new)
    BASELINE_SITE.write_text(site)
    subprocess.run(["nginx", "-t", "-q"], check=True)
    subprocess.run(["systemctl", "reload", "nginx"], check=True)
    # Its memory is read next: every worker must be there by then (the master and one more
    # than the CPUs, as gunicorn_conf.py counts them), or a loaded host's slow fork is measured.
    workers = int(env.get("TASK_MANAGER_WORKERS") or min(4, (os.cpu_count() or 1) + 1))
    deadline = time.monotonic() + 30
    while len(pids := unit_pids(BASELINE_UNIT)) < workers + 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    return {"baseline": "up", "app": BASELINE_APPS[kind], "unit": BASELINE_UNIT, "pids": pids}


def main(argv: list[str]) -> dict:
    command, args = argv[0], argv[1:]
    if command == "memory":
        unit = args[0] if args else "task-manager.service"
        return memory_of(unit_pids(unit))
    if command == "dbsize":
        return db_size()
    if command == "count":
        db = Database()
        try:
            return {"tasks": db.execute("SELECT count(*) FROM tasks t JOIN users u ON u.id = t.user_id "
                                        "WHERE u.username = ?", (args[0],)).fetchone()[0]}
        finally:
            db.close()
    if command == "seed":
        db = Database()
        uid = user_id(db, args[0])
        have = db.execute("SELECT count(*) FROM tasks WHERE user_id = ?", (uid,)).fetchone()[0]
        want = int(args[1])
        if have < want:
            add_tasks(db, uid, want - have, int(args[2]) if len(args) > 2 else 80)
        db.settle()
        db.close()
        return {"user_id": uid, "added": max(0, want - have), **db_size()}
    if command == "grow":
        db = Database()
        uid = user_id(db, args[0])
        target = int(float(args[1]) * 1048576)
        while db.size()["database_bytes"] < target:
            add_tasks(db, uid, 5000, 1000)
        db.settle()
        db.close()
        return db_size()
    if command == "baseline":
        return baseline(*args)
    if command == "fill":
        FILLER.unlink(missing_ok=True)
        free = shutil.disk_usage(BACKUPS).free
        size = max(0, free - int(float(args[0]) * 1048576))
        with FILLER.open("wb") as handle:
            os.posix_fallocate(handle.fileno(), 0, size) if size else None
        usage = shutil.disk_usage(BACKUPS)
        return {
            "filler_bytes": size,
            "free_bytes": usage.free,
            "used_percent": round(100 * usage.used / usage.total, 1),
        }
    if command == "unfill":
        FILLER.unlink(missing_ok=True)
        usage = shutil.disk_usage(BACKUPS)
        return {"free_bytes": usage.free, "used_percent": round(100 * usage.used / usage.total, 1)}
    if command == "manual-backup":
        # The baseline the verified backup is set beside: the manual's two commands as it
        # writes them (a cp of the live file, a plain .dump), nothing checked, thrown away.
        target = BACKUPS / "bench-manual"
        target.mkdir(exist_ok=True)
        try:
            shutil.copyfile(DB, target / "task_manager.db")
            # As the service user: sqlite3 may create the WAL's files, which root would then own.
            user = pwd.getpwnam("task-manager")
            with (target / "dump.sql").open("wb") as out:
                subprocess.run([shutil.which("sqlite3") or "sqlite3", str(DB), ".dump"], stdout=out, check=True,
                               user=user.pw_uid, group=user.pw_gid, extra_groups=[])
            return {"bytes": sum(f.stat().st_size for f in target.iterdir())}
        finally:
            shutil.rmtree(target)
    if command == "corrupt":
        # Everything into the main file first, as after any quiet moment: the damage then
        # hits the only copy of those pages, as a failing disk would.
        pid = os.fork()
        if pid == 0:
            as_service_user()
            conn = connect()
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()
            os._exit(0)
        os.waitpid(pid, 0)
        with DB.open("r+b") as handle:
            handle.seek(0)
            handle.write(os.urandom(4096))
        return {"corrupted": str(DB), "bytes": 4096}
    raise SystemExit(__doc__)


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:] or ["help"])))
