"""Shared helpers for the host commands' unit tests (tests/test_backup_command.py,
tests/test_check_command.py): the commands are stdlib scripts in roles/*/files/, loaded
here as modules from their file paths, and a small SQLite database with the app's tables."""

from __future__ import annotations

import grp
import importlib.util
import json
import os
import pwd
import sqlite3
import sys
import time
from pathlib import Path

import jinja2
import pytest

ROOT = Path(__file__).resolve().parent.parent
# The host commands' package (roles/host_commands), imported by the tests as the hosts run it.
HOST_LIB = ROOT / "roles" / "host_commands" / "files"
if str(HOST_LIB) not in sys.path:
    sys.path.insert(0, str(HOST_LIB))

# What counts() and the restore read: users, tasks and Alembic's revision, as the app makes them.
SCHEMA = """
CREATE TABLE users (id INTEGER PRIMARY KEY, username VARCHAR(80) NOT NULL UNIQUE, password_hash VARCHAR(255) NOT NULL);
CREATE TABLE tasks (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users (id),
                    title VARCHAR(200) NOT NULL, description TEXT, completed BOOLEAN NOT NULL DEFAULT 0);
CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY);
INSERT INTO alembic_version VALUES ('0003');
"""


def install_command(name: str, where: Path) -> Path:
    """A host command as the host_commands role installs it: its template rendered with the
    package in this checkout, executable, so that a test runs it as cron would."""
    template = (ROOT / "roles" / "host_commands" / "templates" / "command.py.j2").read_text(encoding="utf-8")
    environment = jinja2.Environment(keep_trailing_newline=True, autoescape=False)  # noqa: S701  (Python, not HTML)
    environment.filters["to_json"] = json.dumps
    text = environment.from_string(template).render(
        ansible_managed="rendered by the tests", item={"name": name}, host_commands_lib_dir=str(HOST_LIB))
    command = where / f"task-manager-{name}"
    command.write_text(text, encoding="utf-8")
    command.chmod(0o755)
    return command


def load_script(name: str, path: Path):
    """Import a script that has no importable file name, as a fresh module."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look a module up by name
    spec.loader.exec_module(module)
    return module


def make_database(path: Path, users: int = 2, tasks: int = 5) -> Path:
    """A WAL-mode SQLite file with the app's tables, like the service's own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(SCHEMA)
        conn.executemany("INSERT INTO users (username, password_hash) VALUES (?, ?)",
                         [(f"user{i}", "scrypt:x") for i in range(users)])
        conn.executemany("INSERT INTO tasks (user_id, title, description) VALUES (?, ?, ?)",
                         [(1, f"task {i}", "x" * 200) for i in range(tasks)])
        conn.commit()
    finally:
        conn.close()
    return path


def add_tasks(path: Path, count: int) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.executemany("INSERT INTO tasks (user_id, title) VALUES (1, ?)", [(f"later {i}",) for i in range(count)])
        conn.commit()
    finally:
        conn.close()


def task_count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
    finally:
        conn.close()


def current_account() -> tuple[str, str]:
    """The user and group this test runs as: the commands' drop to the service user is then a no-op."""
    return pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name


def write_backup_manifest(backups: Path, kind: str, hours_old: float) -> None:
    """A set's manifest in backups/<kind>/, as old as asked (what the checks read is its age)."""
    (backups / kind).mkdir(exist_ok=True)
    manifest = backups / kind / f"backup_{kind}_{hours_old}.json"
    manifest.write_text("{}", encoding="utf-8")
    when = time.time() - hours_old * 3600
    os.utime(manifest, (when, when))


# A real PostgreSQL 15 cluster, the app tests' own (initdb in a temporary directory).
pgcluster = load_script("pgcluster", ROOT / "app" / "tests" / "pgcluster.py")


@pytest.fixture(scope="session")
def pg_cluster():
    """Started once for the session, with the schema owner's and the API's roles; removed at the end."""
    try:
        made = pgcluster.Cluster()
    except pgcluster.ClusterError as exc:
        pytest.fail(str(exc))
    made.init()
    made.start()
    made.setup_roles()
    yield made
    made.destroy()
