"""The operator's commands, on both engines (the SQLite-only ones have PostgreSQL counterparts
in test_postgresql.py)."""

import contextlib
import json
import os
import shutil
import sqlite3
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from task_manager.extensions import MIGRATIONS_DIR, db
from task_manager.models import Task, User, utcnow


def test_init_db_is_idempotent(runner):
    first = runner.invoke(args=["init-db"])
    second = runner.invoke(args=["init-db"])
    assert first.exit_code == second.exit_code == 0
    assert "revision 0006" in second.output


def test_create_user_then_login(runner, client):
    result = runner.invoke(args=["create-user", "opsadmin", "--password", "long-enough-pw"])
    assert result.exit_code == 0, result.output
    response = client.post("/api/auth/login", json={"username": "opsadmin", "password": "long-enough-pw"})
    assert response.status_code == 200


def test_create_user_refuses_bad_input(runner):
    assert runner.invoke(args=["create-user", "x", "--password", "long-enough-pw"]).exit_code != 0
    assert runner.invoke(args=["create-user", "okname", "--password", "short"]).exit_code != 0
    runner.invoke(args=["create-user", "okname", "--password", "long-enough-pw"])
    duplicate = runner.invoke(args=["create-user", "okname", "--password", "long-enough-pw"])
    assert duplicate.exit_code != 0
    assert "既に" in duplicate.output


def test_create_user_applies_the_password_rules(runner):
    for weak in ("elevenchars", "1qaz2wsx3edc"):  # too short; on the common list
        result = runner.invoke(args=["create-user", "okname", "--password", weak])
        assert result.exit_code != 0
        assert "password" in result.output


def test_demo_user_is_created_once_and_can_log_in(runner, client):
    # demo_password would not pass the rules today; the manual's demo account skips them on purpose.
    assert runner.invoke(args=["create-demo-user"]).output.startswith("created")
    assert runner.invoke(args=["create-demo-user"]).output.startswith("unchanged")
    response = client.post("/api/auth/login", json={"username": "demo_user", "password": "demo_password"})
    assert response.status_code == 200


def test_check_db_passes_on_a_good_database(runner, engine):
    result = runner.invoke(args=["check-db"])
    assert result.exit_code == 0
    assert result.output.strip() == "ok"
    report = _json(runner, "check-db", "--json")
    assert report["engine"] == engine and report["ok"] is True and report["problems"] == []
    assert report["reachable"] is True


@pytest.mark.sqlite_only
def test_check_db_fails_on_a_foreign_key_violation(app, runner):
    path = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:  # foreign_keys is off on this raw connection
        conn.execute("INSERT INTO tasks (user_id, title, status, priority, created_at, updated_at) "
                     "VALUES (42, 'orphan', 'pending', 'medium', '2024-01-01', '2024-01-01')")
    result = runner.invoke(args=["check-db"])
    assert result.exit_code == 1
    assert "foreign key violation" in result.output
    result = runner.invoke(args=["check-db", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["ok"] is False and report["problems"][0].startswith("foreign key violation")


def _seed(app):
    now = utcnow()
    with app.app_context():
        user = User(username="ann", password_hash="x", created_at=now - timedelta(days=40))
        db.session.add(user)
        db.session.flush()
        db.session.add_all([
            Task(user_id=user.id, title="old", status="completed", created_at=now - timedelta(days=200),
                 completed_at=now - timedelta(days=100)),
            Task(user_id=user.id, title="recent", status="completed", completed_at=now - timedelta(days=3)),
            Task(user_id=user.id, title="open", status="pending"),
            Task(user_id=user.id, title="doing", status="in_progress"),
        ])
        db.session.commit()


def test_stats_json(app, runner, engine):
    _seed(app)
    result = runner.invoke(args=["stats", "--json", "--days", "30"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["engine"] == engine
    assert stats["users"] == 1
    assert stats["tasks"] == {"total": 4, "by_status": {"pending": 1, "in_progress": 1, "completed": 2}}
    assert stats["period"]["tasks_created"] == 3
    assert stats["period"]["tasks_completed"] == 1
    assert stats["period"]["users_registered"] == 0
    assert stats["database_bytes"] > 0
    text = runner.invoke(args=["stats"]).output
    assert "users: 1" in text and "completed: 2" in text


def test_purge_completed_dry_run_then_real(app, runner):
    _seed(app)
    assert "would delete 1" in runner.invoke(args=["purge-completed", "--dry-run"]).output
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(Task.id))) == 4
    assert "deleted 1" in runner.invoke(args=["purge-completed", "--days", "90"]).output
    with app.app_context():
        titles = sorted(t.title for t in db.session.scalars(db.select(Task)))
    assert titles == ["doing", "open", "recent"]
    assert "deleted 1" in runner.invoke(args=["purge-completed", "--days", "1"]).output


@pytest.mark.sqlite_only
def test_optimize_vacuums_only_when_there_is_free_space(app, runner):
    first = json.loads(runner.invoke(args=["optimize"]).output)
    assert first["vacuumed"] is False  # a fresh database has nothing to reclaim
    assert first["engine"] == "sqlite"
    with app.app_context():
        user = User(username="big", password_hash="x")
        db.session.add(user)
        db.session.flush()
        db.session.add_all(Task(user_id=user.id, title="t", description="x" * 2000) for _ in range(300))
        db.session.commit()
        db.session.execute(db.text("DELETE FROM tasks"))
        db.session.commit()
    predicted = json.loads(runner.invoke(args=["optimize", "--dry-run"]).output)
    assert predicted["vacuumed"] is False and predicted["would_vacuum"] is True
    assert predicted["bytes_after"] < predicted["bytes_before"]  # an estimate: free pages go
    again = json.loads(runner.invoke(args=["optimize", "--dry-run"]).output)
    assert again["bytes_before"] == predicted["bytes_before"]  # the dry run reclaimed nothing
    second = json.loads(runner.invoke(args=["optimize"]).output)
    assert second["vacuumed"] is True
    assert second["bytes_after"] < second["bytes_before"]
    third = json.loads(runner.invoke(args=["optimize"]).output)
    assert third["vacuumed"] is False
    forced = json.loads(runner.invoke(args=["optimize", "--force"]).output)
    assert forced["vacuumed"] is True


@pytest.mark.sqlite_only
def test_check_db_fails_cleanly_on_a_file_that_is_not_a_database(app, runner):
    path = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    with app.app_context():
        db.engine.dispose()
    with open(path, "r+b") as handle:
        handle.write(b"this is no longer a database" * 4)
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)
    result = runner.invoke(args=["check-db"])
    assert result.exit_code == 1
    assert "cannot read the database" in result.output
    assert "Traceback" not in result.output


# ---- The commands the playbooks call answer in JSON: YAML judges results, it does not parse prose ----


def _json(runner, *args) -> dict:
    result = runner.invoke(args=list(args))
    assert result.exit_code == 0, result.output
    # The runner mixes in Alembic's log lines, which go to stderr in a real run: the JSON is the last line.
    return json.loads(result.output.strip().splitlines()[-1])


def test_schema_reports_the_revision_and_the_heads(runner):
    schema = _json(runner, "schema")
    assert schema["current"] == schema["heads"][0] == "0006"
    assert schema["at_head"] is True


def test_schema_reads_another_releases_migrations(runner, tmp_path):
    # A release directory as deployed: releases/<id>/venv/lib/pythonX.Y/site-packages/task_manager/migrations
    python = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = tmp_path / "v0" / "venv" / "lib" / python / "site-packages"
    target = site / "task_manager" / "migrations"
    shutil.copytree(MIGRATIONS_DIR, target)
    (target / "versions" / "0006_task_bytes.py").unlink()
    (target / "versions" / "0005_usernames_without_case.py").unlink()
    (target / "versions" / "0004_task_counts.py").unlink()
    assert _json(runner, "schema", "--migrations-of", str(tmp_path / "v0"))["heads"] == ["0003"]
    missing = runner.invoke(args=["schema", "--migrations-of", str(tmp_path / "nothing")])
    assert missing.exit_code != 0 and "no task_manager migrations" in missing.output


def test_migrate_down_and_up_says_what_changed(runner):
    assert _json(runner, "migrate", "--to", "0002") == {"from": "0006", "to": "0002", "changed": True}
    assert _json(runner, "migrate", "--to", "0002") == {"from": "0002", "to": "0002", "changed": False}
    assert _json(runner, "migrate") == {"from": "0002", "to": "0006", "changed": True}
    assert _json(runner, "migrate") == {"from": "0006", "to": "0006", "changed": False}


def test_migrate_refuses_an_unknown_revision(runner):
    result = runner.invoke(args=["migrate", "--to", "9999"])
    assert result.exit_code != 0 and "unknown revision '9999'" in result.output


def test_demo_user_json_says_whether_it_was_created(app, runner):
    assert _json(runner, "create-demo-user", "--json") == {"username": "demo_user", "created": True}
    assert _json(runner, "create-demo-user", "--json") == {"username": "demo_user", "created": False}
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(User.id))) == 1


def test_purge_completed_json(app, runner):
    _seed(app)
    assert _json(runner, "purge-completed", "--dry-run", "--json") == {
        "days": 90, "dry_run": True, "matched": 1, "deleted": 0}
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(Task.id))) == 4
    assert _json(runner, "purge-completed", "--json") == {"days": 90, "dry_run": False, "matched": 1, "deleted": 1}
    assert _json(runner, "purge-completed", "--json")["matched"] == 0


def test_count_writes_counts_successful_task_writes_since_a_time(app, runner):
    log = Path(app.config["LOG_DIR"]) / "access.log"
    log.write_text(
        '2026-01-01 09:59:59,000 127.0.0.1 "POST /api/tasks" 201 3.0ms 120\n'  # before: not counted
        '2026-01-01 10:00:00,000 127.0.0.1 "POST /api/tasks" 201 3.0ms 120\n'
        '2026-01-01 10:00:01,000 127.0.0.1 "PATCH /api/tasks/4" 200 2.0ms 99\n'
        '2026-01-01 10:00:02,000 127.0.0.1 "DELETE /api/tasks/4" 204 2.0ms -\n'
        '2026-01-01 10:00:03,000 127.0.0.1 "GET /api/tasks" 200 2.0ms 99\n'  # a read
        '2026-01-01 10:00:04,000 127.0.0.1 "POST /api/tasks" 400 2.0ms 99\n'  # refused
        '2026-01-01 10:00:05,000 127.0.0.1 "POST /api/auth/login" 200 2.0ms 99\n'  # not a task
        '2026-01-01 10:00:06,000 127.0.0.1 "GET /x\\x22 201 1.0ms 1 \\x22POST /api/tasks" 404 1.0ms 9\n',  # forged
        encoding="utf-8",
    )
    assert _json(runner, "count-writes", "--since", "2026-01-01 10:00:00") == {
        "since": "2026-01-01 10:00:00", "task_writes": 3}
    bad = runner.invoke(args=["count-writes", "--since", "yesterday"])
    assert bad.exit_code != 0 and "YYYY-MM-DD HH:MM:SS" in bad.output


def test_count_writes_without_a_log_is_zero(app, runner):
    assert _json(runner, "count-writes", "--since", utcnow().strftime("%Y-%m-%d %H:%M:%S"))["task_writes"] == 0
