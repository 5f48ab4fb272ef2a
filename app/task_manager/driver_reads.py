"""The API's hottest reads (the token's state, a list's page) run on the database driver's
cursor, their SQL compiled once per engine by SQLAlchemy.

SQLAlchemy's execution of a statement it has cached (its cache key, an execution context,
the result's set-up, the rows' wrapping) cost a list more than the driver's own work for
both of its statements. Here a statement is compiled once for the engine's dialect, and each
execution is the driver's: the values bound as the compiled statement orders them, each
column read by the type's own result processor (SQLite's dates and times come back as text),
the rows plain tuples. What SQLAlchemy does around a statement is kept where it matters:
- the connection's transaction is begun as SQLAlchemy begins it, so that it knows the driver
  holds one (psycopg opens one at the first statement): a write after the read commits it,
  and the end of the request rolls it back, through SQLAlchemy, whose failure on a connection
  the database closed the end-of-request cleanup turns into a warning (extensions.py);
- a driver's error is raised as SQLAlchemy raises it (OperationalError and the rest, which
  errors.py answers), and a connection the database closed is discarded, as SQLAlchemy does.
Only a statement that needs nothing more is taken: SELECTs of plain columns (integers, text,
dates, times), every value bound on its own under a plain name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Date, DateTime, Dialect, Integer, String
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Select

# The types whose reading needs no more than the value (a Numeric's needs the driver's type code).
_PLAIN_TYPES = (Integer, String, Date, DateTime)


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
    refused = [name for name, bind in compiled.binds.items() if bind.expanding or bind.literal_execute]
    if refused:
        raise ValueError(f"{refused} are rendered at execution (an IN of a list): bind each value on its own")
    if compiled.escaped_bind_names:
        raise ValueError(f"{list(compiled.escaped_bind_names)} need escaping: name the bound values plainly")
    binds = []
    for name, bind in compiled.binds.items():
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            binds.append((name, processor))
    results = []
    for index, column in enumerate(statement.selected_columns):
        if not isinstance(column.type, _PLAIN_TYPES):
            raise ValueError(f"column {index} is {column.type!r}: SQLAlchemy's execution reads that type")
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
    if not connection.in_transaction():
        connection.begin()  # as SQLAlchemy's autobegin does before its own statement
    driver = connection.connection  # the pool's proxy of the driver's connection
    cursor = driver.cursor()
    try:
        cursor.execute(plan.sql, arguments)
        rows = cursor.fetchall()
    except dialect.loaded_dbapi.Error as error:
        closed = dialect.is_disconnect(error, driver.dbapi_connection, cursor)
        if closed:
            connection.invalidate(error)
        raise DBAPIError.instance(plan.sql, arguments, error, dialect.loaded_dbapi.Error, dialect=dialect,
                                  connection_invalidated=closed) from error
    finally:
        cursor.close()
    if plan.results:
        processed = []
        for row in rows:
            row = list(row)  # noqa: PLW2901 - the driver's tuple, read into its columns' types
            for index, processor in plan.results:
                row[index] = processor(row[index])
            processed.append(tuple(row))
        return processed
    return rows
