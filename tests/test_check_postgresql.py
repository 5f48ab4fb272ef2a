"""The check command on the PostgreSQL db host: its figures read from a real PostgreSQL 15
cluster the tests start (app/tests/pgcluster.py, the app tests' own), judged against the
limits, and a report that still prints when the server is down. Only systemctl and the
disks are stand-ins."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import shutil
import sys

import psycopg
import pytest

from conftest import current_account, pgcluster, write_backup_manifest
from task_manager_host import paths
from task_manager_host.check import cli, database
from task_manager_host.check import limits as judging  # "limits" names the test's own dict

OWNER, API = pgcluster.OWNER, pgcluster.API
DB = "task_manager"
UNIT = "postgresql@15-main.service"
REPORT_KEYS = [
    "checked_at", "kind", "units", "postgresql_error", "database", "database_mb", "connections",
    "max_connections", "connections_percent", "data_directory", "disk_percent", "disk_free_mb",
    "backup_disk_percent", "backup_disk_free_mb", "newest_backup_age_hours", "replication", "limits", "breaches",
    "daily_report",
]
NO_STANDBY = "none: one PostgreSQL server, no standby (the README describes a streaming replica on paper)"
SYSTEMCTL_SHOW = """#!/bin/sh
echo "$@" > "$(dirname "$0")/asked"
echo "ActiveState=${PG_STATE:-active}"; echo "SubState=running"; echo "UnitFileState=enabled"; echo "NRestarts=0"
echo "MainPID=0"
"""
USAGE = collections.namedtuple("usage", "total used free")


@pytest.fixture(scope="module")
def cluster(pg_cluster):
    made = pg_cluster
    made.drop_database(DB)
    made.sql(f"CREATE DATABASE {DB} OWNER {OWNER} TEMPLATE template0", f"GRANT CONNECT ON DATABASE {DB} TO {API}")
    made.sql("CREATE TABLE tasks (id serial PRIMARY KEY, title text NOT NULL)",
             "INSERT INTO tasks (title) SELECT 'task ' || n FROM generate_series(1, 500) n", database=DB, role=OWNER)
    yield made
    made.drop_database(DB)


class DbHost:
    """The db host's layout under tmp_path, libpq pointed at the test cluster, a stand-in
    systemctl, and disks that report whatever the test sets (half full by default)."""

    def __init__(self, cluster, tmp_path, monkeypatch):
        self.cluster = cluster
        self.root = tmp_path
        self.backups = tmp_path / "backups"
        self.backups.mkdir(mode=0o700)
        self.state = tmp_path / "check-state.json"
        user, group = current_account()
        self.layout = {
            "database_engine": "postgresql", "database_on_this_host": True, "db_host": "tm-db",
            "db_name": DB, "db_owner": OWNER, "db_user": API, "backup_dir": str(self.backups),
            "log_dir": str(tmp_path / "logs"), "database": str(tmp_path / "instance" / "task_manager.db"),
            "service": "task-manager", "user": user, "group": group,
        }
        (tmp_path / "layout.json").write_text(json.dumps(self.layout), encoding="utf-8")
        monkeypatch.setenv("TASK_MANAGER_LAYOUT", str(tmp_path / "layout.json"))
        monkeypatch.setenv("TASK_MANAGER_CHECK_STATE", str(self.state))
        monkeypatch.setenv("TASK_MANAGER_CHECK_REPORTS", str(tmp_path / "check-reports"))
        monkeypatch.setenv("PGHOST", str(cluster.socket_dir))
        monkeypatch.setenv("PGUSER", "postgres")
        monkeypatch.delenv("PG_STATE", raising=False)
        # No backup schedule in cron here: the limit is the daily schedule's (26 h).
        (tmp_path / "cron.d").mkdir()
        monkeypatch.setenv("TASK_MANAGER_CRON_DIR", str(tmp_path / "cron.d"))
        systemctl = tmp_path / "bin" / "systemctl"
        systemctl.parent.mkdir()
        systemctl.write_text(SYSTEMCTL_SHOW, encoding="utf-8")
        systemctl.chmod(0o755)
        monkeypatch.setattr(paths, "SYSTEMCTL", str(systemctl))
        self.disks = {}  # path: usage; any other path is half full
        self.measured = []
        monkeypatch.setattr(shutil, "disk_usage", self.disk_usage)

    def disk_usage(self, path):
        os.stat(path)  # a missing folder fails as it would
        self.measured.append(str(path))
        return self.disks.get(str(path), USAGE(1000 << 20, 500 << 20, 500 << 20))

    def backup_set(self, kind: str, hours_old: float) -> None:
        write_backup_manifest(self.backups, kind, hours_old)

    @contextlib.contextmanager
    def sessions(self, count: int):
        """count sessions of the API's role held open, as the app hosts' pools hold theirs."""
        with contextlib.ExitStack() as stack:
            for _ in range(count):
                stack.enter_context(psycopg.connect(host=str(self.cluster.socket_dir), dbname=DB, user=API))
            yield

    def setting(self, name: str) -> str:
        return self.cluster.sql(f"SHOW {name}")[0][0]


@pytest.fixture
def host(cluster, tmp_path, monkeypatch):
    return DbHost(cluster, tmp_path, monkeypatch)


def run(capsys, *argv: str) -> tuple[int, dict | None, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, (json.loads(out) if out else None), err


# --- on the running server ------------------------------------------------------------------


def test_the_db_host_report_reads_postgresqls_own_figures(host, capsys):
    host.backup_set("daily", 5)
    host.backup_set("safety", 0)  # a safety copy is not a backup
    with host.sessions(2):
        status, doc, err = run(capsys)
    assert status == 0, err
    assert list(doc) == REPORT_KEYS
    assert (doc["kind"], doc["database"], doc["postgresql_error"]) == ("database", DB, None)
    assert doc["units"] == {UNIT: {"ActiveState": "active", "UnitFileState": "enabled", "NRestarts": "0"}}
    assert (host.root / "bin" / "asked").read_text().split()[:2] == ["show", UNIT]
    assert doc["database_mb"] > 0
    assert 2 <= doc["connections"] < 10  # the two held open; the check's own is not counted
    assert doc["max_connections"] == int(host.setting("max_connections")) == 200
    assert doc["connections_percent"] == round(100 * doc["connections"] / 200, 1)
    # The disks measured are the server's data directory (it says where) and the backups'.
    assert doc["data_directory"] == host.setting("data_directory") == str(host.cluster.data)
    assert host.measured == [str(host.cluster.data), str(host.backups)]
    assert (doc["disk_percent"], doc["disk_free_mb"], doc["backup_disk_percent"]) == (50.0, 500, 50.0)
    assert 4.9 < doc["newest_backup_age_hours"] < 5.1
    assert doc["replication"] == NO_STANDBY
    assert doc["limits"] == {"database_mb": 100, "connections_percent": 80, "disk_percent": 80,
                             "backup_age_hours": 26}
    assert doc["breaches"] == []
    assert not host.state.exists()  # nothing counts "since the last check" here


def test_connections_over_their_share_of_max_connections_are_a_breach(host, capsys):
    host.backup_set("daily", 1)
    with host.sessions(1):
        status, doc, _ = run(capsys, "--max-connections-percent", "0.1")
    assert status == 0
    [breach] = doc["breaches"]
    assert re.fullmatch(r"\d+\.\d % of max_connections in use \(\d+ of 200\) \(limit 0\.1\)", breach), breach
    assert breach.startswith(f"{doc['connections_percent']} % ") and f"({doc['connections']} of 200)" in breach


def test_the_database_size_and_the_disks_are_held_to_their_limits(host, capsys):
    host.backup_set("weekly", 30)
    host.disks[str(host.backups)] = USAGE(1000 << 20, 900 << 20, 100 << 20)
    status, doc, _ = run(capsys, "--max-db-mb", "0.5")
    assert status == 0
    assert doc["breaches"] == [
        f"database is {doc['database_mb']} MB (limit 0.5)",
        "backup disk is 90.0 % used (limit 80)",
        "newest backup is " + str(doc["newest_backup_age_hours"]) + " h old (limit 26)",
    ]


def test_no_backup_set_is_a_breach(host, capsys):
    host.backup_set("safety", 1)  # only what a restore kept aside
    (host.backups / "daily").mkdir()
    (host.backups / "daily" / "backup_planted.json").symlink_to(host.root / "layout.json")
    status, doc, _ = run(capsys)
    assert status == 0
    assert doc["newest_backup_age_hours"] is None
    assert doc["breaches"] == ["there is no backup"]


def test_a_stopped_server_is_a_finding_and_the_rest_is_still_measured(host, capsys, monkeypatch):
    host.backup_set("daily", 1)
    # The server cannot say where its data is: the Debian cluster's directory is measured.
    monkeypatch.setattr(paths, "PG_DATA_DIR", str(host.cluster.data))
    monkeypatch.setenv("PG_STATE", "failed")
    host.cluster.stop()
    try:
        status, doc, err = run(capsys)
    finally:
        host.cluster.start()
    assert status == 0, err
    assert list(doc) == REPORT_KEYS
    assert doc["postgresql_error"].startswith("does not accept connections: ")
    assert "\n" not in doc["postgresql_error"]
    assert [doc[key] for key in ("database_mb", "connections", "max_connections", "connections_percent",
                                 "replication")] == [None] * 5
    assert (doc["data_directory"], doc["disk_percent"]) == (str(host.cluster.data), 50.0)
    assert 0.9 < doc["newest_backup_age_hours"] < 1.1
    assert doc["breaches"] == [f"{UNIT} is failed", "PostgreSQL " + doc["postgresql_error"]]


def test_a_database_that_is_not_there_is_a_finding(host, capsys, monkeypatch):
    host.layout["db_name"] = "not_there"
    (host.root / "layout.json").write_text(json.dumps(host.layout), encoding="utf-8")
    host.backup_set("daily", 1)
    monkeypatch.setattr(paths, "PG_DATA_DIR", str(host.root / "no-such-dir"))
    status, doc, _ = run(capsys)
    assert status == 0
    assert 'database "not_there" does not exist' in doc["postgresql_error"]
    assert (doc["data_directory"], doc["disk_percent"]) == (None, None)  # nowhere to measure
    assert doc["backup_disk_percent"] == 50.0
    assert doc["breaches"] == ["PostgreSQL " + doc["postgresql_error"]]


# --- without the server -----------------------------------------------------------------------


def test_without_psycopg_the_check_cannot_run(host, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg raises ImportError
    status, doc, err = run(capsys)
    assert (status, doc) == (1, None)
    assert "python3-psycopg is missing" in err


def test_replication_is_reported_as_pg_stat_replication_has_it():
    assert database.replication_text([]) == NO_STANDBY
    assert database.replication_text(["streaming"]) == "1 standby: 1 streaming"
    assert database.replication_text(["streaming", "catchup", "streaming"]) == "3 standbys: 1 catchup, 2 streaming"


def test_judge_names_every_breach_of_the_db_host():
    limits = {"database_mb": 100.0, "connections_percent": 80.0, "disk_percent": 80.0, "backup_age_hours": 26.0}
    broken = {
        "kind": "database", "units": {UNIT: {"ActiveState": "inactive"}},
        "postgresql_error": "could not be measured: canceling statement due to statement timeout",
        "database_mb": 120.5, "connections": 90, "max_connections": 100, "connections_percent": 90.0,
        "disk_percent": 85.0, "backup_disk_percent": 95.0, "newest_backup_age_hours": 27.5,
    }
    assert judging.judge(broken, limits) == [
        f"{UNIT} is inactive",
        "PostgreSQL could not be measured: canceling statement due to statement timeout",
        "database is 120.5 MB (limit 100)",
        "90.0 % of max_connections in use (90 of 100) (limit 80)",
        "data directory's disk is 85.0 % used (limit 80)",
        "backup disk is 95.0 % used (limit 80)",
        "newest backup is 27.5 h old (limit 26)",
    ]
    kept = {**broken, "units": {UNIT: {"ActiveState": "active"}}, "postgresql_error": None, "database_mb": 100.0,
            "connections_percent": 80.0, "disk_percent": 80.0, "backup_disk_percent": None,
            "newest_backup_age_hours": None}
    assert judging.judge(kept, limits) == ["there is no backup"]  # at the limit is kept


# The schema owner's trap for a superuser that queries inside the owner's database: a function
# named as a catalog one, found first through a search_path the owner set on the database.
TRAP = (
    "CREATE FUNCTION public.pg_database_size(name) RETURNS bigint LANGUAGE plpgsql AS $$ BEGIN "  # noqa: S608
    "IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN "
    "EXECUTE 'ALTER ROLE " + OWNER + " SUPERUSER'; END IF; RETURN 0; END $$",
    f"ALTER DATABASE {DB} SET search_path = public, pg_catalog",
)


def owner_is_superuser(cluster) -> bool:
    return cluster.sql(f"SELECT rolsuper FROM pg_roles WHERE rolname = '{OWNER}'")[0][0]  # noqa: S608 (a constant)


def test_the_owners_code_never_runs_as_the_superuser_that_measures(host, capsys):
    host.cluster.sql(TRAP[0], database=DB, role=OWNER)
    host.cluster.sql(TRAP[1], role=OWNER)
    try:
        status, doc, err = run(capsys)
        assert status == 0 and doc["postgresql_error"] is None, err
        assert doc["database_mb"] > 0  # the catalog's function answered, not the trap
        assert not owner_is_superuser(host.cluster)
        # The control: the same query as the check made it before, inside the owner's database.
        host.cluster.sql(f"SELECT pg_database_size('{DB}'::name)", database=DB)
        assert owner_is_superuser(host.cluster)
    finally:
        host.cluster.sql(f"ALTER ROLE {OWNER} NOSUPERUSER", f"ALTER DATABASE {DB} RESET search_path")
        host.cluster.sql("DROP FUNCTION IF EXISTS public.pg_database_size(name)", database=DB)
