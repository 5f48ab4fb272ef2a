"""The hottest reads run on the driver's cursor (driver_reads.py): the rows SQLAlchemy's own
execution gives, in the same types, without its statements; and its errors when the driver
fails."""

from datetime import date, datetime

import pytest
from sqlalchemy import Numeric, bindparam, cast, event, select, text
from sqlalchemy.exc import OperationalError

from task_manager import driver_reads, tokens
from task_manager.api import tasks
from task_manager.extensions import db


@pytest.fixture
def statements_run(app):
    """The statements SQLAlchemy itself runs (its events never see the driver's way)."""
    seen: list[str] = []
    with app.app_context():
        engine = db.engine
    listener = lambda _conn, _cursor, statement, *_rest: seen.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    yield seen
    event.remove(engine, "before_cursor_execute", listener)


def test_the_driver_gives_the_rows_sqlalchemy_gives(app, api):
    api.task(title="b, due", due_date="2026-12-24", priority="high", description="with a line")
    api.task(title="A done", status="completed")
    api.task(title="c_100% in progress", status="in_progress", priority="low")
    for n in range(3):
        api.task(title=f"plain {n}")
    with app.app_context():
        dialect = db.engine.dialect.name
        values = {"user_id": api.user["id"], "limit": 4, "offset": 1, "pattern": "%a%"}
        cases = [(tasks._page_query(dialect, status, sort, searching=searching), values)
                 for status in (None, "active", "completed", "pending")
                 for sort in (None, "-created_at", "due_date", "priority", "title")
                 for searching in (False, True) if sort or searching]
        cases.append((tokens._TOKEN_STATE, {"jti": "none", "family": None, "user_id": api.user["id"]}))
        cases.append((tasks._SELECT_OWN, {"own_id": 1, "own_user": api.user["id"]}))
        with db.engine.connect() as connection:
            for statement, bound in cases:
                expected = [tuple(row) for row in connection.execute(statement, bound)]
                assert driver_reads.read(connection, statement, bound) == expected, statement
            every = driver_reads.read(connection, tasks._page_query(dialect, None, "due_date", searching=False),
                                      {**values, "offset": 0, "limit": 10})
    assert len(every) == 6
    first = dict(zip(tasks.schemas.TASK_FIELDS, every[0], strict=True))
    assert first["due_date"] == date(2026, 12, 24)  # read into its column's type, as SQLAlchemy reads it
    assert isinstance(first["created_at"], datetime)


def test_a_list_runs_none_of_sqlalchemy_s_statements(api, statements_run):
    api.task(title="one")
    assert statements_run  # a write still goes SQLAlchemy's way: the listener hears it
    statements_run.clear()
    response = api.get("/api/tasks?per_page=20&q=on&status=active&sort=title")
    assert response.status_code == 200
    assert [task["title"] for task in response.get_json()["tasks"]] == ["one"]
    assert statements_run == []  # the token's state, the count and the page: the driver's


@pytest.mark.parametrize("statement", [
    select(tasks.TASKS.id).where(tasks.TASKS.status.in_(["pending", "completed"])),
    select(tasks.TASKS.id).where(tasks.TASKS.status == bindparam("a status", literal_execute=True)),
    select(tasks.TASKS.id).where(tasks.TASKS.status == bindparam("a.status")),
    select(cast(tasks.TASKS.id, Numeric(10, 2))),
], ids=["expanding IN", "literal_execute", "name to escape", "Numeric"])
def test_a_statement_that_needs_sqlalchemy_s_execution_is_refused(app, statement):
    with app.app_context(), db.engine.connect() as connection, pytest.raises(ValueError):
        driver_reads.read(connection, statement, {"a status": "pending", "a.status": "pending"})


@pytest.mark.sqlite_only  # the fault is made by renaming a table: the API's role may not on PostgreSQL
def test_a_driver_error_is_raised_as_sqlalchemy_raises_it(app, api, statements_run):
    api.task(title="kept")
    with app.app_context():
        db.session.execute(text("ALTER TABLE tasks RENAME TO tasks_away"))
        db.session.commit()
        statements_run.clear()
        with db.engine.connect() as connection, pytest.raises(OperationalError, match="no such table: tasks"):
            driver_reads.read(connection, tasks._SELECT_OWN, {"own_id": 1, "own_user": api.user["id"]})
    response = api.get("/api/tasks")
    # SQLAlchemy's OperationalError, which the API answers as a database it cannot use.
    assert (response.status_code, response.get_json()["error"]) == (503, "database_unavailable")
    assert statements_run == []
    with app.app_context():
        db.session.execute(text("ALTER TABLE tasks_away RENAME TO tasks"))
        db.session.commit()
    assert [task["title"] for task in api.get("/api/tasks").get_json()["tasks"]] == ["kept"]


def test_a_write_after_a_read_on_the_driver_commits_with_it(app, api):
    """The driver's read begins the connection's transaction as SQLAlchemy would: a write
    after it, on the same connection, is committed by the connection's commit()."""
    api.task(title="read first")
    with app.app_context(), db.engine.connect() as connection:
        rows = driver_reads.read(connection, tasks._SELECT_OWN, {"own_id": 1, "own_user": api.user["id"]})
        assert rows and connection.in_transaction()
        connection.execute(tasks._UPDATE_OWN, {"title": "written after", "own_id": 1, "own_user": api.user["id"]})
        connection.commit()
    assert api.get("/api/tasks/1").get_json()["title"] == "written after"
