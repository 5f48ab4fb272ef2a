"""The storage quota: the bytes of text each user's tasks hold, kept by the database
(task_bytes.py) under every kind of write, by the API and by the manual's own SQL, on both
engines; a write that would pass the quota refused with a clear 403, one that shrinks allowed."""

from sqlalchemy import text

from task_manager import task_bytes
from task_manager.extensions import db, migration_engine
from tests.conftest import Api

SUMMED = {
    "sqlite": "SELECT user_id, "
              "sum(200 + length(CAST(title AS BLOB)) + coalesce(length(CAST(description AS BLOB)), 0)) "
              "FROM tasks GROUP BY user_id ORDER BY user_id",
    "postgresql": "SELECT user_id, sum(200 + octet_length(title) + coalesce(octet_length(description), 0)) "
                  "FROM tasks GROUP BY user_id ORDER BY user_id",
}
KEPT = "SELECT user_id, bytes FROM task_bytes ORDER BY user_id"


def _kept_and_summed(app) -> tuple[list, list]:
    with app.app_context():
        kept = [tuple(row) for row in db.session.execute(text(KEPT))]
        summed = [tuple(row) for row in db.session.execute(text(SUMMED[db.engine.dialect.name]))]
        db.session.remove()
    return kept, summed


def test_bytes_follow_every_write(app, api, api_factory):
    bob = api_factory("bob")
    ids = [api.task(title=f"タスク{i}", description="説明" * i or None)["id"] for i in range(6)]
    bob.task(title="bob's")
    kept, summed = _kept_and_summed(app)
    assert kept == summed and len(kept) == 2, kept
    assert kept[0][1] == sum(200 + len(f"タスク{i}".encode()) + len(("説明" * i).encode()) for i in range(6))

    api.patch(f"/api/tasks/{ids[0]}", json={"title": "a longer title than before"})
    api.patch(f"/api/tasks/{ids[1]}", json={"description": None})
    api.patch(f"/api/tasks/{ids[2]}", json={"status": "completed"})  # no text changed
    api.put(f"/api/tasks/{ids[3]}", json={"title": "replaced"})
    api.delete(f"/api/tasks/{ids[4]}")
    assert api.delete("/api/tasks?status=completed").status_code == 200
    assert _kept_and_summed(app)[0] == _kept_and_summed(app)[1]
    with app.app_context():  # the manual's own SQL keeps it too
        db.session.execute(text("UPDATE tasks SET description = 'x' WHERE title = 'replaced'"))
        db.session.execute(text("DELETE FROM tasks WHERE title = 'bob''s'"))
        db.session.commit()
        db.session.remove()
    kept, summed = _kept_and_summed(app)
    assert kept == summed and len(kept) == 1  # bob holds nothing: no row


def test_a_write_past_the_quota_is_refused_and_one_that_shrinks_is_not(app_with):
    app = app_with(STORAGE_QUOTA_BYTES=30_000)
    client = app.test_client()
    api = Api(client)
    ids = [api.task(title=f"t{i}", description="x" * 4_000)["id"] for i in range(7)]  # 7 x 4,202 = 29,414
    refused = api.post("/api/tasks", json={"title": "one more", "description": "x" * 4_000})
    assert refused.status_code == 403
    body = refused.get_json()
    assert body["error"] == "storage_quota_reached" and "29 KB" in body["message"]
    assert api.post("/api/tasks", json={"title": "small"}).status_code == 201  # still room for this: 29,619
    grown = api.patch(f"/api/tasks/{ids[0]}", json={"description": "x" * 5_000})
    assert grown.status_code == 403 and grown.get_json()["error"] == "storage_quota_reached"
    assert api.patch(f"/api/tasks/{ids[0]}", json={"description": "short"}).status_code == 200
    assert api.patch(f"/api/tasks/{ids[1]}", json={"status": "completed"}).status_code == 200
    assert api.post("/api/tasks", json={"title": "now it fits", "description": "x" * 3_000}).status_code == 201
    kept, summed = _kept_and_summed(app)
    assert kept == summed and kept[0][1] <= 30_000


def test_the_quota_is_derived_from_the_manuals_limit_and_the_expected_users(app_with):
    assert app_with().config["STORAGE_QUOTA_BYTES"] == 100 * 1024 * 1024 // (50 * 4)
    assert app_with(STORAGE_EXPECTED_USERS=10, DATABASE_LIMIT_MB=200).config["STORAGE_QUOTA_BYTES"] == \
        200 * 1024 * 1024 // (10 * 4)
    assert app_with(STORAGE_QUOTA_BYTES=1234).config["STORAGE_QUOTA_BYTES"] == 1234


def test_a_lost_trigger_is_made_again_and_the_bytes_summed_again(app, api):
    api.task(title="kept", description="x" * 10)
    # As the schema's owner: on PostgreSQL the API's role may not drop a trigger.
    with app.app_context(), migration_engine() as engine, engine.begin() as conn:
        task_bytes.drop(conn)
        conn.exec_driver_sql("DELETE FROM task_bytes")
        assert task_bytes.missing_triggers(conn)
        assert task_bytes.ensure(conn)
        assert task_bytes.missing_triggers(conn) == []
    kept, summed = _kept_and_summed(app)
    assert kept == summed == [(kept[0][0], 214)]


def test_task_writes_are_limited_per_account_and_minute(app_with):
    app = app_with(TASK_WRITES_PER_MINUTE=3)
    client = app.test_client()
    alice, bob = Api(client, "alice"), Api(client, "bob")
    first = alice.task(title="one")
    alice.patch(f"/api/tasks/{first['id']}", json={"status": "completed"})
    assert alice.delete(f"/api/tasks/{first['id']}").status_code == 204
    refused = alice.post("/api/tasks", json={"title": "four"})
    assert refused.status_code == 429 and refused.get_json()["error"] == "too_many_writes"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "1分あたり3回まで" in refused.get_json()["message"]
    assert alice.get("/api/tasks").status_code == 200  # reads are not writes
    assert bob.task(title="bob's own")["title"] == "bob's own"  # another account is not held up
    with app.app_context():  # the next minute
        db.session.execute(text("UPDATE write_counts SET minute = minute - 1"))
        db.session.commit()
        db.session.remove()
    assert alice.post("/api/tasks", json={"title": "four"}).status_code == 201
