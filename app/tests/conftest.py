"""Fixtures in the flaskr style: app, client, runner, on a real SQLite file per test."""

from __future__ import annotations

import pytest
from flask_migrate import upgrade

from task_manager import create_app
from task_manager.extensions import MIGRATIONS_DIR

PASSWORD = "correct-horse-battery"


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


@pytest.fixture
def app_config(tmp_path):
    return make_config(tmp_path)


def migrated_app(config: dict):
    app = create_app(config)
    with app.app_context():
        upgrade(directory=MIGRATIONS_DIR)
    return app


@pytest.fixture
def app(app_config):
    app = migrated_app(app_config)
    yield app
    with app.app_context():
        from task_manager.extensions import db

        db.engine.dispose()


@pytest.fixture
def app_with(tmp_path):
    """An app on its own migrated database, with some settings changed."""
    return lambda **overrides: migrated_app(make_config(tmp_path, **overrides))


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
