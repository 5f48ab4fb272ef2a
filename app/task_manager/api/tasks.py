"""/api/tasks: the caller's own tasks. Another user's task is 404, never 403. What comes in
and what goes out is declared in schemas.py."""

from __future__ import annotations

import functools

from flask import Blueprint, current_app, request
from flask_jwt_extended import current_user, jwt_required
from sqlalchemy import BigInteger, Integer, String, bindparam, case, func, or_, select

from .. import metrics, schemas, validation
from ..errors import ApiError
from ..extensions import db
from ..models import TASK_STATUSES, Task

bp = Blueprint("tasks", __name__, url_prefix="/api/tasks")

# The largest id a task can have: SQLite's INTEGER is 64 bits, PostgreSQL's (serial) 32.
# A larger id in a URL is no task, not a database error.
MAX_TASK_ID = {"sqlite": 2**63 - 1, "postgresql": 2**31 - 1}
# What every list runs is plain SQL on the tables (SQLAlchemy Core), whose rows are written
# as they come (schemas.task_page_json): loading ORM objects that nothing changes, and
# reading them again through the reply's model, was most of a list's cost. Writes go
# through the ORM.
TASKS = Task.__table__.c
PRIORITY_RANK = case({"low": 0, "medium": 1, "high": 2}, value=TASKS.priority)


def _own_task(task_id: int) -> Task:
    if task_id > MAX_TASK_ID[db.engine.dialect.name]:
        raise ApiError(404, "task_not_found", "タスクが見つかりません")
    task = db.session.scalar(select(Task).where(Task.id == task_id, Task.user_id == current_user.id))
    if task is None:
        raise ApiError(404, "task_not_found", "タスクが見つかりません")
    return task


def _statuses(status: str | None) -> tuple[str, ...]:
    """The statuses a list's `status` parameter selects: the filter and the total both read it."""
    if status is None:
        return TASK_STATUSES
    if status == "active":
        return tuple(s for s in TASK_STATUSES if s != "completed")
    return (status,)


def _status_filter(query, status: str | None):
    return query if status is None else query.where(TASKS.status.in_(_statuses(status)))


def _counts() -> dict[str, int]:
    """The caller's tasks in each status, read with the token's state (tokens.py) from the
    rows the database keeps (task_counts.py): a copy, which the caller may change."""
    return dict(current_user.task_counts)


def _rows():
    """The request's own connection, in the session's transaction, for the plain statements
    (no ORM entity in them): executed there, they skip the ORM's execution layer, which
    costs more than the statement."""
    return db.session.connection()


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
    query = select(*(TASKS[name] for name in schemas.TASK_FIELDS)).where(
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
@jwt_required()
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
        total = _rows().scalar(_page_query(dialect, args.status, None, searching=True), values)
    else:  # the counts already hold it
        total = sum(counts[status] for status in _statuses(args.status))
    tasks = _rows().execute(_page_query(dialect, args.status, sort, searching=bool(q)), values).all()
    body = schemas.task_page_json(tasks, total=total, page=page, per_page=per_page, counts=counts)
    return current_app.response_class(body, mimetype="application/json")


def _apply(task: Task, change: schemas.TaskCreate) -> None:
    """Every field of a TaskCreate (POST, PUT: the ones left out take their defaults), only
    the given ones of a TaskPatch."""
    fields = change.model_dump(exclude_unset=isinstance(change, schemas.TaskPatch))
    status = fields.pop("status", None)
    for name, value in fields.items():
        setattr(task, name, value)
    if status is not None:
        task.set_status(status)


def _check_quota() -> None:
    limit = current_app.config["TASKS_MAX_PER_USER"]
    held = sum(_counts().values())
    if held >= limit:
        raise ApiError(
            403, "task_limit_reached",
            f"タスクは1ユーザーあたり{limit}件までです。不要なタスクを削除してから追加してください",
        )


def _reply_then_commit(task: Task, status: int):
    """The reply written from the task as it was flushed (its id, its times), then the
    commit: after the commit, reading any attribute loads the whole row again by a query,
    so the caller reads what it needs (its status) before."""
    db.session.flush()
    response = schemas.reply(schemas.Task, task, status)
    db.session.commit()
    return response


@bp.post("")
@jwt_required()
def create_task():
    change = validation.body(schemas.TaskCreate)
    task = Task(user_id=current_user.id, status="pending", priority="medium")
    _apply(task, change)
    _check_quota()
    db.session.add(task)
    completed = task.status == "completed"
    response = _reply_then_commit(task, 201)
    metrics.TASKS_CREATED.inc()
    if completed:
        metrics.TASKS_COMPLETED.inc()
    return response


@bp.delete("")
@jwt_required()
def delete_completed():
    """Clear completed tasks in one request (the board's 'clear completed')."""
    validation.query(schemas.ClearQuery)
    deleted = Task.query.filter(Task.user_id == current_user.id, Task.status == "completed").delete()
    db.session.commit()
    return schemas.reply(schemas.Deleted, {"deleted": deleted})


@bp.get("/<int:task_id>")
@jwt_required()
def get_task(task_id: int):
    return schemas.reply(schemas.Task, _own_task(task_id))


@bp.route("/<int:task_id>", methods=["PUT", "PATCH"])
@jwt_required()
def update_task(task_id: int):
    task = _own_task(task_id)
    was_completed = task.status == "completed"
    _apply(task, validation.body(schemas.TaskCreate if request.method == "PUT" else schemas.TaskPatch))
    completed_now = task.status == "completed" and not was_completed
    response = _reply_then_commit(task, 200)
    if completed_now:
        metrics.TASKS_COMPLETED.inc()
    return response


@bp.delete("/<int:task_id>")
@jwt_required()
def delete_task(task_id: int):
    db.session.delete(_own_task(task_id))
    db.session.commit()
    return "", 204
