"""How many bytes each user's tasks hold (a row's own 200, TASK_ROW_BYTES, and its title and
description as UTF-8), kept
by the database itself: the storage quota (api/tasks.py) reads one row instead of summing
the account's tasks on every write. A row exists only while the user holds a task (a title
is never empty), so the rows are a function of `tasks` alone, as task_counts' are (dbcopy
compares them). PostgreSQL fires a table's triggers in name order: task_bytes_follow, then
task_counts_follow, in every transaction, so the rows they lock are always taken in one order.
"""

from __future__ import annotations

from .derived import Derived

TABLE = "task_bytes"

# A task's size: 200 for its row (ids, status, dates, an index entry or two: what a task of
# one character still takes), then its text, octet_length on PostgreSQL, the length of the
# text as a BLOB on SQLite (length() of text counts characters there). Written out in each
# statement: constant SQL.
TASK_ROW_BYTES = 200
POSTGRESQL = (
    """
    CREATE OR REPLACE FUNCTION task_bytes_follow() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'INSERT' THEN
            -- The row that would reach zero goes, never holding it (its CHECK is bytes > 0).
            DELETE FROM task_bytes WHERE user_id = OLD.user_id
            AND bytes = 200 + octet_length(OLD.title) + coalesce(octet_length(OLD.description), 0);
            UPDATE task_bytes
            SET bytes = bytes - (200 + octet_length(OLD.title) + coalesce(octet_length(OLD.description), 0))
            WHERE user_id = OLD.user_id;
        END IF;
        IF TG_OP <> 'DELETE' THEN
            INSERT INTO task_bytes (user_id, bytes)
            VALUES (NEW.user_id, 200 + octet_length(NEW.title) + coalesce(octet_length(NEW.description), 0))
            ON CONFLICT (user_id) DO UPDATE SET bytes = task_bytes.bytes + EXCLUDED.bytes;
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER task_bytes_follow AFTER INSERT OR DELETE OR UPDATE OF user_id, title, description ON tasks
    FOR EACH ROW EXECUTE FUNCTION task_bytes_follow()
    """,
)
POSTGRESQL_TRIGGERS = ("task_bytes_follow",)
POSTGRESQL_DROP = (
    "DROP TRIGGER IF EXISTS task_bytes_follow ON tasks",
    "DROP FUNCTION IF EXISTS task_bytes_follow()",
)

_SQLITE_ADD = """
    INSERT INTO task_bytes (user_id, bytes)
    VALUES (NEW.user_id, 200 + length(CAST(NEW.title AS BLOB)) + coalesce(length(CAST(NEW.description AS BLOB)), 0))
    ON CONFLICT (user_id) DO UPDATE SET bytes = bytes + excluded.bytes;
"""
# The row that would reach zero goes first, never holding it (its CHECK is bytes > 0).
_SQLITE_REMOVE = """
    DELETE FROM task_bytes WHERE user_id = OLD.user_id
    AND bytes = 200 + length(CAST(OLD.title AS BLOB)) + coalesce(length(CAST(OLD.description AS BLOB)), 0);
    UPDATE task_bytes
    SET bytes = bytes - (200 + length(CAST(OLD.title AS BLOB)) + coalesce(length(CAST(OLD.description AS BLOB)), 0))
    WHERE user_id = OLD.user_id;
"""
SQLITE = {
    "task_bytes_insert": (
        f"CREATE TRIGGER IF NOT EXISTS task_bytes_insert AFTER INSERT ON tasks BEGIN {_SQLITE_ADD} END"
    ),
    "task_bytes_delete": (
        f"CREATE TRIGGER IF NOT EXISTS task_bytes_delete AFTER DELETE ON tasks BEGIN {_SQLITE_REMOVE} END"
    ),
    "task_bytes_update": (
        "CREATE TRIGGER IF NOT EXISTS task_bytes_update AFTER UPDATE OF user_id, title, description ON tasks "
        f"BEGIN {_SQLITE_REMOVE} {_SQLITE_ADD} END"
    ),
}


REFILL = {
    "postgresql": ("DELETE FROM task_bytes",
                   "INSERT INTO task_bytes (user_id, bytes) SELECT user_id, "
                   "sum(200 + octet_length(title) + coalesce(octet_length(description), 0)) "
                   "FROM tasks GROUP BY user_id"),
    "sqlite": ("DELETE FROM task_bytes",
               "INSERT INTO task_bytes (user_id, bytes) SELECT user_id, "
               "sum(200 + length(CAST(title AS BLOB)) + coalesce(length(CAST(description AS BLOB)), 0)) "
               "FROM tasks GROUP BY user_id"),
}


KEPT = Derived(TABLE, POSTGRESQL, POSTGRESQL_DROP, POSTGRESQL_TRIGGERS, SQLITE, REFILL)
create, drop, missing_triggers, ensure = KEPT.create, KEPT.drop, KEPT.missing_triggers, KEPT.ensure
