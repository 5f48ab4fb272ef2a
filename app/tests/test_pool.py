"""Connections: none before the first request (fork safety), and the pool the settings ask for."""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.pool import Pool

from task_manager import create_app, gunicorn_conf
from task_manager.extensions import db
from tests.conftest import make_config
from tests.livesrv import APP_DIR, live_server


@pytest.fixture
def connections_opened():
    """Every DBAPI connection any pool opens while the test runs."""
    opened = []

    def on_connect(_dbapi_connection, _record):
        opened.append(1)

    event.listen(Pool, "connect", on_connect)
    yield opened
    event.remove(Pool, "connect", on_connect)


def test_create_app_opens_no_connection(tmp_path, database, connections_opened):
    """gunicorn's master never holds a connection a worker could inherit: making the app
    (what a preloading master would do) connects to nothing; the first request does."""
    app = create_app(make_config(tmp_path, **database))
    with app.app_context():
        assert db.engine.pool.checkedout() == 0
    assert connections_opened == []
    assert app.test_client().get("/health").status_code == 200
    assert len(connections_opened) == 1
    with app.app_context():
        assert db.engine.pool.checkedout() == 0  # returned to the pool after the request
        db.engine.dispose()


def test_gunicorn_does_not_preload_the_app():
    assert gunicorn_conf.preload_app is False


def _gunicorn_processes(cwd) -> tuple[int, list[int]]:
    """(master, workers) of the gunicorn live_server started in cwd."""
    mine = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry.name}/cwd") != str(cwd):
                continue
            if b"task_manager.gunicorn_conf" not in Path(f"/proc/{entry.name}/cmdline").read_bytes():
                continue
            mine[int(entry.name)] = int(Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
    masters = [pid for pid, parent in mine.items() if parent not in mine]
    assert len(masters) == 1, mine
    return masters[0], [pid for pid in mine if pid != masters[0]]


@pytest.mark.sqlite_only
def test_gunicorns_master_holds_the_libraries_but_no_connection_and_no_metric(tmp_path, engine):
    """The libraries and the app's modules are imported once in the master and shared by the
    forked workers; the master still never opens the database nor creates a metric file a
    worker could inherit."""
    env = {"TASK_MANAGER_METRICS_DIR": str(tmp_path / "metrics")}
    with live_server(tmp_path, workers=2, extra_env=env) as url:
        for _ in range(10):
            with urllib.request.urlopen(f"{url}/health", timeout=10) as _response:
                pass
        # gunicorn forks its workers a moment apart: the first may answer before the second is.
        deadline = time.monotonic() + 10
        while len((found := _gunicorn_processes(tmp_path))[1]) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        master, workers = found
        assert len(workers) == 2
        for pid in (master, *workers):  # pydantic's compiled core is mapped: the library is loaded
            assert "_pydantic_core" in Path(f"/proc/{pid}/maps").read_text(), pid
        opened = {os.readlink(f"/proc/{master}/fd/{fd}") for fd in os.listdir(f"/proc/{master}/fd")}
        assert not [path for path in opened if "task_manager.db" in path], opened
        files = [f.name for f in (tmp_path / "metrics").glob("*.db")]
        assert files, "the workers count"
        assert not [name for name in files if name.endswith(f"_{master}.db")], files


def test_the_wsgi_module_loads_with_the_database_down(tmp_path):
    """Importing task_manager.wsgi (what each worker does) needs no database: with PostgreSQL
    unreachable it still loads, and only a request finds out (503)."""
    code = (
        "import json; from task_manager.wsgi import app; from task_manager.extensions import db\n"
        "with app.app_context(): before = db.engine.pool.checkedin() + db.engine.pool.checkedout()\n"
        "response = app.test_client().get('/health')\n"
        "print(json.dumps({'before': before, 'status': response.status_code, 'body': response.get_json()}))\n"
    )
    env = {"PATH": os.environ["PATH"], "TASK_MANAGER_ENV": "development",
           "TASK_MANAGER_INSTANCE_PATH": str(tmp_path / "instance"), "TASK_MANAGER_LOG_DIR": str(tmp_path / "logs"),
           "DATABASE_URL": f"postgresql://tm_api:pw@/task_manager?host={tmp_path / 'no-server-here'}"}
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=APP_DIR, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["before"] == 0
    assert answer["status"] == 503
    assert answer["body"]["checks"] == {"database": "error"}
    assert answer["body"]["engine"] == "postgresql"
    assert "pw@" not in result.stdout + result.stderr + (tmp_path / "logs" / "errors.log").read_text()


@pytest.mark.postgresql_only
def test_postgresql_pool_follows_the_settings(app, app_with):
    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"] == {
        "pool_size": 4, "max_overflow": 2, "pool_timeout": 10, "pool_pre_ping": True, "pool_recycle": 1800,
        "connect_args": {"connect_timeout": 5, "application_name": "task-manager"},
    }
    small = app_with(DATABASE_POOL_SIZE=1, DATABASE_POOL_OVERFLOW=0, DATABASE_POOL_TIMEOUT_SECONDS=3,
                     DATABASE_CONNECT_TIMEOUT_SECONDS=2)
    with small.app_context():
        pool = db.engine.pool
        assert (pool.size(), pool._max_overflow, pool._timeout) == (1, 0, 3)
        assert db.engine.dialect.name == "postgresql" and db.engine.driver == "psycopg"
        assert db.session.scalar(text("SELECT current_setting('application_name')")) == "task-manager"
        db.session.remove()
        db.engine.dispose()


@pytest.mark.postgresql_only
def test_an_exhausted_pool_is_503_not_a_hang(app_with):
    """Every connection busy for longer than DATABASE_POOL_TIMEOUT_SECONDS: 503 and Retry-After."""
    app = app_with(DATABASE_POOL_SIZE=1, DATABASE_POOL_OVERFLOW=0, DATABASE_POOL_TIMEOUT_SECONDS=1)
    held = threading.Event()
    release = threading.Event()

    def hold_the_only_connection():
        with app.app_context(), db.engine.connect():
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold_the_only_connection)
    holder.start()
    try:
        assert held.wait(30)
        response = app.test_client().get("/api/auth/me", headers={"Authorization": "Bearer x.y.z"})
        health = app.test_client().get("/health")
        response = app.test_client().post("/api/auth/login", json={"username": "alice", "password": "whatever-pw"})
    finally:
        release.set()
        holder.join(30)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.get_json()["error"] == "database_unavailable"
    assert health.status_code == 503
    assert app.test_client().get("/health").status_code == 200  # and free again


@pytest.fixture
def connections_held():
    """How many pooled connections are checked out at once: now, and at most, while the test runs."""
    held = {"now": 0, "most": 0}

    def on_checkout(_dbapi_connection, _record, _proxy):
        held["now"] += 1
        held["most"] = max(held["most"], held["now"])

    def on_checkin(_dbapi_connection, _record):
        held["now"] -= 1

    event.listen(Pool, "checkout", on_checkout)
    event.listen(Pool, "checkin", on_checkin)
    yield held
    event.remove(Pool, "checkout", on_checkout)
    event.remove(Pool, "checkin", on_checkin)


def test_a_request_holds_one_connection_at_a_time_and_gives_it_back(app, api, connections_held):
    """The API's plain statements run on the request's own connection and the ORM's on the
    session's: a handler that uses both (the token's state, then the signed-in user's record)
    still holds one at a time, so a pool of one serves every request."""
    task = api.task(title="one connection")
    sessions = []

    def on_begin(*args):
        sessions.append(args)

    event.listen(db.session, "after_begin", on_begin)
    try:
        connections_held["most"] = 0
        assert api.get("/api/tasks").status_code == 200
        assert api.patch(f"/api/tasks/{task['id']}", json={"status": "completed"}).status_code == 200
        assert sessions == []  # the list and the write ran below the session
        assert connections_held == {"now": 0, "most": 1}
        assert api.get("/api/auth/me").status_code == 200  # token state, then the session
        assert len(sessions) == 1
        assert connections_held == {"now": 0, "most": 1}
        # /health through nginx (its unix socket: no REMOTE_ADDR) with a token: the token's
        # check and the database probe, the details shown because the token was checked.
        health = api.client.get("/health", environ_base={"REMOTE_ADDR": ""},
                                headers={"Authorization": f"Bearer {api.access}"})
        assert health.status_code == 200 and "schema_revision" in health.get_json()
        assert len(sessions) == 2
        assert connections_held == {"now": 0, "most": 1}
    finally:
        event.remove(db.session, "after_begin", on_begin)
