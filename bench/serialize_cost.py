#!/usr/bin/env python3
"""What a page of the task list costs to serialise: the hand-written Task.to_dict() + jsonify
the API had, against the declarations (schemas.TaskPage through pydantic) it has now.

No bench host and no server: a temporary SQLite file with 10,000 tasks, a page of 20 and
one of 100 read back through the ORM in the list's own order, then each path timed on the
same loaded rows (timeit, best of 25 runs, the two paths taking turns). Both paths must give the same bytes;
that is checked before anything is timed.
  python bench/serialize_cost.py [--smoke]
"""

from __future__ import annotations

import json
import tempfile
import timeit
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from flask import jsonify
from flask_migrate import upgrade
from sqlalchemy import insert, select

import benchlib as b
from task_manager import create_app, schemas
from task_manager.extensions import MIGRATIONS_DIR, db
from task_manager.models import Task, User

TASKS = 10_000
PAGES = (20, 100)


# ---------------------------------------------------------------------------- the old path, as it was


def iso(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
    return value.isoformat()


def to_dict(task: Task) -> dict:
    return {
        "id": task.id,
        "title": task.title,
        "description": task.description,
        "status": task.status,
        "priority": task.priority,
        "due_date": iso(task.due_date),
        "created_at": iso(task.created_at),
        "updated_at": iso(task.updated_at),
        "completed_at": iso(task.completed_at),
    }


def old_path(rows: list[Task], rest: dict):
    return jsonify(tasks=[to_dict(t) for t in rows], **rest)


def new_path(rows: list[Task], rest: dict):
    return schemas.reply(schemas.TaskPage, {"tasks": rows, **rest})


# ---------------------------------------------------------------------------- the data


def fill(user_id: int) -> None:
    start = datetime(2025, 1, 1, 9, 0, 0)
    rows = []
    for n in range(TASKS):
        created = start + timedelta(minutes=n, microseconds=n % 7)
        done = n % 3 == 0
        rows.append({
            "user_id": user_id,
            "title": f"タスク {n}: write the quarterly report",
            "description": None if n % 4 == 0 else f"line one of {n}\n\tline two, 説明 ✓",
            "status": "completed" if done else ("in_progress" if n % 3 == 1 else "pending"),
            "priority": ("low", "medium", "high")[n % 3],
            "due_date": date(2026, 1, 1) + timedelta(days=n % 365) if n % 2 else None,
            "created_at": created,
            "updated_at": created + timedelta(seconds=30),
            "completed_at": created + timedelta(hours=1) if done else None,
        })
    db.session.execute(insert(Task), rows)
    db.session.commit()


def best_microseconds(old, new, number: int, repeat: int) -> tuple[float, float]:
    """The best run of each, the two taking turns, so that a busy moment of this shared
    machine weighs on both alike."""
    old_runs, new_runs = [], []
    for _ in range(repeat):
        old_runs.append(timeit.timeit(old, number=number))
        new_runs.append(timeit.timeit(new, number=number))
    return min(old_runs) / number * 1e6, min(new_runs) / number * 1e6


def main() -> None:
    args = b.arguments(__doc__.splitlines()[0])
    number, repeat = (20, 3) if args.smoke else (100, 25)
    rows_out = []
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({
            "TESTING": True, "ENV_NAME": "testing", "SECRET_KEY": "bench-serialize-cost-secret-0123456789abcdef",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{Path(tmp) / 'bench.db'}", "LOG_DIR": str(Path(tmp) / "logs"),
        })
        with app.app_context(), app.test_request_context("/api/tasks"):
            upgrade(directory=MIGRATIONS_DIR)
            user = User(username="bench", password_hash="!")  # noqa: S106  (never signs in: it only owns the rows)
            db.session.add(user)
            db.session.commit()
            fill(user.id)
            counts = {"pending": 3333, "in_progress": 3333, "completed": 3334}
            for size in PAGES:
                query = select(Task).where(Task.user_id == user.id).order_by(Task.created_at.desc(), Task.id.desc())
                page = db.session.scalars(query.limit(size)).all()
                rest = {"total": TASKS, "page": 1, "per_page": size, "counts": counts}
                old_body, new_body = old_path(page, rest).get_data(), new_path(page, rest).get_data()
                if old_body != new_body:
                    raise SystemExit(f"the two paths differ for a page of {size}:\n{old_body[:400]}\n{new_body[:400]}")
                old, new = best_microseconds(lambda p=page, r=rest: old_path(p, r),
                                             lambda p=page, r=rest: new_path(p, r), number, repeat)
                rows_out.append({
                    "page": size, "to_dict + jsonify (µs)": f"{old:.0f}", "schemas.TaskPage (µs)": f"{new:.0f}",
                    "per task, old / new (µs)": f"{old / size:.1f} / {new / size:.1f}", "new / old": f"{new / old:.2f}",
                    "bytes": len(new_body),
                })
            db.session.remove()
    path = b.emit(
        "serialize_cost", "The task list's serialisation: to_dict() against the declarations",
        [{
            "title": f"A page of loaded rows to a response body, best of {repeat} runs of {number}",
            "columns": list(rows_out[0]),
            "rows": rows_out,
            "note": "Both paths give the same bytes (checked first). Below 1.00 the declarations are faster.",
        }],
        smoke=args.smoke,
        method={"tasks": TASKS, "pages": list(PAGES), "number": number, "repeat": repeat,
                "old": "Task.to_dict() for each row, then flask.jsonify",
                "new": "schemas.reply(schemas.TaskPage): pydantic validates the rows by their attributes "
                       "and writes the JSON (its serializer's to_json)"},
    )
    # In this process on this machine, not on a bench host: say so in the record.
    record = json.loads(path.read_text(encoding="utf-8"))
    record["machine"]["host"] = "this machine, in one process (no bench host, no server)"
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
