"""What only PostgreSQL has: two roles, a server that stops and starts again, VACUUM, and the
manual's SQL in PostgreSQL's words. The rest of the suite runs on PostgreSQL too ([postgresql])."""

import json
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from task_manager.extensions import MIGRATION_LOCK, db
from task_manager.models import Task, User
from tests.conftest import Api
from tests.livesrv import APP_DIR
from tests.pgcluster import API, OWNER

pytestmark = [pytest.mark.postgresql_only, pytest.mark.usefixtures("engine")]


def _json(result) -> dict:
    return json.loads(result.output.strip().splitlines()[-1])


def _database(app) -> str:
    return make_url(app.config["SQLALCHEMY_DATABASE_URI"]).database


# ---- Two roles: the owner migrates, the API only reads and writes rows ----


def test_the_api_role_works_with_rows_but_cannot_change_the_schema(app, api):
    task = api.task(title="as the API's role")
    assert api.patch(f"/api/tasks/{task['id']}", json={"status": "completed"}).status_code == 200
    assert api.delete(f"/api/tasks/{task['id']}").status_code == 204
    with app.app_context():
        assert db.session.scalar(text("SELECT current_user")) == API
        for statement, refusal in [
            ("CREATE TABLE intruder (id integer)", "permission denied for schema public"),
            ("DROP TABLE tasks", "must be owner of table tasks"),
            ("ALTER TABLE users ADD COLUMN x integer", "must be owner of table users"),
            ("TRUNCATE tasks", "permission denied for table tasks"),
            ("CREATE INDEX ix_intruder ON tasks (title)", "must be owner of table tasks"),
        ]:
            with pytest.raises(ProgrammingError, match=refusal):
                db.session.execute(text(statement))
            db.session.rollback()
        assert "intruder" not in inspect(db.engine).get_table_names()


def test_migrations_run_as_the_owner(app, runner):
    assert _json(runner.invoke(args=["migrate", "--to", "0002"])) == {"from": "0006", "to": "0002", "changed": True}
    assert _json(runner.invoke(args=["migrate"])) == {"from": "0002", "to": "0006", "changed": True}
    with app.app_context():
        owners = db.session.execute(text(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")).scalars().all()
    assert owners == [OWNER]


def test_without_the_owners_url_migrating_fails_cleanly(app_with):
    app = app_with(MIGRATION_DATABASE_URI=None)
    result = app.test_cli_runner().invoke(args=["migrate", "--to", "0002"])
    assert result.exit_code == 1
    assert "migration failed" in result.output and "MIGRATION_DATABASE_URL" in result.output
    assert "Traceback" not in result.output
    assert _json(app.test_cli_runner().invoke(args=["schema"]))["current"] == "0006"  # rolled back whole


# ---- A PostgreSQL restart: 503 while it is down, and back by itself ----


def test_a_postgresql_restart_is_503_then_recovers_without_an_api_restart(app, pg_cluster, tmp_path):
    api = Api(app.test_client())
    task = api.task(title="before the restart")
    assert api.get("/api/tasks").status_code == 200  # the pool now holds a connection
    pg_cluster.stop("fast")
    try:
        answers = {
            "list": api.get("/api/tasks"),
            "create": api.post("/api/tasks", json={"title": "during"}),
            "login": api.client.post("/api/auth/login", json={"username": "alice", "password": "whatever-pw"}),
            "register": api.client.post("/api/auth/register",
                                        json={"username": "newbie", "password": "long-pass-1234"}),
        }
        for name, response in answers.items():
            assert response.status_code == 503, name
            assert response.headers["Retry-After"] == "5", name
            assert response.get_json()["error"] == "database_unavailable", name
        health = api.client.get("/health")
        assert health.status_code == 503
        body = health.get_json()
        assert body["status"] == "ERROR" and body["checks"] == {"database": "error"}
        assert body["engine"] == "postgresql"
        cli = app.test_cli_runner()
        for command in (["check-db"], ["stats", "--json"], ["schema"], ["optimize"]):
            result = cli.invoke(args=command)
            assert result.exit_code == 1, command
            assert "database unavailable" in result.output, command
            assert "Traceback" not in result.output, command
        # Unreachable, not damaged: recover.yml restores nothing over a database it cannot see.
        unreachable = cli.invoke(args=["check-db", "--json"])
        assert unreachable.exit_code == 1
        report = _json(unreachable)
        assert report["reachable"] is False and report["ok"] is False
        assert report["problems"][0].startswith("database unavailable: ")
    finally:
        pg_cluster.start()
    # The pooled connection died with the server; pool_pre_ping replaces it before use.
    listed = api.get("/api/tasks")
    assert listed.status_code == 200
    assert [t["title"] for t in listed.get_json()["tasks"]] == [task["title"]]
    assert api.client.get("/health").status_code == 200
    assert api.post("/api/tasks", json={"title": "after"}).status_code == 201
    errors = (tmp_path / "logs" / "errors.log").read_text()
    assert "Database error" in errors and "Traceback" not in errors


@pytest.mark.parametrize("holder", ["the request's connection", "the session"])
def test_a_connection_closed_after_the_answer_is_made_does_not_turn_it_into_a_500(app, api, pg_cluster, holder):
    """PostgreSQL restarting between a request's last statement and its end-of-request
    ROLLBACK: the answer stays what it was, and the next request gets a new connection.
    A list runs on the request's own connection; the session takes over from it when a
    handler (or, here, the hook) uses the ORM."""
    task = api.task(title="kept")

    def close_this_connection_from_the_server(response):
        # As a restart does: the server ends the session whose transaction is still open.
        if holder == "the session":
            pid = db.session.scalar(text("SELECT pg_backend_pid()"))
        else:  # on the driver, as the list's reads ran: SQLAlchemy must know of the transaction
            cursor = db.request_connection().connection.cursor()
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        pg_cluster.sql("SELECT pg_terminate_backend(%s)", params=(pid,))
        return response

    # Added straight to the hooks: the app has served requests already.
    app.after_request_funcs.setdefault(None, []).append(close_this_connection_from_the_server)
    listed = api.get("/api/tasks")
    assert listed.status_code == 200
    assert [t["title"] for t in listed.get_json()["tasks"]] == [task["title"]]
    app.after_request_funcs[None].remove(close_this_connection_from_the_server)
    assert api.get("/api/tasks").status_code == 200
    logged = (Path(app.config["LOG_DIR"]) / "task_manager.log").read_text()
    assert "Discarded a connection the database closed" in logged
    errors = Path(app.config["LOG_DIR"]) / "errors.log"
    assert "Traceback" not in (errors.read_text() if errors.exists() else "")


def test_a_connection_closed_before_a_read_on_the_driver_is_a_503_then_replaced(app, api, pg_cluster):
    """The database ends the request's connection after the pool handed it over: the token's
    read, on the driver, fails as SQLAlchemy's would (a 503), the connection is discarded, and
    the next request is served on a new one."""
    task = api.task(title="kept")

    def close_the_connection_before_its_first_read():
        connection = db.request_connection()  # checked out (and pinged) here
        pid = connection.connection.cursor().execute("SELECT pg_backend_pid()").fetchone()[0]
        pg_cluster.sql("SELECT pg_terminate_backend(%s)", params=(pid,))

    app.before_request_funcs.setdefault(None, []).append(close_the_connection_before_its_first_read)
    refused = api.get("/api/tasks")
    app.before_request_funcs[None].remove(close_the_connection_before_its_first_read)
    assert (refused.status_code, refused.get_json()["error"]) == (503, "database_unavailable")
    listed = api.get("/api/tasks")
    assert listed.status_code == 200
    assert [t["title"] for t in listed.get_json()["tasks"]] == [task["title"]]
    errors = (Path(app.config["LOG_DIR"]) / "errors.log").read_text()
    assert "Database error" in errors and "Traceback" not in errors


# ---- check-db ----


def test_check_db_checks_the_revision_and_every_table(app, runner, pg_cluster):
    report = _json(runner.invoke(args=["check-db", "--json"]))
    assert report["engine"] == "postgresql" and report["ok"] is True and report["problems"] == []
    assert report["reachable"] is True
    assert report["revision"] == "0006" and report["heads"] == ["0006"]
    assert set(report["tables"]) == {t.name for t in db.metadata.sorted_tables}
    runner.invoke(args=["migrate", "--to", "0002"])
    behind = runner.invoke(args=["check-db"])
    assert behind.exit_code == 1 and "at revision 0002, not at head 0006" in behind.output
    runner.invoke(args=["migrate"])
    pg_cluster.sql(f"REVOKE SELECT ON tasks FROM {API}", database=_database(app))  # noqa: S608  (a constant)
    unreadable = runner.invoke(args=["check-db", "--json"])
    assert unreadable.exit_code == 1
    report = _json(unreadable)
    assert report["ok"] is False and report["tables"]["tasks"] == "error" and report["tables"]["users"] == "ok"
    assert report["reachable"] is True  # damaged as the API sees it, not out of reach
    assert any("permission denied for table tasks" in p for p in report["problems"])


# ---- optimize: VACUUM (ANALYZE) where dead rows reach the ratio ----


def _dead_tasks(app, pg_cluster, count: int) -> None:
    with app.app_context():
        user = User(username="big", password_hash="x")
        db.session.add(user)
        db.session.flush()
        db.session.add_all(Task(user_id=user.id, title="t", description="x" * 500) for _ in range(count))
        db.session.commit()
        db.session.execute(text("DELETE FROM tasks"))
        db.session.commit()
        db.session.remove()
        db.engine.dispose()  # a backend that ends reports its statistics at once
    deadline = time.monotonic() + 10
    while pg_cluster.sql("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'tasks'",
                         database=_database(app))[0][0] < count:
        assert time.monotonic() < deadline, "the statistics never showed the dead rows"
        time.sleep(0.1)


def test_optimize_vacuums_the_tables_with_dead_rows(app, runner, pg_cluster):
    first = _json(runner.invoke(args=["optimize"]))
    assert first["engine"] == "postgresql" and first["vacuumed"] is False
    assert set(first["tables"]) == {t.name for t in db.metadata.sorted_tables}
    _dead_tasks(app, pg_cluster, 300)
    predicted = _json(runner.invoke(args=["optimize", "--dry-run"]))
    assert predicted["vacuumed"] is False and predicted["would_vacuum"] is True
    tasks = predicted["tables"]["tasks"]
    assert tasks["dead_tuples"] == 300 and tasks["dead_ratio"] == 1.0
    assert tasks["would_vacuum"] is True and tasks["may_vacuum"] is True and tasks["vacuumed"] is False
    assert predicted["tables"]["users"]["would_vacuum"] is False  # 1 live row, none dead
    again = _json(runner.invoke(args=["optimize", "--dry-run"]))
    assert again["tables"]["tasks"]["dead_tuples"] == 300  # the dry run changed nothing
    done = _json(runner.invoke(args=["optimize"]))
    assert done["vacuumed"] is True
    assert done["tables"]["tasks"]["vacuumed"] is True and done["tables"]["users"]["vacuumed"] is False
    assert done["bytes_after"] <= done["bytes_before"]
    assert _json(runner.invoke(args=["optimize", "--dry-run"]))["tables"]["tasks"]["dead_tuples"] == 0
    assert _json(runner.invoke(args=["optimize"]))["vacuumed"] is False
    forced = _json(runner.invoke(args=["optimize", "--force"]))
    assert forced["vacuumed"] is True and all(t["vacuumed"] for t in forced["tables"].values())


def test_optimize_as_the_api_role_says_the_owner_must(app_with, pg_cluster):
    app = app_with(MIGRATION_DATABASE_URI=None)
    _dead_tasks(app, pg_cluster, 50)
    runner = app.test_cli_runner()
    predicted = _json(runner.invoke(args=["optimize", "--dry-run"]))
    assert predicted["would_vacuum"] is True and predicted["tables"]["tasks"]["may_vacuum"] is False
    refused = runner.invoke(args=["optimize"])
    assert refused.exit_code == 1 and "MIGRATION_DATABASE_URL" in refused.output


# ---- The manual's SQL, in PostgreSQL's words ----


def test_the_task_list_query_uses_an_index(app):
    with app.app_context():
        db.session.execute(text("SET LOCAL enable_seqscan = off"))  # a few rows: the planner would scan
        plan = " ".join(db.session.execute(text("EXPLAIN SELECT * FROM tasks WHERE user_id = 1")).scalars())
        db.session.rollback()
    assert "Index" in plan and "ix_tasks_user_id" in plan, plan


# ---- The schema: every constraint and index has the name the models give it ----


def test_every_constraint_and_index_has_the_models_name(app):
    constraints_expected, indexes_expected = set(), set()
    for table in db.metadata.sorted_tables:
        constraints_expected |= {str(c.name) for c in table.constraints}
        indexes_expected |= {str(i.name) for i in table.indexes}
    with app.app_context():
        constraints = set(db.session.execute(text(
            "SELECT conname FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
            "WHERE t.relname <> 'alembic_version' AND t.relnamespace = 'public'::regnamespace")).scalars())
        indexes = set(db.session.execute(text(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )).scalars())
    assert constraints == constraints_expected
    # Every index is one the models declare, or the one behind a primary key or unique constraint.
    assert indexes == indexes_expected | {name for name in constraints if name.startswith(("pk_", "uq_"))}
    assert "tasks_pkey" not in constraints and "users_username_key" not in constraints  # PostgreSQL's own names


# ---- The driver under the service's MemoryDenyWriteExecute=yes ----


MDWE_PROBE = """
import ctypes, sys
libc = ctypes.CDLL("libc.so.6", use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN (Linux 6.3+)
    print("unsupported"); sys.exit(0)
import psycopg
with psycopg.connect(host=sys.argv[1], dbname="postgres", user="postgres") as conn:
    notices = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary))  # a callback from libpq
    conn.execute("DO $$ BEGIN RAISE NOTICE 'hello'; END $$")
    print(psycopg.pq.__impl__, notices[0])
"""


def test_the_driver_works_where_memory_may_not_be_written_and_executed(pg_cluster):
    """psycopg's pure-Python libpq binding (ctypes, callbacks included) under the kernel's
    refusal of writable executable memory, which the systemd unit asks for."""
    result = subprocess.run([sys.executable, "-c", MDWE_PROBE, str(pg_cluster.socket_dir)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    if result.stdout.strip() == "unsupported":
        pytest.skip("this kernel has no PR_SET_MDWE")
    assert result.stdout.split() == ["python", "hello"]


def test_two_hosts_migrating_at_once_take_turns(tmp_path, new_database, pg_cluster):
    """Each app host's deploy migrates the one shared database: while one migrates (here: the
    test holds the lock), the others wait; then every one of them succeeds, at head."""
    config = new_database(migrated=False)
    database = make_url(config["SQLALCHEMY_DATABASE_URI"]).database
    env = {"PATH": "/usr/bin:/bin", "TASK_MANAGER_ENV": "development",
           "DATABASE_URL": config["SQLALCHEMY_DATABASE_URI"],
           "MIGRATION_DATABASE_URL": config["MIGRATION_DATABASE_URI"]}
    waiting = ("SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
               "WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = %s")
    with psycopg.connect(host=str(pg_cluster.socket_dir), dbname=database, user="postgres", autocommit=True) as lock:
        lock.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        hosts = [
            subprocess.Popen([sys.executable, "-m", "task_manager", "migrate"], cwd=APP_DIR, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**env, "TASK_MANAGER_INSTANCE_PATH": str(tmp_path / f"host{n}"),
                                  "TASK_MANAGER_LOG_DIR": str(tmp_path / f"logs{n}")})
            for n in range(2)
        ]
        try:
            deadline = time.monotonic() + 60
            while lock.execute(waiting, (database,)).fetchone()[0] < 2:
                assert all(host.poll() is None for host in hosts), "a migration did not wait for the lock"
                assert time.monotonic() < deadline, "the migrations never queued for the lock"
                time.sleep(0.1)
        finally:
            lock.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
        answers = [host.communicate(timeout=120) for host in hosts]
    for host, (out, err) in zip(hosts, answers, strict=True):
        assert host.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1])["to"] == "0006"
