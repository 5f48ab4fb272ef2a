#!/usr/bin/env python3
"""Where a list request's time goes, before and after: the API at this checkout and at a
baseline revision, beside a minimal Flask app, in one run.

No bench host and no network: each variant runs in a process of its own (the app imported
from its own checkout: this one, or a `git worktree` of the baseline made in a temporary
directory), on a real SQLite file holding an account of 10,000 tasks, each request handed to
the app as gunicorn hands it (a WSGI call with a prepared environ; Flask's test client would
add its own URL handling to every figure), so only the Python work per request is measured.
Each figure is CPU time per request (time.process_time, the median of alternating rounds),
which the machine's other load moves far less than wall time. The profile attributes each
function's own time (cProfile's tottime) to the library it belongs to.
  python bench/list_profile.py [--smoke] [--baseline REV]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# The last revision before the counts table and the single token query (issue 17).
BASELINE = "f4b4ecb"
TASKS = 10_000
REQUESTS = {"list, 20 per page": "/api/tasks?per_page=20", "list, 100 per page": "/api/tasks?per_page=100"}
PROFILED = "list, 20 per page"
# Where a function's own time is counted: the first part of its file's path that matches.
LAYERS = (
    ("token check (PyJWT, flask-jwt-extended)", ("/jwt/", "/flask_jwt_extended/")),
    ("database (SQLAlchemy, sqlite3)", ("/sqlalchemy/", "/flask_sqlalchemy/", "sqlite3")),
    ("validation and JSON (pydantic)", ("/pydantic", "pydantic_core")),
    ("Flask and Werkzeug", ("/flask/", "/werkzeug/", "/click/")),
    ("the app's own code", ("/task_manager/",)),
    ("logging", ("/logging/",)),
)


def layer_of(where: str) -> str:
    for name, marks in LAYERS:
        if any(mark in where for mark in marks):
            return name
    return "other (Python's library, builtins)"


def wsgi_call(app, path: str, headers: dict):
    """A request as a WSGI server makes it: the environ built once, each call on a copy of it.
    Returns the call, which answers the response's status code."""
    from werkzeug.test import EnvironBuilder  # noqa: PLC0415

    base = EnvironBuilder(path=path, headers=headers, environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_environ()

    def call() -> int:
        environ = dict(base, **{"wsgi.input": io.BytesIO()})
        status = []
        result = app(environ, lambda line, _headers, _exc_info=None: status.append(line))
        try:
            for _chunk in result:
                pass
        finally:
            getattr(result, "close", lambda: None)()
        return int(status[0].split()[0])

    return call


def measure(app_dir: Path, rounds: int, per_round: int) -> dict:
    """Child process: import the app from app_dir, seed the account, measure, profile."""
    sys.path.insert(0, str(app_dir))
    from flask import Flask  # noqa: PLC0415
    from flask_migrate import upgrade  # noqa: PLC0415
    from sqlalchemy import text  # noqa: PLC0415

    from task_manager import create_app  # noqa: PLC0415
    from task_manager.extensions import MIGRATIONS_DIR, db  # noqa: PLC0415

    tmp = Path(tempfile.mkdtemp(prefix="list-profile-"))
    app = create_app({
        "ENV_NAME": "testing", "SECRET_KEY": "list-profile-" + "x" * 40, "LOG_DIR": str(tmp / "logs"),
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp / 'task_manager.db'}", "METRICS_ENABLED": False,
    })
    with contextlib.redirect_stderr(None), app.app_context():
        upgrade(directory=MIGRATIONS_DIR)
    client = app.test_client()
    account = {"username": "bench_reader", "password": "bench-password-1"}
    client.post("/api/auth/register", json=account)
    token = client.post("/api/auth/login", json=account).get_json()["access_token"]
    with app.app_context():
        user_id = db.session.execute(text("SELECT id FROM users")).scalar()
        statuses = ("pending", "in_progress", "completed")
        db.session.execute(text(
            "INSERT INTO tasks (user_id, title, status, priority, created_at, updated_at, completed_at) "
            "VALUES (:u, :t, :s, 'medium', :c, :c, CASE WHEN :s = 'completed' THEN :c END)"
        ), [{"u": user_id, "t": f"task {n}", "s": statuses[n % 3], "c": f"2026-01-01 00:{n // 600 % 60:02d}:"
             f"{n // 10 % 60:02d}.{n:06d}"} for n in range(TASKS)])
        db.session.commit()
    headers = {"Authorization": f"Bearer {token}"}

    minimal = Flask("minimal")
    minimal.get("/api/tasks")(lambda: {"tasks": [], "total": 0})
    calls = {name: wsgi_call(app, url, headers) for name, url in REQUESTS.items()}
    calls["minimal Flask GET"] = wsgi_call(minimal, "/api/tasks", {})
    for name, call in calls.items():
        for _ in range(20):
            if call() != 200:
                raise SystemExit(f"{name}: not 200")
    cpu = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            started = time.process_time()
            for _ in range(per_round):
                call()
            cpu[name].append((time.process_time() - started) / per_round * 1000)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(per_round):
        calls[PROFILED]()
    profiler.disable()
    layers: dict[str, float] = {}
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in pstats.Stats(profiler).stats.items():
        layer = layer_of(f"{filename} {name}")  # a builtin's "file" is "~": its name says whose it is
        layers[layer] = layers.get(layer, 0.0) + tottime
    whole = sum(layers.values())
    shutil.rmtree(tmp, ignore_errors=True)
    return {
        "cpu_ms": {name: round(statistics.median(values), 3) for name, values in cpu.items()},
        "profile_percent": {name: round(100 * value / whole, 1) for name, value in sorted(
            layers.items(), key=lambda item: -item[1])},
    }


@contextlib.contextmanager
def checkout(revision: str):
    """The app directory of `revision`, in a worktree removed afterwards."""
    place = Path(tempfile.mkdtemp(prefix="list-profile-rev-")) / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(place), revision], check=True)
    try:
        yield place / "app"
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(place)], check=False)
        shutil.rmtree(place.parent, ignore_errors=True)


def run_child(app_dir: Path, rounds: int, per_round: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(app_dir), "--rounds", str(rounds), "--per-round", str(per_round)],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def ratio(cpu_ms: dict, name: str) -> float:
    return round(cpu_ms["minimal Flask GET"] / cpu_ms[name], 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a few requests per figure: the script keeps working")
    parser.add_argument("--baseline", default=BASELINE, help="the revision to compare with (default %(default)s)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=5, help=argparse.SUPPRESS)
    parser.add_argument("--per-round", type=int, default=300, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.rounds, args.per_round)))
        return 0

    sys.path.insert(0, str(BENCH))
    import benchlib as b  # noqa: PLC0415  (the child needs none of it)

    rounds, per_round = (1, 20) if args.smoke else (args.rounds, args.per_round)
    known = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{args.baseline}^{{commit}}"], check=False)
    if known.returncode == 0:
        b.log(f"baseline {args.baseline}")
        with checkout(args.baseline) as old_app:
            before = run_child(old_app, rounds, per_round)
    else:  # a shallow clone: this checkout alone, said in the table
        b.log(f"baseline {args.baseline} is not in this clone: this checkout alone")
        before = {"cpu_ms": {}, "profile_percent": {}}
    b.log("this checkout")
    after = run_child(ROOT / "app", rounds, per_round)
    rows = []
    for name in (*REQUESTS, "minimal Flask GET"):
        row = {"request": name, f"CPU ms/req at {args.baseline}": before["cpu_ms"].get(name, "—"),
               "CPU ms/req now": after["cpu_ms"][name], "÷ minimal Flask, before": "", "÷ minimal Flask, now": ""}
        if name in REQUESTS:
            if before["cpu_ms"]:
                row["÷ minimal Flask, before"] = ratio(before["cpu_ms"], name)
            row["÷ minimal Flask, now"] = ratio(after["cpu_ms"], name)
        rows.append(row)
    layers = sorted(set(before["profile_percent"]) | set(after["profile_percent"]),
                    key=lambda name: -after["profile_percent"].get(name, 0.0))
    profile = [{"where the time goes": name, f"% at {args.baseline}": before["profile_percent"].get(name, 0.0),
                "% now": after["profile_percent"].get(name, 0.0)} for name in layers]
    b.emit("list_profile", "Where a list request's time goes (in-process profile)", [
        {"title": f"CPU per request, {TASKS:,} tasks in the account, median of {rounds} alternating round(s)",
         "columns": list(rows[0]), "rows": rows,
         "note": ("÷ minimal Flask = the minimal app's CPU per request divided by the request's: the share of the "
                  "framework's ceiling the API reaches in Python alone, without nginx, gunicorn and the network, "
                  "which add the same cost to both and bring the ratio through the stack closer to 1.")},
        {"title": f"The profile of '{PROFILED}' ({per_round} requests, own time by library)",
         "columns": list(profile[0]), "rows": profile},
    ], smoke=args.smoke, method={"requests_per_round": per_round, "rounds": rounds, "tasks": TASKS,
                                 "baseline": args.baseline,
                                 "server": "WSGI calls, a prepared environ (no test client), SQLite file, no network"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
