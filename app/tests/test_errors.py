import sqlite3

import pytest
from flask import Blueprint

from task_manager import create_app
from tests.conftest import make_config


def test_unknown_path_is_json_404(client):
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.get_json() == {"error": "not_found", "message": "指定されたリソースが見つかりません"}


def test_wrong_method_is_json_405_with_allow(client):
    response = client.delete("/health")
    assert response.status_code == 405
    assert response.get_json()["error"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def test_body_over_one_mib_is_413(api):
    response = api.post("/api/tasks", data='{"title": "' + "x" * (1024 * 1024) + '"}', content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["error"] == "request_entity_too_large"


def test_unexpected_error_is_json_500_without_trace_and_logged(tmp_path):
    app = create_app(make_config(tmp_path, TESTING=False, PROPAGATE_EXCEPTIONS=False))
    boom = Blueprint("boom", __name__)

    @boom.get("/boom")
    def explode():
        raise RuntimeError("secret internals")

    app.register_blueprint(boom)
    response = app.test_client().get("/boom")
    assert response.status_code == 500
    body = response.get_json()
    assert body == {"error": "internal_error", "message": "サーバー内部エラーが発生しました"}
    assert "secret internals" not in response.get_data(as_text=True)
    errors = (tmp_path / "logs" / "errors.log").read_text()
    assert "Traceback" in errors and "secret internals" in errors


# PostgreSQL's counterpart, a server that is down: test_postgresql.py.
@pytest.mark.sqlite_only
def test_locked_database_is_503_with_retry_after(tmp_path, app):
    app.config["PROPAGATE_EXCEPTIONS"] = False
    client = app.test_client()
    client.post("/api/auth/register", json={"username": "alice", "password": "correct-horse"})
    token = client.post("/api/auth/login", json={"username": "alice", "password": "correct-horse"}).get_json()
    path = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    app.config["SQLITE_BUSY_TIMEOUT_MS"] = 0
    blocker = sqlite3.connect(path)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        # A short busy timeout on a fresh engine, so the test does not wait 5 s.
        fast = create_app({**_config_of(app), "SQLITE_BUSY_TIMEOUT_MS": 50, "PROPAGATE_EXCEPTIONS": False})
        response = fast.test_client().post(
            "/api/tasks", json={"title": "t"}, headers={"Authorization": f"Bearer {token['access_token']}"}
        )
    finally:
        blocker.rollback()
        blocker.close()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.get_json()["error"] == "database_unavailable"


def _config_of(app):
    keys = ("TESTING", "ENV_NAME", "SECRET_KEY", "SQLALCHEMY_DATABASE_URI", "LOG_DIR")
    return {k: app.config[k] for k in keys}


@pytest.mark.parametrize("path", ["/api/tasks", "/api/auth/me", "/api/tasks/1"])
def test_errors_never_leak_html(client, path):
    response = client.get(path)
    assert response.is_json
    assert "<html" not in response.get_data(as_text=True).lower()
