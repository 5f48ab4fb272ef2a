"""/api/tasks: the caller's own tasks. Another user's task is 404, never 403."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from flask_jwt_extended import current_user, jwt_required
from sqlalchemy import case, func, or_, select

from .. import validation
from ..errors import ApiError
from ..extensions import db
from ..models import TASK_PRIORITIES, TASK_STATUSES, Task

bp = Blueprint("tasks", __name__, url_prefix="/api/tasks")

FIELDS = {"title", "description", "status", "priority", "due_date"}
READ_ONLY = frozenset({"id", "created_at", "updated_at", "completed_at"})
STATUS_FILTERS = (*TASK_STATUSES, "active")
SORT_KEYS = ("created_at", "due_date", "priority", "title")
SQLITE_MAX_INT = 2**63 - 1
PRIORITY_RANK = case({"low": 0, "medium": 1, "high": 2}, value=Task.priority)


def _own_task(task_id: int) -> Task:
    if task_id > SQLITE_MAX_INT:
        raise ApiError(404, "task_not_found", "タスクが見つかりません")
    task = db.session.scalar(select(Task).where(Task.id == task_id, Task.user_id == current_user.id))
    if task is None:
        raise ApiError(404, "task_not_found", "タスクが見つかりません")
    return task


def _status_filter(query, status: str | None):
    if status is None:
        return query
    if status == "active":
        return query.where(Task.status != "completed")
    return query.where(Task.status == status)


def _order_by(sort: str):
    descending = sort.startswith("-")
    key = sort.lstrip("-")
    column = {
        "created_at": Task.created_at,
        "due_date": Task.due_date,
        "priority": PRIORITY_RANK,
        "title": func.lower(Task.title),
    }[key]
    ordered = column.desc() if descending else column.asc()
    tie_break = Task.id.desc() if descending else Task.id.asc()
    if key == "due_date":  # tasks with no due date go last either way
        return [Task.due_date.is_(None), ordered, tie_break]
    return [ordered, tie_break]


@bp.get("")
@jwt_required()
def list_tasks():
    args = request.args
    status = args.get("status") or None
    if status is not None:
        validation.choice("status", status, STATUS_FILTERS)
    sort = args.get("sort") or "-created_at"
    if sort.lstrip("-") not in SORT_KEYS or sort.startswith("--"):
        raise validation.invalid("sort", f"{', '.join(SORT_KEYS)} (降順は先頭に -) のいずれかを指定してください")
    q = validation.search(args.get("q", ""))
    page = validation.int_arg("page", 1)
    per_page = validation.int_arg(
        "per_page", current_app.config["TASKS_PER_PAGE"], maximum=current_app.config["TASKS_MAX_PER_PAGE"]
    )

    query = _status_filter(select(Task).where(Task.user_id == current_user.id), status)
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(or_(Task.title.ilike(pattern, escape="\\"), Task.description.ilike(pattern, escape="\\")))
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    tasks = db.session.scalars(query.order_by(*_order_by(sort)).limit(per_page).offset((page - 1) * per_page)).all()
    counts = dict.fromkeys(TASK_STATUSES, 0)
    counts.update(
        db.session.execute(
            select(Task.status, func.count()).where(Task.user_id == current_user.id).group_by(Task.status)
        ).all()
    )
    return jsonify(
        tasks=[t.to_dict() for t in tasks], total=total, page=page, per_page=per_page, counts=counts
    )


def _apply(task: Task, data: dict, *, replace: bool) -> None:
    validation.reject_unknown(data, FIELDS, READ_ONLY)
    if replace or "title" in data:
        if "title" not in data:
            raise validation.invalid("title", "必須です")
        task.title = validation.title(data["title"])
    if replace or "description" in data:
        task.description = validation.description(data.get("description"))
    if replace or "priority" in data:
        task.priority = validation.choice("priority", data.get("priority", "medium"), TASK_PRIORITIES)
    if replace or "due_date" in data:
        task.due_date = validation.due_date(data.get("due_date"))
    if replace or "status" in data:
        task.set_status(validation.choice("status", data.get("status", "pending"), TASK_STATUSES))


def _check_quota() -> None:
    limit = current_app.config["TASKS_MAX_PER_USER"]
    # Counted on the (user_id) index: about a millisecond even for an account near the limit.
    held = db.session.scalar(select(func.count(Task.id)).where(Task.user_id == current_user.id))
    if held >= limit:
        raise ApiError(
            403, "task_limit_reached",
            f"タスクは1ユーザーあたり{limit}件までです。不要なタスクを削除してから追加してください",
        )


@bp.post("")
@jwt_required()
def create_task():
    data = validation.json_object()
    task = Task(user_id=current_user.id, status="pending", priority="medium")
    _apply(task, data, replace=True)
    _check_quota()
    db.session.add(task)
    db.session.commit()
    return jsonify(task.to_dict()), 201


@bp.delete("")
@jwt_required()
def delete_completed():
    """Clear completed tasks in one request (the board's 'clear completed')."""
    if request.args.get("status") != "completed":
        raise validation.invalid("status", "一括削除は status=completed のみ指定できます")
    deleted = Task.query.filter(Task.user_id == current_user.id, Task.status == "completed").delete()
    db.session.commit()
    return jsonify(deleted=deleted)


@bp.get("/<int:task_id>")
@jwt_required()
def get_task(task_id: int):
    return jsonify(_own_task(task_id).to_dict())


@bp.route("/<int:task_id>", methods=["PUT", "PATCH"])
@jwt_required()
def update_task(task_id: int):
    task = _own_task(task_id)
    data = validation.json_object()
    _apply(task, data, replace=request.method == "PUT")
    db.session.commit()
    return jsonify(task.to_dict())


@bp.delete("/<int:task_id>")
@jwt_required()
def delete_task(task_id: int):
    db.session.delete(_own_task(task_id))
    db.session.commit()
    return "", 204
