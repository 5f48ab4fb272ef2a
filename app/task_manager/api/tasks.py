"""/api/tasks: the caller's own tasks. Another user's task is 404, never 403. What comes in
and what goes out is declared in schemas.py."""

from __future__ import annotations

import functools
import math
import time

from flask import Blueprint, current_app, request
from flask_jwt_extended import current_user
from sqlalchemy import BigInteger, Integer, String, bindparam, case, delete, func, insert, or_, select, text, update

from .. import driver_reads, metrics, schemas, task_bytes, validation
from ..errors import ApiError
from ..extensions import db
from ..models import TASK_STATUSES, Task, TaskBytes, completed_at_after
from ..verified_tokens import access_token_required
from .operations import (
    AUTH_ERRORS,
    NOT_YOURS,
    STORAGE_QUOTA,
    TASK_BODY_ERRORS,
    TOO_MANY_WRITES,
    documented,
    error,
    reply,
)

bp = Blueprint("tasks", __name__, url_prefix="/api/tasks")

# The largest id a task can have: SQLite's INTEGER is 64 bits, PostgreSQL's (serial) 32.
# A larger id in a URL is no task, not a database error.
MAX_TASK_ID = {"sqlite": 2**63 - 1, "postgresql": 2**31 - 1}
# What a list, a task's read and a task's write run is plain SQL on the tables (SQLAlchemy
# Core), whose rows are written as they come (schemas.task_page_json, schemas.task_json):
# loading ORM objects, flushing them through the unit of work and reading them again through
# the reply's model was most of a request's cost. The table's constraints hold Task's rules.
TASKS = Task.__table__.c
PRIORITY_RANK = case({"low": 0, "medium": 1, "high": 2}, value=TASKS.priority)
_TASK_COLUMNS = tuple(TASKS[name] for name in schemas.TASK_FIELDS)
_STATUS = schemas.TASK_FIELDS.index("status")
# One task of the caller's. Its values are bound under names of their own: a column's own
# name is taken by the SET clause of an update.
_OWN = (TASKS.id == bindparam("own_id", type_=Integer)) & (TASKS.user_id == bindparam("own_user", type_=Integer))
_SELECT_OWN = select(*_TASK_COLUMNS).where(_OWN)
_INSERT = insert(Task.__table__).returning(*_TASK_COLUMNS)
_UPDATE_OWN = update(Task.__table__).where(_OWN).returning(*_TASK_COLUMNS)
_DELETE_OWN = delete(Task.__table__).where(_OWN)


def _not_found() -> ApiError:
    return ApiError(404, "task_not_found", "タスクが見つかりません")


def _own(task_id: int) -> dict:
    """The bound values of _OWN: a larger id than the engine's column holds is no task."""
    if task_id > MAX_TASK_ID[db.engine.dialect.name]:
        raise _not_found()
    return {"own_id": task_id, "own_user": current_user.id}


def _own_row(task_id: int):
    """The caller's task as a row of TASK_FIELDS' columns; 404 for another user's or none."""
    rows = driver_reads.read(_rows(), _SELECT_OWN, _own(task_id))
    if not rows:
        raise _not_found()
    return rows[0]


def _task_reply(row, status: int = 200):
    return current_app.response_class(schemas.task_json(row), status=status, mimetype="application/json")


def _statuses(status: str | None) -> tuple[str, ...]:
    """The statuses a list's `status` parameter selects: the filter and the total both read it."""
    if status is None:
        return TASK_STATUSES
    if status == "active":
        return tuple(s for s in TASK_STATUSES if s != "completed")
    return (status,)


def _status_filter(query, status: str | None):
    if status is None:
        return query
    # A bound value each, not one expanding IN: the statement's SQL is then the same at every
    # run, which the driver's way (driver_reads) needs.
    return query.where(TASKS.status.in_(
        [bindparam(f"status_{n}", value, type_=String) for n, value in enumerate(_statuses(status))]))


def _counts() -> dict[str, int]:
    """The caller's tasks in each status, read with the token's state (tokens.py) from the
    rows the database keeps (task_counts.py): a copy, which the caller may change."""
    return dict(current_user.task_counts)


def _rows():
    """The request's own connection (Database.request_connection), for the plain statements:
    executed there, they skip the ORM's session and execution layer, which cost more than
    the statement. A write on it is committed at once."""
    return db.request_connection()


def _title_key(dialect: str):
    key = func.lower(TASKS.title)
    # PostgreSQL sorts text by the database's locale, SQLite by code point: "C" is code point
    # order there too, so one list comes out in one order whatever locale the database has.
    return key.collate("C") if dialect == "postgresql" else key


def _order_by(sort: str, dialect: str):
    descending = sort.startswith("-")
    key = sort.lstrip("-")
    column = {
        "created_at": TASKS.created_at,
        "due_date": TASKS.due_date,
        "priority": PRIORITY_RANK,
        "title": _title_key(dialect),
    }[key]
    ordered = column.desc() if descending else column.asc()
    tie_break = TASKS.id.desc() if descending else TASKS.id.asc()
    if key == "due_date":  # tasks with no due date go last either way
        return [TASKS.due_date.is_(None), ordered, tie_break]
    return [ordered, tie_break]


@functools.cache
def _page_query(dialect: str, status: str | None, sort: str | None, *, searching: bool):
    """The statement of one kind of list (a filter, a sort, a search or not) on one engine: a
    page of it, or, without a sort, the count of its rows. There are a few dozen kinds at most,
    each built once and executed with new values: building a statement costs more than
    SQLAlchemy's cached execution of one already built."""
    query = select(*_TASK_COLUMNS).where(
        TASKS.user_id == bindparam("user_id", type_=Integer))
    query = _status_filter(query, status)
    if searching:
        pattern = bindparam("pattern", type_=String)
        query = query.where(or_(TASKS.title.ilike(pattern, escape="\\"), TASKS.description.ilike(pattern, escape="\\")))
    if sort is None:
        return select(func.count()).select_from(query.subquery())
    # A page far past the end is an empty page: its offset (up to 9 digits of page times 100)
    # passes PostgreSQL's 32-bit integer, so it is bound as a 64-bit one.
    return query.order_by(*_order_by(sort, dialect)).limit(bindparam("limit", type_=Integer)).offset(
        bindparam("offset", type_=BigInteger))


@bp.get("")
@documented("get", "The caller's tasks, filtered, searched, sorted and paged", signed_in=True, query=schemas.TaskQuery,
            responses={"200": reply(schemas.TaskPage, "A page of tasks"),
                       "400": error("Invalid filter, sort or paging parameter"), **AUTH_ERRORS})
@access_token_required
def list_tasks():
    args = validation.query(schemas.TaskQuery)
    q, page, sort = args.q, args.page, args.sort
    if args.per_page is None:
        per_page = current_app.config["TASKS_PER_PAGE"]
    else:
        per_page = min(args.per_page, current_app.config["TASKS_MAX_PER_PAGE"])

    counts = _counts()
    dialect = db.engine.dialect.name
    values = {"user_id": current_user.id, "limit": per_page, "offset": (page - 1) * per_page}
    if q:
        values["pattern"] = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        total = driver_reads.read(_rows(), _page_query(dialect, args.status, None, searching=True), values)[0][0]
    else:  # the counts already hold it
        total = sum(counts[status] for status in _statuses(args.status))
    tasks = driver_reads.read(_rows(), _page_query(dialect, args.status, sort, searching=bool(q)), values)
    body = schemas.task_page_json(tasks, total=total, page=page, per_page=per_page, counts=counts)
    return current_app.response_class(body, mimetype="application/json")


def _check_quota() -> None:
    limit = current_app.config["TASKS_MAX_PER_USER"]
    held = sum(_counts().values())
    if held >= limit:
        raise ApiError(
            403, "task_limit_reached",
            f"タスクは1ユーザーあたり{limit}件までです。不要なタスクを削除してから追加してください",
        )


# The most text one task can hold, in bytes: every character of a title and a description
# may take four in UTF-8. While the account's tasks could not reach the quota even at that
# size, the quota needs no reading.
MAX_TASK_BYTES = task_bytes.TASK_ROW_BYTES + (schemas.TITLE_MAX + schemas.DESCRIPTION_MAX) * 4
_HELD_BYTES = select(TaskBytes.bytes).where(TaskBytes.user_id == bindparam("user_id", type_=Integer))


def _size(title: str, description: str | None) -> int:
    """What a task counts against the quota, as the database's triggers count it (task_bytes.py)."""
    return task_bytes.TASK_ROW_BYTES + len(title.encode()) + (len(description.encode()) if description else 0)


# One statement a write: the caller's count in this minute, started again in a new one.
_COUNT_WRITE = text(
    "INSERT INTO write_counts (user_id, minute, writes) VALUES (:user_id, :minute, 1) "
    "ON CONFLICT (user_id) DO UPDATE SET "
    "writes = CASE WHEN write_counts.minute = excluded.minute THEN write_counts.writes + 1 ELSE 1 END, "
    "minute = excluded.minute RETURNING writes"
)


def _count_write() -> None:
    """Refuse a task write past TASK_WRITES_PER_MINUTE for the caller (429, Retry-After): one
    account scripted to write cannot churn the database; a person never comes near it."""
    now = time.time()
    writes = _rows().execute(_COUNT_WRITE, {"user_id": current_user.id, "minute": int(now // 60)}).scalar_one()
    limit = current_app.config["TASK_WRITES_PER_MINUTE"]
    if writes > limit:
        wait = max(1, math.ceil(60 - now % 60))
        raise ApiError(429, "too_many_writes",
                       f"書き込みが多すぎます (1分あたり{limit}回まで)。{wait}秒後に再試行してください",
                       headers={"Retry-After": str(wait)})


def _check_storage(growth: int) -> None:
    """Refuse a write that would take the caller's text past the storage quota (bytes)."""
    quota = current_app.config["STORAGE_QUOTA_BYTES"]
    if growth <= 0 or (sum(_counts().values()) + 1) * MAX_TASK_BYTES <= quota:
        return
    held = driver_reads.read(_rows(), _HELD_BYTES, {"user_id": current_user.id})
    if (held[0][0] if held else 0) + growth > quota:
        raise ApiError(
            403, "storage_quota_reached",
            f"保存できる容量 ({quota // 1024} KB) を超えます。不要なタスクや長い説明を削除してから保存してください",
        )


@bp.post("")
@documented("post", "Create a task", signed_in=True, body=schemas.TaskCreate, responses={
    "201": reply(schemas.Task, "Created"),
    "403": error("The account holds the most tasks allowed (TASKS_MAX_PER_USER), or their text would pass its storage "
                 "quota (STORAGE_QUOTA_BYTES)"),
    **TOO_MANY_WRITES, **TASK_BODY_ERRORS})
@access_token_required
def create_task():
    values = validation.body(schemas.TaskCreate).model_dump()
    _count_write()
    _check_quota()
    _check_storage(_size(values["title"], values["description"]))
    values["user_id"] = current_user.id
    values["completed_at"] = completed_at_after(values["status"], None, None)
    row = _rows().execute(_INSERT, values).one()
    _rows().commit()
    metrics.TASKS_CREATED.inc()
    if row.status == "completed":
        metrics.TASKS_COMPLETED.inc()
    return _task_reply(row, 201)


@bp.delete("")
@documented("delete", "Delete all completed tasks of the caller", signed_in=True, query=schemas.ClearQuery,
            responses={"200": reply(schemas.Deleted, "Deleted"), "400": error("status=completed is required"),
                       **TOO_MANY_WRITES, **AUTH_ERRORS})
@access_token_required
def delete_completed():
    """Clear completed tasks in one request (the board's 'clear completed')."""
    validation.query(schemas.ClearQuery)
    _count_write()
    deleted = Task.query.filter(Task.user_id == current_user.id, Task.status == "completed").delete()
    db.session.commit()
    return schemas.reply(schemas.Deleted, {"deleted": deleted})


@bp.get("/<int:task_id>")
@documented("get", "One task", signed_in=True,
            responses={"200": reply(schemas.Task, "The task"), **NOT_YOURS, **AUTH_ERRORS})
@access_token_required
def get_task(task_id: int):
    return _task_reply(_own_row(task_id))


@bp.route("/<int:task_id>", methods=["PUT", "PATCH"])
@documented("put", "Replace a task (omitted fields return to their defaults)", signed_in=True, body=schemas.TaskCreate,
            responses={"200": reply(schemas.Task, "Replaced"), **NOT_YOURS, **STORAGE_QUOTA, **TOO_MANY_WRITES,
                       **TASK_BODY_ERRORS})
@documented("patch", "Change some fields of a task", signed_in=True, body=schemas.TaskPatch,
            responses={"200": reply(schemas.Task, "Updated"), **NOT_YOURS, **STORAGE_QUOTA, **TOO_MANY_WRITES,
                       **TASK_BODY_ERRORS})
@access_token_required
def update_task(task_id: int):
    row = _own_row(task_id)
    change = validation.body(schemas.TaskCreate if request.method == "PUT" else schemas.TaskPatch)
    # PUT: every field (the ones left out take their defaults); PATCH: only the given ones.
    fields = change.model_dump(exclude_unset=isinstance(change, schemas.TaskPatch))
    was = dict(zip(schemas.TASK_FIELDS, row, strict=True))
    if "status" in fields:
        fields["completed_at"] = completed_at_after(fields["status"], was["status"], was["completed_at"])
    # Only what differs is written, as the ORM did: a request that changes nothing leaves the
    # row, and its updated_at, as they were.
    changes = {name: value for name, value in fields.items() if value != was[name]}
    if changes:
        _count_write()
    if "title" in changes or "description" in changes:
        after = {**was, **changes}
        _check_storage(_size(after["title"], after["description"]) - _size(was["title"], was["description"]))
    if changes:
        row = _rows().execute(_UPDATE_OWN, {**changes, **_own(task_id)}).first()
        if row is None:  # deleted by another request since it was read
            raise _not_found()
        _rows().commit()
    if row[_STATUS] == "completed" and was["status"] != "completed":
        metrics.TASKS_COMPLETED.inc()
    return _task_reply(row)


@bp.delete("/<int:task_id>")
@documented("delete", "Delete a task", signed_in=True,
            responses={"204": {"description": "Deleted"}, **NOT_YOURS, **TOO_MANY_WRITES, **AUTH_ERRORS})
@access_token_required
def delete_task(task_id: int):
    _count_write()
    if _rows().execute(_DELETE_OWN, _own(task_id)).rowcount == 0:
        raise _not_found()
    _rows().commit()
    return "", 204
