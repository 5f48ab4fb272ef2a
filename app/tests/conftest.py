"""Fixtures in the flaskr style: app, client, runner, on both engines the app supports.

Every test that uses a database runs twice, as test[sqlite] (a real SQLite file) and
test[postgresql] (a real PostgreSQL 15 server), each time on an empty database at the head
revision. The PostgreSQL server is a throwaway cluster the session starts
(tests/pgcluster.py); the app connects as the API's role (rows only) and migrates as the
schema owner (MIGRATION_DATABASE_URI), as deployed. The migrations run once per session, into
a template: SQLite tests get a copy of its file; PostgreSQL tests share one copy of its
database, emptied between tests (TRUNCATE ... RESTART IDENTITY) and replaced by a new copy
whenever a test changed its schema or grants (pgcluster.Recycled).

A test that only makes sense on one engine says so: @pytest.mark.sqlite_only (PRAGMA,
the file itself) or @pytest.mark.postgresql_only (roles, pg_ctl).
"""

from __future__ import annotations

import hashlib
import itertools
import shutil

import pytest
from flask_migrate import upgrade

from task_manager import create_app
from task_manager.extensions import MIGRATIONS_DIR, db
from tests.pgcluster import API, OWNER, Cluster, ClusterError, Recycled

PASSWORD = "correct-horse-battery"
ENGINES = ("sqlite", "postgresql")


@pytest.fixture(autouse=True, scope="session")
def _remembered_scrypt():
    """scrypt is deterministic: one password and salt always give one key. The tests remember
    the keys they computed, so the login that follows a registration (the Api helper, in most
    tests) costs no second scrypt. Every key is still scrypt's own."""
    real = hashlib.scrypt
    known: dict = {}

    def scrypt(password, **parameters):
        key = (bytes(password), tuple(sorted(parameters.items())))
        if key not in known:
            known[key] = real(password, **parameters)
        return known[key]

    hashlib.scrypt = scrypt
    yield
    hashlib.scrypt = real


def pytest_generate_tests(metafunc):
    if "engine" not in metafunc.fixturenames:
        return
    engines = ENGINES
    if metafunc.definition.get_closest_marker("sqlite_only"):
        engines = ("sqlite",)
    elif metafunc.definition.get_closest_marker("postgresql_only"):
        engines = ("postgresql",)
    metafunc.parametrize("engine", engines, indirect=True)


def make_config(tmp_path, **overrides) -> dict:
    config = {
        "TESTING": True,
        "ENV_NAME": "testing",
        "SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'instance' / 'task_manager.db'}",
        "LOG_DIR": str(tmp_path / "logs"),
    }
    config.update(overrides)
    return config


def migrated_app(config: dict):
    app = create_app(config)
    with app.app_context():
        upgrade(directory=MIGRATIONS_DIR)
        db.engine.dispose()
    return app


@pytest.fixture(scope="session")
def pg_cluster():
    """The session's PostgreSQL server, started on first use (SQLite-only runs never start it)."""
    try:
        cluster = Cluster()
    except ClusterError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        cluster.init()
        cluster.start()
        cluster.setup_roles()
    except ClusterError as exc:
        cluster.destroy()
        pytest.fail(f"the test PostgreSQL did not start: {exc}", pytrace=False)
    yield cluster
    cluster.destroy()


def pg_config(cluster: Cluster, name: str) -> dict:
    """The app's settings for one database: the API's role, and the owner for migrations."""
    return {"SQLALCHEMY_DATABASE_URI": cluster.url(name, API), "MIGRATION_DATABASE_URI": cluster.url(name, OWNER)}


@pytest.fixture(scope="session")
def pg_template(pg_cluster, tmp_path_factory):
    name = pg_cluster.create_database(prefix="tm_template")
    migrated_app(make_config(tmp_path_factory.mktemp("pg-template"), **pg_config(pg_cluster, name)))
    return name


@pytest.fixture(scope="session")
def pg_recycled(pg_cluster, pg_template):
    return Recycled(pg_cluster, pg_template)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    base = tmp_path_factory.mktemp("sqlite-template")
    migrated_app(make_config(base))  # the engine is disposed: the WAL is checkpointed into the file
    return base / "instance" / "task_manager.db"


@pytest.fixture
def engine(request):
    """'sqlite' or 'postgresql': the engine this run of the test is on (see pytest_generate_tests)."""
    return request.param


@pytest.fixture
def new_database(engine, tmp_path, request):
    """Make another database on this test's engine: new_database(migrated=True) -> the app's
    settings for it. The first one is the test's own database (the `database` fixture)."""
    counter = itertools.count()
    made: list[str] = []
    cluster = request.getfixturevalue("pg_cluster") if engine == "postgresql" else None

    def make(migrated: bool = True) -> dict:
        number = next(counter)
        if cluster is None:
            folder = tmp_path / "instance" if number == 0 else tmp_path / f"instance{number}"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "task_manager.db"
            if migrated:
                shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
            return {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}"}
        if number == 0 and migrated:  # the test's own database: the recycled one, emptied
            return pg_config(cluster, request.getfixturevalue("pg_recycled").fresh())
        name = cluster.create_database(template=request.getfixturevalue("pg_template") if migrated else None)
        made.append(name)
        return pg_config(cluster, name)

    yield make
    for name in made:
        cluster.drop_database(name)  # WITH (FORCE): the test's pools may still hold connections


@pytest.fixture
def database(new_database) -> dict:
    """This test's database, migrated to head: the settings that point the app at it."""
    return new_database()


@pytest.fixture
def database_env(engine, database) -> dict:
    """The same, as the environment of a task-manager or gunicorn process (SQLite: the file
    in the instance folder, which is where the settings point)."""
    if engine == "sqlite":
        return {}
    return {"DATABASE_URL": database["SQLALCHEMY_DATABASE_URI"],
            "MIGRATION_DATABASE_URL": database["MIGRATION_DATABASE_URI"]}


@pytest.fixture
def app_config(tmp_path, database):
    return make_config(tmp_path, **database)


@pytest.fixture
def app(app_config):
    app = create_app(app_config)
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def app_with(tmp_path, database):
    """An app on the test's migrated database, with some settings changed."""
    return lambda **overrides: create_app(make_config(tmp_path, **{**database, **overrides}))


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class Api:
    """A signed-in user's view of the API, for terse tests."""

    def __init__(self, client, username: str = "alice", password: str = PASSWORD):
        self.client = client
        self.username = username
        response = client.post("/api/auth/register", json={"username": username, "password": password})
        assert response.status_code == 201, response.get_json()
        response = client.post("/api/auth/login", json={"username": username, "password": password})
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        self.access = body["access_token"]
        self.refresh = body["refresh_token"]
        self.user = body["user"]

    def headers(self, token: str | None = None) -> dict:
        return {"Authorization": f"Bearer {token or self.access}"}

    def get(self, url, **kw):
        return self.client.get(url, headers=self.headers(), **kw)

    def post(self, url, **kw):
        return self.client.post(url, headers=self.headers(), **kw)

    def put(self, url, **kw):
        return self.client.put(url, headers=self.headers(), **kw)

    def patch(self, url, **kw):
        return self.client.patch(url, headers=self.headers(), **kw)

    def delete(self, url, **kw):
        return self.client.delete(url, headers=self.headers(), **kw)

    def task(self, **fields) -> dict:
        fields.setdefault("title", "a task")
        response = self.post("/api/tasks", json=fields)
        assert response.status_code == 201, response.get_json()
        return response.get_json()


@pytest.fixture
def api(client):
    return Api(client)


@pytest.fixture
def api_factory(client):
    return lambda username: Api(client, username)
