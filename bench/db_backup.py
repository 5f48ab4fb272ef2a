#!/usr/bin/env python3
"""Database size at 100,000 tasks, and a backup of a 100 MB database under write load.

1. An account is given 100,000 tasks of the size people write (a short title, a line
   of description); the database's size is read from SQLite (page_count x page_size),
   or PostgreSQL (pg_database_size).
2. The database is grown to 100 MB (tasks with 1 KB descriptions), then tasks are
   created at a steady concurrency before and while `task-manager-backup create`
   runs (SQLite: the online backup API, integrity_check, a checked SQL dump;
   PostgreSQL, on the db host: pg_dump in one snapshot, restored into a scratch
   database and counted): the write latency of both phases and the backup's duration.
  python bench/db_backup.py [--smoke]
"""

import json
import threading
import time

import benchlib as b

GOAL_DB_MB = 100
TASKS = 100_000
WRITERS = 4
# The backup rows' names (bench/report.py judges issue 17's goal on the second).
BACKUP_ALONE = "nothing else running"
BACKUP_UNDER_WRITES = f"{WRITERS} writers"
MANUAL_TITLE = "The manual's backup.sh, the baseline (a cp of the live file and sqlite3 .dump, nothing checked)"


def mb(n: float) -> float:
    return round(n / 1048576, 1)


def writes(token: str, seconds: float, stop: threading.Event | None = None) -> dict:
    def step(api, n):
        return api.request("POST", "/api/tasks", {"title": f"written during the backup bench {n}"})[0]

    return b.load(lambda _i: b.Api(token=token), step, concurrency=WRITERS, seconds=seconds, stop=stop).summary()


def main() -> int:
    args = b.arguments(__doc__)
    tasks = 2_000 if args.smoke else TASKS
    grow_mb = 8 if args.smoke else GOAL_DB_MB
    seconds = 2.0 if args.smoke else 15.0
    b.ensure_host()
    for name in ("bench_bulk", "bench_big", "bench_backup_writer"):
        b.Api().sign_in(name)
    writer = b.Api()
    writer.sign_in("bench_backup_writer")

    before = b.on_host("dbsize")
    seeded = b.on_host("seed", "bench_bulk", str(tasks))
    per_task = (seeded["database_bytes"] - before["database_bytes"]) / max(seeded["added"], 1)
    b.log(f"{seeded['tasks']} tasks in all, database {mb(seeded['database_bytes'])} MB")
    size_rows = [{
        "tasks in the database": seeded["tasks"],
        "database_mb": mb(seeded["database_bytes"]),
        "bytes per task (measured)": round(per_task) if seeded["added"] else "-",
        "100,000 tasks (mb)": mb(per_task * TASKS) if seeded["added"] else "-",
        "goal": f"< {GOAL_DB_MB} MB",
        "verdict": b.verdict(per_task * TASKS < GOAL_DB_MB * 1048576) if seeded["added"] else "",
    }]

    grown = b.on_host("grow", "bench_big", str(grow_mb))
    b.log(f"database grown to {mb(grown['database_bytes'])} MB ({grown['tasks']} tasks)")
    started = time.perf_counter()
    alone = json.loads(b.database_host_exec("/usr/local/sbin/task-manager-backup", "create", "--kind", "manual",
                                            "--label", "bench, nothing else running").stdout)
    alone_seconds = time.perf_counter() - started
    manual_rows = []
    if b.ENGINE != "postgresql":
        started = time.perf_counter()
        manual = b.on_host("manual-backup")
        manual_rows.append({"while": BACKUP_ALONE, "seconds": round(time.perf_counter() - started, 1),
                            "set_mb": mb(manual["bytes"])})
    quiet = writes(writer.token, seconds)

    stop = threading.Event()
    during: dict = {}
    load = threading.Thread(target=lambda: during.update(writes(writer.token, 3600, stop)), daemon=True)
    load.start()
    time.sleep(1)
    started = time.perf_counter()
    backup = b.database_host_exec("/usr/local/sbin/task-manager-backup", "create", "--kind", "manual",
                                  "--label", "bench")
    duration = time.perf_counter() - started
    time.sleep(1)
    stop.set()
    load.join()
    manifest = json.loads(backup.stdout)

    latency_rows = [
        {"phase": "writes, no backup running", **{k: quiet[k] for k in ("requests", "rps", "p50_ms", "p95_ms",
                                                                       "p99_ms", "max_ms", "non_2xx", "errors")}},
        {"phase": "writes while the backup runs", **{k: during[k] for k in ("requests", "rps", "p50_ms", "p95_ms",
                                                                           "p99_ms", "max_ms", "non_2xx", "errors")}},
    ]
    backup_rows = [{
        "while": while_, "database_mb": mb(grown["database_bytes"]), "tasks": taken["tasks"],
        "backup_seconds": round(took, 1), "backup_set_mb": mb(sum(f["bytes"] for f in taken["files"].values())),
        "files": ", ".join(sorted(taken["files"])), "integrity": taken["integrity"],
    } for while_, taken, took in ((BACKUP_ALONE, alone, alone_seconds), (BACKUP_UNDER_WRITES, manifest, duration))]
    b.emit("db_backup", "Database size and backup under load", [
        {"title": f"Database size ({tasks:,} tasks of a title and a line of description added)",
         "columns": list(size_rows[0]), "rows": size_rows},
        {"title": f"Write latency before and during a backup ({WRITERS} writers, closed loop, through nginx)",
         "columns": list(latency_rows[0]), "rows": latency_rows},
        {"title": "The backup itself " + ("(pg_dump in one snapshot, restored into a scratch database and counted)"
                                          if b.ENGINE == "postgresql" else
                                          "(copy through the online backup API, integrity_check, SQL dump loaded "
                                          "back and counted)"), "columns": list(backup_rows[0]), "rows": backup_rows},
        *([{"title": MANUAL_TITLE, "columns": list(manual_rows[0]), "rows": manual_rows}] if manual_rows else []),
    ], smoke=args.smoke, method={"seeded_tasks": tasks, "grown_to_mb": grow_mb, "writers": WRITERS,
                                 "quiet_phase_s": seconds, "backup_dir": "a tmpfs on the bench host"})
    return 0 if during.get("requests") and manifest["integrity"] == alone["integrity"] == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())
