"""The API's hottest reads (the token's state, a list's page) run on the database driver's
cursor, their SQL compiled once per engine by SQLAlchemy.

SQLAlchemy's execution of a statement it has cached (its cache key, an execution context,
the result's set-up, the rows' wrapping) cost a list more than the driver's own work for
both of its statements. Here a statement is compiled once for the engine's dialect, and each
execution is the driver's: the values bound as the compiled statement orders them, each
column read by the type's own result processor (SQLite's dates and times come back as text),
the rows plain tuples. What SQLAlchemy adds on failure is kept by handing any driver error to
it: the statement runs again through the connection, which raises (and discards a connection
the database closed) as every other statement does, or answers if the fault has passed. Only
reads go this way: running one twice changes nothing.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect
from sqlalchemy.sql import Select


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    compiled: Any
    # The bound values' order for a positional driver (SQLite's qmark), None for a named one.
    order: tuple[str, ...] | None
    binds: tuple[tuple[str, Any], ...]
    results: tuple[tuple[int, Any], ...]


_PLANS: dict[tuple[int, int], tuple[Select, Dialect, _Plan]] = {}


def _plan(statement: Select, dialect: Dialect) -> _Plan:
    key = (id(statement), id(dialect))
    kept = _PLANS.get(key)
    if kept is not None and kept[0] is statement and kept[1] is dialect:
        return kept[2]
    compiled = statement.compile(dialect=dialect)
    if any(bind.expanding for bind in compiled.binds.values()):
        raise ValueError("an expanding IN needs SQLAlchemy's execution: bind each value on its own")
    binds = []
    for name, bind in compiled.binds.items():
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            binds.append((compiled.escaped_bind_names.get(name, name), processor))
    results = []
    for index, column in enumerate(statement.selected_columns):
        processor = column.type.dialect_impl(dialect).result_processor(dialect, None)
        if processor is not None:
            results.append((index, processor))
    plan = _Plan(compiled.string, compiled, tuple(compiled.positiontup) if dialect.positional else None,
                 tuple(binds), tuple(results))
    # Keyed by identity, the statement kept alive beside its plan: the API's statements are
    # built once (module constants, functools.cache), so this holds a few dozen at most.
    _PLANS[key] = (statement, dialect, plan)
    return plan


def read(connection: Connection, statement: Select, values: dict[str, Any]) -> list[tuple]:
    """statement's rows for values, as tuples of its selected columns, on connection's driver
    connection."""
    dialect = connection.dialect
    plan = _plan(statement, dialect)
    params = plan.compiled.construct_params(values)
    for name, processor in plan.binds:
        params[name] = processor(params[name])
    arguments = params if plan.order is None else tuple(params[name] for name in plan.order)
    driver = connection.connection  # the pool's proxy of the driver's connection
    try:
        cursor = driver.cursor()
        try:
            cursor.execute(plan.sql, arguments)
            rows = cursor.fetchall()
        finally:
            cursor.close()
    except dialect.loaded_dbapi.Error:
        # A failed statement may leave the driver's transaction aborted (PostgreSQL): it is
        # ended first, so that SQLAlchemy's run meets the fault itself, not its aftermath.
        with contextlib.suppress(dialect.loaded_dbapi.Error):
            driver.rollback()
        return [tuple(row) for row in connection.execute(statement, values)]
    if plan.results:
        processed = []
        for row in rows:
            row = list(row)  # noqa: PLW2901 - the driver's tuple, read into its columns' types
            for index, processor in plan.results:
                row[index] = processor(row[index])
            processed.append(tuple(row))
        return processed
    return rows
