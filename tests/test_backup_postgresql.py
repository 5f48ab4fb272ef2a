"""The backup command on a db host: verified PostgreSQL sets and restores, on a real
PostgreSQL 15 cluster the tests start (app/tests/pgcluster.py, the app tests' own)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psycopg
import pytest
from flask_migrate import upgrade

from conftest import current_account, pgcluster
from task_manager import create_app
from task_manager.extensions import MIGRATIONS_DIR
from task_manager_host import common
from task_manager_host.backup import cli as backup_cli
from task_manager_host.backup import postgresql as backup_postgresql

OWNER, API = pgcluster.OWNER, pgcluster.API
DB = "task_manager"
SCHEMA = (
    "CREATE TABLE users (id serial PRIMARY KEY, username varchar(80) NOT NULL UNIQUE)",
    "CREATE TABLE tasks (id serial PRIMARY KEY, user_id integer NOT NULL REFERENCES users (id), title text NOT NULL)",
    "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)",
    "INSERT INTO alembic_version VALUES ('0004')",
    "INSERT INTO users (username) VALUES ('ann'), ('bob')",
    "INSERT INTO tasks (user_id, title) SELECT 1, 'task ' || n FROM generate_series(1, 7) n",
)


@pytest.fixture
def host(pg_cluster, tmp_path, monkeypatch):
    """A db host: the task manager's database as deploy.yml makes it, the layout saying it is here."""
    cluster = pg_cluster
    cluster.drop_database(DB)
    cluster.sql(f"CREATE DATABASE {DB} OWNER {OWNER} TEMPLATE template0")
    cluster.sql(*pgcluster.API_GRANTS, f"REVOKE ALL ON DATABASE {DB} FROM PUBLIC",
                f"GRANT CONNECT ON DATABASE {DB} TO {API}", database=DB)
    cluster.sql(*SCHEMA, database=DB, role=OWNER)
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir(mode=0o700)
    (tmp_path / "logs").mkdir()
    user, group = current_account()
    config = {
        "database_engine": "postgresql", "database_on_this_host": True, "db_host": "tm-db",
        "db_name": DB, "db_owner": OWNER, "db_user": API, "backup_dir": str(backup_dir),
        "log_dir": str(tmp_path / "logs"), "user": user, "group": group, "keep_min": 3,
        "retention_days": {"default": 30, "monthly": 365}, "config_paths": [], "encrypt": False,
    }
    config_file = tmp_path / "backup.json"
    config_file.write_text(json.dumps(config), encoding="utf-8")
    monkeypatch.setenv("TASK_MANAGER_BACKUP_CONFIG", str(config_file))
    monkeypatch.setenv("TASK_MANAGER_LAYOUT", str(config_file))
    monkeypatch.setenv("PGHOST", str(cluster.socket_dir))
    monkeypatch.setenv("PGUSER", "postgres")
    monkeypatch.setattr(os, "setgroups", lambda groups: None)
    monkeypatch.setenv("HOME", str(tmp_path))
    yield type("Host", (), {"dir": backup_dir, "config": config, "config_file": config_file, "cluster": cluster})
    cluster.drop_database(DB)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = backup_cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def counts(cluster) -> tuple:
    return (cluster.sql("SELECT count(*) FROM users", database=DB)[0][0],
            cluster.sql("SELECT count(*) FROM tasks", database=DB)[0][0])


def databases(cluster) -> set[str]:
    return {row[0] for row in cluster.sql("SELECT datname FROM pg_database WHERE datname LIKE 'task_manager%'")}


def test_a_set_is_a_dump_and_the_roles_verified_by_restoring_it(host, capsys):
    status, out, err = run(capsys, "create", "--kind", "daily")
    assert status == 0, err
    made = json.loads(out)
    stamp = made["stamp"]
    assert set(made["files"]) == {f"task_manager_{stamp}.dump", f"globals_{stamp}.sql"}
    assert (made["engine"], made["integrity"], made["users"], made["tasks"], made["schema_revision"]) == (
        "postgresql", "ok", 2, 7, "0004")
    for name, meta in made["files"].items():
        assert common.sha256(Path(made["dir"]) / name) == meta["sha256"]
    roles = (Path(made["dir"]) / f"globals_{stamp}.sql").read_text(encoding="utf-8")
    assert f"CREATE ROLE {API}" in roles
    assert "PASSWORD" not in roles.upper().replace("NOPASSWORD", "")  # no hash in a backup
    assert databases(host.cluster) == {DB}  # the scratch database it was verified in is gone
    status, out, _ = run(capsys, "list", "--json")
    assert [entry["stamp"] for entry in json.loads(out)] == [stamp]


def test_restore_brings_every_row_back_and_keeps_what_it_replaced(host, capsys):
    status, out, err = run(capsys, "create")
    assert status == 0, err
    taken = json.loads(out)
    host.cluster.sql("DELETE FROM tasks WHERE id > 2", "INSERT INTO users (username) VALUES ('eve')", database=DB)
    assert counts(host.cluster) == (3, 2)
    status, out, err = run(capsys, "restore", "latest")
    assert status == 0, err
    done = json.loads(out)
    assert (done["stamp"], done["users"], done["tasks"]) == (taken["stamp"], 2, 7)
    assert counts(host.cluster) == (2, 7)
    assert databases(host.cluster) == {DB}
    # The database as it was is a safety set: its dump, counted.
    safety = json.loads(Path(done["safety_copy"]).read_text(encoding="utf-8"))
    assert (safety["kind"], safety["users"], safety["tasks"]) == ("safety", 3, 2)
    assert Path(done["safety_database"]).name in safety["files"]  # the reports name the dump itself
    assert Path(done["safety_database"]).parent == Path(done["safety_copy"]).parent
    # Owners and rights as deployed: the API's role reads and writes rows and makes no table.
    owner = host.cluster.sql("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'tasks'", database=DB)
    assert owner == [(OWNER,)]
    host.cluster.sql("INSERT INTO tasks (user_id, title) VALUES (1, 'after')", database=DB, role=API)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        host.cluster.sql("CREATE TABLE evil (id int)", database=DB, role=API)


def test_restore_is_refused_while_the_api_has_a_session_open(host, capsys):
    assert run(capsys, "create")[0] == 0
    with psycopg.connect(host=str(host.cluster.socket_dir), dbname=DB, user=API):
        status, _, err = run(capsys, "restore", "latest")
    assert status == 1
    assert f"the API's role {API} has 1 session(s) open" in err
    assert counts(host.cluster) == (2, 7)


def test_latest_good_passes_over_a_damaged_set_and_latest_does_not(host, capsys):
    older = json.loads(run(capsys, "create")[1])
    host.cluster.sql("INSERT INTO users (username) VALUES ('cy')", database=DB)
    newer = json.loads(run(capsys, "create")[1])
    dump = Path(newer["dir"]) / f"task_manager_{newer['stamp']}.dump"
    dump.write_bytes(dump.read_bytes()[:-100])
    status, _, err = run(capsys, "restore", "latest")
    assert status == 1 and "does not match its manifest" in err
    assert counts(host.cluster) == (3, 7)  # nothing touched
    status, out, err = run(capsys, "restore", "latest-good")
    assert status == 0, err
    done = json.loads(out)
    assert done["stamp"] == older["stamp"] and len(done["skipped"]) == 1
    assert counts(host.cluster) == (2, 7)


def test_verify_checks_the_set_restore_would_use_and_touches_nothing_live(host, capsys):
    older = json.loads(run(capsys, "create")[1])
    host.cluster.sql("INSERT INTO users (username) VALUES ('cy')", database=DB)
    newer = json.loads(run(capsys, "create")[1])
    # The API may keep serving meanwhile: verify needs no session closed.
    with psycopg.connect(host=str(host.cluster.socket_dir), dbname=DB, user=API):
        status, out, err = run(capsys, "verify", "latest")
    assert status == 0, err
    done = json.loads(out)
    assert (done["stamp"], done["users"], done["tasks"], done["skipped"]) == (newer["stamp"], 3, 7, [])
    assert databases(host.cluster) == {DB} and counts(host.cluster) == (3, 7)
    dump = Path(newer["dir"]) / f"task_manager_{newer['stamp']}.dump"
    dump.write_bytes(dump.read_bytes()[:-100])
    status, _, err = run(capsys, "verify", "latest")
    assert status == 1 and "does not match its manifest" in err
    status, out, err = run(capsys, "verify", "latest-good")
    assert status == 0, err
    assert json.loads(out)["stamp"] == older["stamp"] and len(json.loads(out)["skipped"]) == 1
    assert databases(host.cluster) == {DB} and counts(host.cluster) == (3, 7)
    assert not list(host.dir.glob(".verify-*"))


def test_a_lost_database_is_restored_and_nothing_pretends_to_be_its_safety_copy(host, capsys):
    assert run(capsys, "create")[0] == 0
    host.cluster.drop_database(DB)
    status, out, err = run(capsys, "restore", "latest")
    assert status == 0, err
    assert counts(host.cluster) == (2, 7)
    assert (json.loads(out)["safety_copy"], json.loads(out)["safety_database"]) == (None, None)


def test_a_sqlite_set_is_not_offered_to_a_postgresql_restore(host, capsys):
    sqlite_set = host.dir / "manual" / "backup_20200101_000000_000000.json"
    sqlite_set.parent.mkdir()
    sqlite_set.write_text(json.dumps({"kind": "manual", "stamp": "20200101_000000_000000", "files": {}}),
                          encoding="utf-8")
    status, _, err = run(capsys, "restore", "latest")
    assert status == 3 and "no backup set matches 'latest'" in err


def test_an_app_host_of_a_postgresql_deployment_says_where_backups_are_taken(host, capsys):
    host.config_file.write_text(json.dumps({**host.config, "database_on_this_host": False}), encoding="utf-8")
    status, _, err = run(capsys, "create")
    assert status == 1
    assert "the database is postgresql on tm-db: its backups are taken and restored there" in err


def test_a_safety_set_taken_before_a_restore_is_never_what_latest_names(host, capsys):
    chosen = json.loads(run(capsys, "create")[1])
    host.cluster.sql("DELETE FROM tasks", database=DB)
    status, out, err = run(capsys, "create", "--kind", "safety", "--label", "before restore of latest")
    assert status == 0, err
    assert json.loads(out)["dir"].endswith("/safety")
    status, out, err = run(capsys, "restore", "latest")
    assert status == 0, err
    assert json.loads(out)["stamp"] == chosen["stamp"]
    assert counts(host.cluster) == (2, 7)


# Issue 32's attack: a function of the schema owner's, called by a CHECK constraint, that runs
# a program whenever the one who loads a row is a superuser (and passes quietly otherwise, so
# the owner can add it to a live table).
MARKER = "ran-as-superuser"
PROBE = (
    "CREATE FUNCTION public.probe(t text) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN "
    "IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN "
    "EXECUTE format('COPY (SELECT current_user) TO PROGRAM %L', 'id > {marker}'); END IF; "
    "RETURN true; END $$",
    "ALTER TABLE tasks ADD CONSTRAINT tasks_probe CHECK (public.probe(title))",
)


def plant_probe(host) -> Path:
    marker = host.cluster.base / MARKER
    host.cluster.sql(*(s.replace("{marker}", str(marker)) for s in PROBE), database=DB, role=OWNER)
    return marker


def test_a_dump_with_objects_the_migrations_did_not_make_is_refused_and_named(host, capsys):
    marker = plant_probe(host)
    status, _, err = run(capsys, "create", "--kind", "daily")
    assert status == 1
    assert "holds objects the migrations did not make" in err and "FUNCTION probe(text)" in err
    assert not marker.exists()
    assert databases(host.cluster) == {DB} and not list(host.dir.glob("daily/*.json"))


def test_every_dump_is_loaded_as_the_schema_owner_so_its_code_never_runs_as_a_superuser(host, capsys, monkeypatch):
    marker = plant_probe(host)
    # The refusal above bypassed: what still stands is who loads the dump.
    monkeypatch.setattr(backup_postgresql, "refuse_foreign", lambda config, dump_file: None)
    status, out, err = run(capsys, "create")
    assert status == 0, err
    made = json.loads(out)
    status, _, err = run(capsys, "restore", "latest")
    assert status == 0, err
    assert not marker.exists()
    # The control: the same dump loaded by the superuser, as the command did before, runs it.
    host.cluster.sql("CREATE DATABASE probe_control OWNER tm_owner TEMPLATE template0")
    try:
        pgcluster.subprocess.run(
            [str(pgcluster.PG_BIN / "pg_restore"), "--host", str(host.cluster.socket_dir), "--username", "postgres",
             "--dbname", "probe_control", str(Path(made["dir"]) / f"task_manager_{made['stamp']}.dump")],
            check=True, capture_output=True)
        assert marker.exists()
    finally:
        host.cluster.drop_database("probe_control")


def test_what_the_migrations_make_is_what_a_dump_may_hold(host, capsys):
    """The app's own migrations on an empty database: its set is taken, verified and restored."""
    host.cluster.drop_database(DB)
    host.cluster.sql(f"CREATE DATABASE {DB} OWNER {OWNER} TEMPLATE template0")
    host.cluster.sql(*pgcluster.API_GRANTS, database=DB)
    app = create_app({"TESTING": True, "SECRET_KEY": "x" * 48, "LOG_DIR": str(host.dir.parent / "logs"),
                      "SQLALCHEMY_DATABASE_URI": host.cluster.url(DB, API),
                      "MIGRATION_DATABASE_URI": host.cluster.url(DB, OWNER)})
    with app.app_context():
        upgrade(directory=MIGRATIONS_DIR)
        app.extensions["sqlalchemy"].engine.dispose()
    routines = host.cluster.sql(
        "SELECT 'FUNCTION', p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace "
        "UNION SELECT 'TRIGGER', tgrelid::regclass::text || ' ' || tgname FROM pg_trigger WHERE NOT tgisinternal",
        database=DB)
    assert {(kind, name.replace(",", ", ")) for kind, name in routines} == backup_postgresql.MIGRATION_ROUTINES
    status, out, err = run(capsys, "create")
    assert status == 0, err
    assert json.loads(out)["schema_revision"] == "0006"
    assert run(capsys, "restore", "latest")[0] == 0


def test_a_table_of_contents_is_read_entry_by_entry():
    listing = "\n".join((
        ";     Format: CUSTOM",
        "3426; 0 0 ACL - SCHEMA public pg_database_owner",
        "224; 1255 16467 FUNCTION public task_counts_add(integer, character varying, integer) tm_owner",
        "3267; 2620 16469 TRIGGER public tasks task_counts_follow tm_owner",
        "2063; 826 16387 DEFAULT ACL public DEFAULT PRIVILEGES FOR TABLES tm_owner",
        "3417; 0 16420 TABLE DATA public tasks tm_owner",
        "230; 1255 16500 FUNCTION public task_counts_add(integer, character varying, integer) postgres",
        "231; 3079 16501 EXTENSION - plpython3u ",
        "232; 1259 16502 VIEW public users_v tm_owner",
        "233; 2618 16503 RULE public tasks r tm_owner",
    ))
    assert backup_postgresql.foreign_objects(listing, "tm_owner") == [
        "FUNCTION task_counts_add(integer, character varying, integer) (owner postgres)",
        "EXTENSION plpython3u (owner none)",
        "VIEW users_v (owner tm_owner)",
        "RULE tasks r (owner tm_owner)",
    ]
