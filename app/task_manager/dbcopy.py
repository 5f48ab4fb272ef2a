"""Copy the app's tables from one database to another (SQLite to PostgreSQL), and compare them.

Both sides are read through the models' tables, so a value comes back as the same Python
object whatever the engine stored (SQLite keeps datetimes as text, PostgreSQL as
timestamps). Each table's checksum is the sha256 of its rows in primary-key order, every
value written in one canonical text: equal checksums mean equal content.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Connection, Engine, String, create_engine, func, insert, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from .config import ENGINES, masked, normalise_url

BATCH_ROWS = 1000


class CopyError(RuntimeError):
    """The copy or the comparison cannot start or went wrong; the message says why."""


@contextmanager
def engine_for(url: str) -> Iterator[Engine]:
    """An engine for another database (disposed after), or a CopyError that says why not."""
    url = normalise_url(url)
    try:
        backend = make_url(url).get_backend_name()
    except SQLAlchemyError:
        backend = None
    if backend not in ENGINES:
        raise CopyError(f"not a sqlite:/// or postgresql:// database URL: {masked(url)}")
    engine = create_engine(url, poolclass=NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def connected(url: str) -> Iterator[Connection]:
    """A connection to the other database (closed after), or a CopyError that says why not."""
    with engine_for(url) as engine:
        try:
            conn = engine.connect()
        except SQLAlchemyError as exc:
            reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
            raise CopyError(f"cannot connect to {masked(url)}: {reason}") from None
        with conn:
            yield conn


def canonical(value):
    """One text for one value on every engine: booleans, datetimes, dates, NULL (None)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float | Decimal):
        return str(value)
    raise TypeError(f"no canonical text for {type(value).__name__}")


def _ordered(conn: Connection, table):
    # Text keys in byte order on both engines: SQLite's BINARY collation, PostgreSQL's "C"
    # (the database's own collation may sort 'B' and 'a' the other way round).
    keys = [
        column.collate("C") if conn.dialect.name == "postgresql" and isinstance(column.type, String) else column
        for column in table.primary_key.columns
    ]
    return select(table).order_by(*keys)


def table_digest(conn: Connection, table) -> tuple[int, str]:
    """(rows, sha256 of the rows in primary-key order)."""
    digest = hashlib.sha256()
    rows = 0
    result = conn.execution_options(stream_results=True).execute(_ordered(conn, table))
    for chunk in result.partitions(BATCH_ROWS):
        for row in chunk:
            line = json.dumps([canonical(value) for value in row], ensure_ascii=False, separators=(",", ":"))
            digest.update(line.encode("utf-8") + b"\n")
            rows += 1
    return rows, digest.hexdigest()


def revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def check_revisions(source: Connection, target: Connection, heads: list[str]) -> str:
    """The schema revision both sides are at; refuse anything else."""
    at = revision(source)
    if at not in heads:
        raise CopyError(
            f"the source database is at revision {at}, not this release's head {', '.join(heads)}: "
            "migrate it first (task-manager migrate)"
        )
    theirs = revision(target)
    if theirs != at:
        raise CopyError(
            f"the target database is at revision {theirs}, the source at {at}: migrate the target to {at} first "
            "(task-manager migrate, with DATABASE_URL or MIGRATION_DATABASE_URL naming the target)"
        )
    return at


def compare(source: Connection, target: Connection, tables) -> dict:
    """{"tables": {name: figures}, "equal": bool}: row counts and checksums of both sides."""
    report = {}
    for table in tables:
        rows_source, checksum_source = table_digest(source, table)
        rows_target, checksum_target = table_digest(target, table)
        report[table.name] = {
            "rows_source": rows_source, "rows_target": rows_target,
            "checksum_source": checksum_source, "checksum_target": checksum_target,
            "equal": rows_source == rows_target and checksum_source == checksum_target,
        }
    return {"tables": report, "equal": all(t["equal"] for t in report.values())}


def _reset_sequences(target: Connection, tables) -> None:
    """Explicit ids do not move PostgreSQL's sequences: set each to the largest id copied."""
    if target.dialect.name != "postgresql":
        return
    for table in tables:
        keys = list(table.primary_key.columns)
        if len(keys) != 1 or table.autoincrement_column is None:
            continue
        column = keys[0].name
        # setval(seq, 1, false) on an empty table: the next id is 1 again.
        target.execute(
            text(f'SELECT setval(pg_get_serial_sequence(:table, :column), COALESCE(MAX("{column}"), 1), '  # noqa: S608
                 f'MAX("{column}") IS NOT NULL) FROM "{table.name}"'),
            {"table": table.name, "column": column},
        )


def copy(source_engine: Engine, target_url: str, tables, heads: list[str]) -> dict:
    """Copy every table into the empty target, in one transaction, then compare both sides.
    A derived table (task_counts) is not copied: the target's triggers make it, and the
    comparison proves it equal.

    The transaction is committed only when every table compares equal; the report says
    whether it was ("copied").
    """
    with connected(target_url) as target, source_engine.connect() as source, target.begin() as transaction:
        check_revisions(source, target, heads)
        filled = [t.name for t in tables if target.scalar(select(func.count()).select_from(t))]
        if filled:
            raise CopyError(f"the target database is not empty ({', '.join(filled)} hold rows): nothing is overwritten")
        for table in tables:  # sorted_tables: a row's parent is always copied before it
            if table.info.get("derived"):
                continue  # made by the target's triggers as the rows it follows arrive; compared below
            result = source.execution_options(stream_results=True).execute(_ordered(source, table))
            for chunk in result.partitions(BATCH_ROWS):
                target.execute(insert(table), [dict(row._mapping) for row in chunk])
        _reset_sequences(target, tables)
        report = compare(source, target, tables)
        if not report["equal"]:
            transaction.rollback()  # nothing half-copied stays behind
    return {**report, "copied": report["equal"]}


def compare_with(source_engine: Engine, other_url: str, tables, heads: list[str]) -> dict:
    with connected(other_url) as other, source_engine.connect() as source:
        check_revisions(source, other, heads)
        return compare(source, other, tables)
