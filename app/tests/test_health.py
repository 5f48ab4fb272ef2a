import os

import pytest

from task_manager import __version__, create_app
from tests.conftest import make_config


def test_health_reports_the_manuals_json(client, engine):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "OK"
    assert body["message"] == "タスク管理API は正常に動作中です"
    assert body["version"] == __version__
    assert body["checks"] == {"database": "ok"}
    assert body["schema_revision"] == "0006"
    assert body["engine"] == engine


# PostgreSQL's counterpart, a server that is down: test_postgresql.py.
@pytest.mark.sqlite_only
@pytest.mark.usefixtures("engine")
def test_health_is_503_when_the_database_is_unusable(tmp_path):
    config = make_config(tmp_path)
    db_file = tmp_path / "instance" / "task_manager.db"
    db_file.parent.mkdir(parents=True)
    db_file.write_bytes(b"this is not a database" * 100)
    app = create_app(config)
    response = app.test_client().get("/health")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "ERROR"
    assert body["checks"] == {"database": "error"}
    assert "Traceback" not in response.get_data(as_text=True)


def test_health_is_503_before_migrations(tmp_path, new_database, engine):
    app = create_app(make_config(tmp_path, **new_database(migrated=False)))
    response = app.test_client().get("/health")
    assert response.status_code == 503
    assert response.get_json()["engine"] == engine


def test_health_reports_the_release_record(tmp_path, app_with):
    record = tmp_path / "RELEASE.json"
    record.write_text('{"release": "v1.2.0", "revision": "abc123", "built_at": "2026-01-01T00:00:00Z", "x": 1}')
    app = app_with(RELEASE_INFO_FILE=str(record))
    body = app.test_client().get("/health").get_json()
    assert body["release"] == "v1.2.0"
    assert body["revision"] == "abc123"
    assert "x" not in body
    assert os.path.exists(record)


@pytest.fixture
def release_app(tmp_path, app_with):
    record = tmp_path / "RELEASE.json"
    record.write_text('{"release": "v1.2.0", "revision": "abc123", "built_at": "2026-01-01T00:00:00Z"}')
    return app_with(RELEASE_INFO_FILE=str(record), TRUSTED_PROXIES=1)


# A request from nginx's unix socket: gunicorn leaves REMOTE_ADDR empty.
PUBLIC = {"REMOTE_ADDR": "", "HTTP_X_FORWARDED_FOR": "203.0.113.5"}
DETAILS = {"revision", "built_at", "schema_revision"}


def test_anonymous_public_health_leaves_out_the_build_details(release_app):
    client = release_app.test_client()
    body = client.get("/health", environ_base=PUBLIC).get_json()
    assert body["status"] == "OK"
    assert body["release"] == "v1.2.0"  # the playbooks read it through nginx too
    assert body["checks"] == {"database": "ok"}
    assert {"status", "message", "version", "release", "engine", "checks"} <= set(body)
    assert not DETAILS & set(body)
    # A bad, expired or refresh token counts as no token, never as an error.
    for token in ("garbage", "a.b.c"):
        answer = client.get("/health", environ_base=PUBLIC, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200
        assert not DETAILS & set(answer.get_json())


def test_local_direct_and_signed_in_callers_get_everything(release_app):
    client = release_app.test_client()
    local = client.get("/health", environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_json()
    assert set(local) >= DETAILS
    assert local["revision"] == "abc123"
    client.post("/api/auth/register", json={"username": "alice", "password": "correct-horse-battery"})
    tokens = client.post("/api/auth/login", json={"username": "alice", "password": "correct-horse-battery"}).get_json()
    signed_in = client.get("/health", environ_base=PUBLIC,
                           headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert set(signed_in.get_json()) >= DETAILS
    refresh_only = client.get("/health", environ_base=PUBLIC,
                              headers={"Authorization": f"Bearer {tokens['refresh_token']}"})
    assert not DETAILS & set(refresh_only.get_json())


def test_a_direct_caller_from_elsewhere_is_public(release_app):
    # gunicorn bound to a public address by an operator: a TCP peer that is not this host.
    body = release_app.test_client().get("/health", environ_base={"REMOTE_ADDR": "192.0.2.10"}).get_json()
    assert not DETAILS & set(body)


def test_unhealthy_public_answer_also_leaves_out_the_details(tmp_path, new_database):
    app = create_app(make_config(tmp_path, **new_database(migrated=False)))
    response = app.test_client().get("/health", environ_base=PUBLIC)
    assert response.status_code == 503
    assert "schema_revision" not in response.get_json()


@pytest.mark.sqlite_only  # the fault is made by renaming a table: the API's role may not on PostgreSQL
def test_a_database_fault_in_the_token_check_leaves_the_caller_anonymous(release_app):
    """The token's check reads the blocklist on the request's own connection; when that
    statement fails, the caller counts as anonymous and the probe still runs on the session."""
    from sqlalchemy import text

    from task_manager.extensions import db

    client = release_app.test_client()
    client.post("/api/auth/register", json={"username": "alice", "password": "correct-horse-battery"})
    token = client.post("/api/auth/login", json={"username": "alice", "password": "correct-horse-battery"}
                        ).get_json()["access_token"]
    with release_app.app_context():
        db.session.execute(text("ALTER TABLE revoked_tokens RENAME TO revoked_tokens_away"))
        db.session.commit()
    answer = client.get("/health", environ_base=PUBLIC, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    assert answer.get_json()["checks"] == {"database": "ok"}
    assert not DETAILS & set(answer.get_json())
