"""The database: pragmas on every connection, and the manual's own SQL against the schema.

On both engines: the constraints hold, and the migrations go up, down and up again to a
schema the models describe. SQLite-only: the pragmas and the manual's SQL, which
test_postgresql.py has in PostgreSQL's words.
"""

import sqlite3
from datetime import timedelta

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from task_manager.extensions import MIGRATIONS_DIR, db
from task_manager.models import Task, User, utcnow

TABLES = {"users", "tasks", "revoked_tokens", "login_failures", "token_families", "task_counts"}


def _tables() -> set[str]:
    return set(inspect(db.engine).get_table_names())


@pytest.mark.sqlite_only
def test_every_connection_gets_the_pragmas(app):
    with app.app_context(), db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


def _db_path(app):
    return app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")


@pytest.mark.sqlite_only
def test_manuals_explain_query_plan_uses_an_index(app):
    with sqlite3.connect(_db_path(app)) as conn:
        plan = " ".join(row[-1] for row in conn.execute("EXPLAIN QUERY PLAN SELECT * FROM tasks WHERE user_id = 1"))
    assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, plan


# The manual's 11.2 purge, as an operator would type it on each engine (one test, both engines).
PURGE_SQL = {
    "sqlite": "DELETE FROM tasks WHERE status = 'completed' AND completed_at < datetime('now', '-90 days');",
    # Timestamps are naive UTC: compare with the UTC time, not the session's time zone.
    "postgresql": "DELETE FROM tasks WHERE status = 'completed' "
                  "AND completed_at < (now() AT TIME ZONE 'UTC') - interval '90 days'",
}


def test_manuals_purge_sql_deletes_exactly_old_completed_tasks(app):
    now = utcnow()
    with app.app_context():
        user = User(username="bob", password_hash="x")
        db.session.add(user)
        db.session.flush()
        for title, status, days in [("old done", "completed", 91), ("old done 2", "completed", 365),
                                    ("recent done", "completed", 89), ("pending", "pending", None),
                                    ("in progress", "in_progress", None)]:
            db.session.add(Task(user_id=user.id, title=title, status=status,
                                completed_at=now - timedelta(days=days) if days else None))
        db.session.commit()
        engine = db.engine.dialect.name
        if engine == "postgresql":
            db.session.execute(text(PURGE_SQL[engine]))
            db.session.commit()
            left = sorted(db.session.execute(text("SELECT title FROM tasks")).scalars())
    if engine == "sqlite":
        # On the file itself, with Python's sqlite3, as the manual does it.
        with sqlite3.connect(_db_path(app)) as conn:
            conn.execute(PURGE_SQL[engine])
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


def _diff() -> list:
    """What an autogenerate would change: nothing, when the schema is what the models say."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with db.engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), db.metadata)


def test_migrations_run_from_empty_and_back(app):
    """Head, down to base, up to head again: the same schema, the models' (on PostgreSQL
    the migrations run as the schema owner, the checks read as the API's role)."""
    with app.app_context():
        assert _diff() == []
        downgrade(directory=MIGRATIONS_DIR, revision="base")
        db.engine.dispose()  # the reflection cache and pooled connections are of the old schema
        assert _tables() <= {"alembic_version"}
        upgrade(directory=MIGRATIONS_DIR)
        db.engine.dispose()
        assert TABLES | {"alembic_version"} <= _tables()
        assert db.session.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0006"
        assert _diff() == []
        db.session.remove()
        downgrade(directory=MIGRATIONS_DIR, revision="base")
        upgrade(directory=MIGRATIONS_DIR)
        db.engine.dispose()
        assert _diff() == []


def test_models_match_migrations(app):
    """An autogenerate against the migrated database finds nothing to do."""
    with app.app_context():
        assert _diff() == []


def test_migration_0003_keeps_users_and_goes_back_down(app):
    def columns(table):
        return {column["name"] for column in inspect(db.engine).get_columns(table)}

    with app.app_context():
        downgrade(directory=MIGRATIONS_DIR, revision="0002")
        assert "token_version" not in columns("users")
        assert "token_families" not in _tables()
        db.session.execute(text("INSERT INTO users (username, password_hash, created_at) "
                                "VALUES ('old', 'x', '2024-01-01 00:00:00')"))
        db.session.commit()
        db.session.remove()
        upgrade(directory=MIGRATIONS_DIR)
        db.engine.dispose()
        assert db.session.execute(text("SELECT token_version FROM users WHERE username = 'old'")).scalar() == 0
        assert {"id", "user_id", "current_jti", "expires_at", "revoked_at"} <= columns("token_families")
        fks = inspect(db.engine).get_foreign_keys("token_families")
        assert [(fk["referred_table"], fk["options"].get("ondelete")) for fk in fks] == [("users", "CASCADE")]
        assert fks[0]["name"] == "fk_token_families_user_id_users"
