"""A table the database keeps from `tasks` by triggers of its own (task_counts.py,
task_bytes.py): what every writer keeps right, the API and the manual's own SQL alike.

SQLite loses a table's triggers when a migration rebuilds `tasks` (Alembic's batch mode
copies and renames, which a later release's DROP COLUMN does): `ensure()`, run after every
migration (migrations/env.py), puts them back and fills the table again when one was missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, inspect, text


@dataclass(frozen=True)
class Derived:
    table: str
    postgresql: tuple[str, ...]  # functions and triggers, in the order they are made
    postgresql_drop: tuple[str, ...]
    postgresql_triggers: tuple[str, ...]
    sqlite: dict[str, str]  # trigger name: its CREATE TRIGGER IF NOT EXISTS
    refill: dict[str, tuple[str, ...]]  # by dialect: the rows made again from the tasks as they are

    def create(self, conn: Connection) -> None:
        """The triggers, then the rows made from the tasks as they are (a migration's step)."""
        for statement in self.postgresql if conn.dialect.name == "postgresql" else self.sqlite.values():
            conn.exec_driver_sql(statement)
        for statement in self.refill[conn.dialect.name]:
            conn.exec_driver_sql(statement)

    def drop(self, conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            for statement in self.postgresql_drop:
                conn.exec_driver_sql(statement)
        else:
            for name in self.sqlite:
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")

    def missing_triggers(self, conn: Connection) -> list[str]:
        if conn.dialect.name == "postgresql":
            present = set(conn.execute(
                text("SELECT tgname FROM pg_trigger WHERE tgrelid = 'tasks'::regclass AND NOT tgisinternal")
            ).scalars())
            return [name for name in self.postgresql_triggers if name not in present]
        present = set(conn.execute(
            text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'tasks'")
        ).scalars())
        return [name for name in self.sqlite if name not in present]

    def ensure(self, conn: Connection) -> list[str]:
        """After any migration: where the table exists and a trigger is gone, every trigger is
        made again and the rows made again. Returns the triggers that were missing."""
        if not inspect(conn).has_table(self.table):
            return []  # a schema from before the table: nothing to keep
        missing = self.missing_triggers(conn)
        if missing:
            self.create(conn)
        return missing
