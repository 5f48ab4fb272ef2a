"""How many tasks each user holds in each status, kept by the database itself.

The list answers its counts (and its total, when no search narrows it) from these rows
instead of counting the account's tasks on every request: reading three rows costs the
same for 10 tasks as for 10,000. Triggers on `tasks` keep them, so every writer keeps
them right, the API and the manual's own SQL alike (the 90-day purge is a DELETE). A row
exists only while its count is above zero: the rows are a function of `tasks` alone,
which lets a copy to another engine be compared table by table (dbcopy).

The triggers are made, checked and made again as every table the database keeps from
`tasks` is (derived.py).
"""

from __future__ import annotations

from .derived import Derived

TABLE = "task_counts"

# Both rows a status change touches are locked in one order (user, then status), so two
# requests moving tasks of one user in opposite directions cannot deadlock on PostgreSQL.
POSTGRESQL = (
    """
    CREATE OR REPLACE FUNCTION task_counts_add(uid integer, st varchar, delta integer) RETURNS void
    LANGUAGE plpgsql AS $$
    BEGIN
        IF delta > 0 THEN
            INSERT INTO task_counts (user_id, status, tasks) VALUES (uid, st, delta)
            ON CONFLICT (user_id, status) DO UPDATE SET tasks = task_counts.tasks + EXCLUDED.tasks;
        ELSE
            DELETE FROM task_counts WHERE user_id = uid AND status = st AND tasks = -delta;
            UPDATE task_counts SET tasks = tasks + delta WHERE user_id = uid AND status = st;
        END IF;
    END $$
    """,
    """
    CREATE OR REPLACE FUNCTION task_counts_follow() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            PERFORM task_counts_add(NEW.user_id, NEW.status, 1);
        ELSIF TG_OP = 'DELETE' THEN
            PERFORM task_counts_add(OLD.user_id, OLD.status, -1);
        ELSIF (OLD.user_id, OLD.status) < (NEW.user_id, NEW.status) THEN
            PERFORM task_counts_add(OLD.user_id, OLD.status, -1);
            PERFORM task_counts_add(NEW.user_id, NEW.status, 1);
        ELSIF (OLD.user_id, OLD.status) > (NEW.user_id, NEW.status) THEN
            PERFORM task_counts_add(NEW.user_id, NEW.status, 1);
            PERFORM task_counts_add(OLD.user_id, OLD.status, -1);
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER task_counts_follow AFTER INSERT OR DELETE OR UPDATE OF user_id, status ON tasks
    FOR EACH ROW EXECUTE FUNCTION task_counts_follow()
    """,
)
POSTGRESQL_TRIGGERS = ("task_counts_follow",)
POSTGRESQL_DROP = (
    "DROP TRIGGER IF EXISTS task_counts_follow ON tasks",
    "DROP FUNCTION IF EXISTS task_counts_follow()",
    "DROP FUNCTION IF EXISTS task_counts_add(integer, varchar, integer)",
)

_SQLITE_ADD = """
    INSERT INTO task_counts (user_id, status, tasks) VALUES (NEW.user_id, NEW.status, 1)
    ON CONFLICT (user_id, status) DO UPDATE SET tasks = tasks + 1;
"""
# The row at one goes before the decrement, so that no row ever holds zero.
_SQLITE_REMOVE = """
    DELETE FROM task_counts WHERE user_id = OLD.user_id AND status = OLD.status AND tasks = 1;
    UPDATE task_counts SET tasks = tasks - 1 WHERE user_id = OLD.user_id AND status = OLD.status;
"""
SQLITE = {
    "task_counts_insert": (
        f"CREATE TRIGGER IF NOT EXISTS task_counts_insert AFTER INSERT ON tasks BEGIN {_SQLITE_ADD} END"
    ),
    "task_counts_delete": (
        f"CREATE TRIGGER IF NOT EXISTS task_counts_delete AFTER DELETE ON tasks BEGIN {_SQLITE_REMOVE} END"
    ),
    "task_counts_update": (
        "CREATE TRIGGER IF NOT EXISTS task_counts_update AFTER UPDATE OF user_id, status ON tasks "
        "WHEN OLD.user_id IS NOT NEW.user_id OR OLD.status IS NOT NEW.status "
        f"BEGIN {_SQLITE_REMOVE} {_SQLITE_ADD} END"
    ),
}

RECOUNT = (
    "DELETE FROM task_counts",
    "INSERT INTO task_counts (user_id, status, tasks) "
    "SELECT user_id, status, count(*) FROM tasks GROUP BY user_id, status",
)


KEPT = Derived(TABLE, POSTGRESQL, POSTGRESQL_DROP, POSTGRESQL_TRIGGERS, SQLITE,
               {"postgresql": RECOUNT, "sqlite": RECOUNT})
create, drop, missing_triggers, ensure = KEPT.create, KEPT.drop, KEPT.missing_triggers, KEPT.ensure
