"""The database: pragmas on every connection, and the manual's own SQL against the schema."""

import sqlite3
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from task_manager.extensions import db
from task_manager.models import Task, User, utcnow


def test_every_connection_gets_the_pragmas(app):
    with app.app_context(), db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


def _db_path(app):
    return app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")


def test_manuals_explain_query_plan_uses_an_index(app):
    with sqlite3.connect(_db_path(app)) as conn:
        plan = " ".join(row[-1] for row in conn.execute("EXPLAIN QUERY PLAN SELECT * FROM tasks WHERE user_id = 1"))
    assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, plan


def test_manuals_purge_sql_deletes_exactly_old_completed_tasks(app):
    now = utcnow()
    with app.app_context():
        user = User(username="bob", password_hash="x")
        db.session.add(user)
        db.session.flush()

        def task(title, status, completed_days_ago=None):
            t = Task(user_id=user.id, title=title, status=status)
            if completed_days_ago is not None:
                t.completed_at = now - timedelta(days=completed_days_ago)
            db.session.add(t)

        task("old done", "completed", 91)
        task("old done 2", "completed", 365)
        task("recent done", "completed", 89)
        task("pending", "pending")
        task("in progress", "in_progress")
        db.session.commit()

    with sqlite3.connect(_db_path(app)) as conn:
        conn.execute(
            "DELETE FROM tasks WHERE status = 'completed' AND completed_at < datetime('now', '-90 days');"
        )
        left = sorted(row[0] for row in conn.execute("SELECT title FROM tasks"))
    assert left == ["in progress", "pending", "recent done"]


def test_database_enforces_completed_at_pairing(app):
    with app.app_context():
        user = User(username="carol", password_hash="x")
        db.session.add(user)
        db.session.commit()
        db.session.add(Task(user_id=user.id, title="bad", status="completed", completed_at=None))
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()
        db.session.add(Task(user_id=user.id, title="bad", status="pending", completed_at=utcnow()))
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()


def test_database_enforces_enums_and_foreign_keys(app):
    with app.app_context():
        with pytest.raises(IntegrityError):
            db.session.execute(text("INSERT INTO tasks (user_id, title, status, priority, created_at, updated_at) "
                                    "VALUES (999, 't', 'pending', 'medium', '2024-01-01', '2024-01-01')"))
        db.session.rollback()
        user = User(username="dave", password_hash="x")
        db.session.add(user)
        db.session.commit()
        with pytest.raises(IntegrityError):
            db.session.execute(text("INSERT INTO tasks (user_id, title, status, priority, created_at, updated_at) "
                                    "VALUES (:uid, 't', 'done', 'medium', '2024-01-01', '2024-01-01')"),
                               {"uid": user.id})
        db.session.rollback()


def test_deleting_a_user_deletes_their_tasks(app):
    with app.app_context():
        user = User(username="erin", password_hash="x")
        db.session.add(user)
        db.session.flush()
        db.session.add(Task(user_id=user.id, title="t"))
        db.session.commit()
        db.session.execute(text("DELETE FROM users WHERE id = :id"), {"id": user.id})
        db.session.commit()
        assert db.session.execute(text("SELECT count(*) FROM tasks")).scalar() == 0


def test_migrations_run_from_empty_and_back(app, runner):
    with app.app_context():
        from flask_migrate import downgrade, upgrade

        from task_manager.extensions import MIGRATIONS_DIR

        downgrade(directory=MIGRATIONS_DIR, revision="base")
        tables = {r[0] for r in db.session.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))}
        assert tables <= {"alembic_version"}
        upgrade(directory=MIGRATIONS_DIR)
        tables = {r[0] for r in db.session.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))}
        assert {"users", "tasks", "revoked_tokens", "login_failures", "alembic_version"} <= tables


def test_models_match_migrations(app, runner):
    """An autogenerate against the migrated database finds nothing to do."""
    with app.app_context():
        from alembic.autogenerate import compare_metadata
        from alembic.migration import MigrationContext

        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert diff == []


def test_migration_0003_keeps_users_and_goes_back_down(app):
    from flask_migrate import downgrade, upgrade

    from task_manager.extensions import MIGRATIONS_DIR

    def columns(table):
        return {r[1] for r in db.session.execute(text(f"PRAGMA table_info({table})"))}

    with app.app_context():
        downgrade(directory=MIGRATIONS_DIR, revision="0002")
        assert "token_version" not in columns("users")
        tables = {r[0] for r in db.session.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))}
        assert "token_families" not in tables
        db.session.execute(text("INSERT INTO users (username, password_hash, created_at) "
                                "VALUES ('old', 'x', '2024-01-01 00:00:00')"))
        db.session.commit()
        upgrade(directory=MIGRATIONS_DIR)
        assert db.session.execute(text("SELECT token_version FROM users WHERE username = 'old'")).scalar() == 0
        assert {"id", "user_id", "current_jti", "expires_at", "revoked_at"} <= columns("token_families")
        fks = db.session.execute(text("PRAGMA foreign_key_list(token_families)")).all()
        assert [(fk[2], fk[6]) for fk in fks] == [("users", "CASCADE")]
