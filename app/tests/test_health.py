import os

from task_manager import __version__, create_app
from tests.conftest import make_config


def test_health_reports_the_manuals_json(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "OK"
    assert body["message"] == "タスク管理API は正常に動作中です"
    assert body["version"] == __version__
    assert body["checks"] == {"database": "ok"}
    assert body["schema_revision"] == "0002"


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


def test_health_is_503_before_migrations(tmp_path):
    app = create_app(make_config(tmp_path))
    assert app.test_client().get("/health").status_code == 503


def test_health_reports_the_release_record(tmp_path):
    record = tmp_path / "RELEASE.json"
    record.write_text('{"release": "v1.2.0", "revision": "abc123", "built_at": "2026-01-01T00:00:00Z", "x": 1}')
    app = create_app(make_config(tmp_path, RELEASE_INFO_FILE=str(record)))
    with app.app_context():
        from flask_migrate import upgrade

        from task_manager.extensions import MIGRATIONS_DIR

        upgrade(directory=MIGRATIONS_DIR)
    body = app.test_client().get("/health").get_json()
    assert body["release"] == "v1.2.0"
    assert body["revision"] == "abc123"
    assert "x" not in body
    assert os.path.exists(record)
