"""The task counts the database keeps (task_counts.py): equal to counting the tasks after
every kind of write, by the API and by the manual's own SQL, on both engines; made again
where a migration lost the triggers; counted from the tasks already there by migration 0004."""

from flask_migrate import downgrade, upgrade
from sqlalchemy import text

from task_manager import task_counts
from task_manager.extensions import MIGRATIONS_DIR, db, migration_engine

COUNTED = "SELECT user_id, status, count(*) FROM tasks GROUP BY user_id, status ORDER BY user_id, status"
KEPT = "SELECT user_id, status, tasks FROM task_counts ORDER BY user_id, status"


def _kept_and_counted(app) -> tuple[list, list]:
    with app.app_context():
        kept = [tuple(row) for row in db.session.execute(text(KEPT))]
        counted = [tuple(row) for row in db.session.execute(text(COUNTED))]
        db.session.remove()
    return kept, counted


def test_counts_follow_every_write(app, api, api_factory):
    bob = api_factory("bob")
    ids = [api.task(title=f"t{i}", status=("pending", "in_progress", "completed")[i % 3])["id"] for i in range(9)]
    bob.task(title="bob's", status="completed")
    kept, counted = _kept_and_counted(app)
    assert kept == counted and len(kept) == 4, kept

    api.patch(f"/api/tasks/{ids[0]}", json={"status": "completed"})
    api.patch(f"/api/tasks/{ids[2]}", json={"status": "pending"})
    api.put(f"/api/tasks/{ids[1]}", json={"title": "replaced"})  # PUT without a status: back to pending
    api.patch(f"/api/tasks/{ids[3]}", json={"title": "renamed"})  # no status change
    api.delete(f"/api/tasks/{ids[4]}")
    assert api.delete("/api/tasks?status=completed").status_code == 200
    kept, counted = _kept_and_counted(app)
    assert kept == counted, (kept, counted)
    assert all(n > 0 for _user, _status, n in kept)  # a status emptied leaves no row

    body = api.get("/api/tasks").get_json()
    assert body["counts"] == {"pending": 4, "in_progress": 1, "completed": 0}
    assert body["total"] == 5
    assert api.get("/api/tasks?status=active").get_json()["total"] == 5
    assert api.get("/api/tasks?status=completed").get_json()["total"] == 0
    assert bob.get("/api/tasks").get_json()["counts"]["completed"] == 1


def test_counts_follow_the_operators_sql(app, api):
    for i in range(4):
        api.task(title=f"t{i}", status="completed")
    with app.app_context():
        db.session.execute(text("UPDATE tasks SET status = 'pending', completed_at = NULL WHERE title = 't0'"))
        db.session.execute(text("DELETE FROM tasks WHERE title IN ('t1', 't2')"))
        db.session.commit()
        db.session.remove()
    kept, counted = _kept_and_counted(app)
    assert kept == counted, (kept, counted)
    assert api.get("/api/tasks").get_json()["counts"] == {"pending": 1, "in_progress": 0, "completed": 1}


def test_a_users_counts_go_with_the_user(app, api):
    api.task(title="t")
    with app.app_context():
        db.session.execute(text("DELETE FROM users"))
        db.session.commit()
        assert db.session.execute(text("SELECT count(*) FROM task_counts")).scalar() == 0


def test_migration_0004_counts_the_tasks_already_there_and_goes_back_down(app):
    with app.app_context():
        downgrade(directory=MIGRATIONS_DIR, revision="0003")
        db.engine.dispose()
        db.session.execute(
            text("INSERT INTO users (username, password_hash, created_at) VALUES ('old', 'x', '2024-01-01')")
        )
        db.session.execute(text(
            "INSERT INTO tasks (user_id, title, status, priority, created_at, updated_at, completed_at) "
            "SELECT id, 'a', 'pending', 'medium', created_at, created_at, NULL FROM users UNION ALL "
            "SELECT id, 'b', 'completed', 'medium', created_at, created_at, created_at FROM users UNION ALL "
            "SELECT id, 'c', 'completed', 'medium', created_at, created_at, created_at FROM users"
        ))
        db.session.commit()
        db.session.remove()
        upgrade(directory=MIGRATIONS_DIR)
        db.engine.dispose()
    kept, counted = _kept_and_counted(app)
    assert kept == counted and [n for _u, _s, n in kept] == [2, 1], kept
    with app.app_context():
        downgrade(directory=MIGRATIONS_DIR, revision="0003")
        db.engine.dispose()
        with db.engine.begin() as conn:
            assert not conn.dialect.has_table(conn, "task_counts")
            # No trigger of the counts is left on tasks: the old release writes as before.
            conn.execute(text("UPDATE tasks SET status = 'pending', completed_at = NULL"))
            assert task_counts.missing_triggers(conn) == list(
                task_counts.POSTGRESQL_TRIGGERS if conn.dialect.name == "postgresql" else task_counts.SQLITE
            )
        upgrade(directory=MIGRATIONS_DIR)
        db.engine.dispose()
    kept, counted = _kept_and_counted(app)
    assert kept == counted == [(kept[0][0], "pending", 3)]


def test_a_migration_that_lost_the_triggers_gets_them_back_with_true_counts(app, api):
    """What SQLite's batch mode does to a rebuilt table, done by hand: the triggers gone
    and the counts wrong. The next migration run (here at head: nothing to migrate) puts
    both right."""
    api.task(title="t")
    # As the schema's owner: on PostgreSQL the API's role may not drop a trigger.
    with app.app_context(), migration_engine() as engine, engine.begin() as conn:
        task_counts.drop(conn)
        conn.execute(text("UPDATE task_counts SET tasks = 7"))
    with app.app_context():
        upgrade(directory=MIGRATIONS_DIR)
        db.engine.dispose()
        with db.engine.connect() as conn:
            assert task_counts.missing_triggers(conn) == []
    api.task(title="u", status="completed")
    kept, counted = _kept_and_counted(app)
    assert kept == counted and [n for _u, _s, n in kept] == [1, 1], kept
