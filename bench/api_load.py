#!/usr/bin/env python3
"""API latency, throughput and memory on a deployed host, through nginx, beside a minimal app.

For each concurrency level: login, listing tasks (an account holding 10,000 tasks),
creating and completing tasks, then the same load on a minimal WSGI app served by the
same gunicorn settings behind a copy of the same nginx site. Memory of all the
service's processes (PSS, so shared pages count once) at rest and sampled under load.
  python bench/api_load.py [--smoke]
"""

import threading

import benchlib as b

GOAL_P99_MS = 200
GOAL_READ_RATIO = 0.5
GOAL_MEMORY_MB = 512
GOAL_CONCURRENCY = 8  # the level the goals are judged at: a team's worth of busy clients
LIST_TASKS = 10_000


def scenarios(reader: b.Api, writer: b.Api, writer_ids: list[int]) -> dict:
    def authed(token):
        return lambda _i: b.Api(token=token)

    def login(api, _n):
        return api.request("POST", "/api/auth/login", {"username": "bench_login", "password": b.PASSWORD})[0]

    def listing(api, n):
        return api.request("GET", f"/api/tasks?page={1 + n % 5}")[0]

    def create(api, n):
        return api.request("POST", "/api/tasks", {"title": f"bench task {n}", "priority": "high"})[0]

    def complete(api, n):
        task_id = writer_ids[(id(api) + n) % len(writer_ids)]
        return api.request("PATCH", f"/api/tasks/{task_id}", {"status": "completed" if n % 2 else "pending"})[0]

    def minimal_get(api, _n):
        return api.request("GET", "/api/tasks")[0]

    def baseline_client(_i):
        return b.Api(port=b.BASELINE_PORT)

    return {
        "login": (lambda _i: b.Api(), login, "api"),
        "list 10k": (authed(reader.token), listing, "api"),
        "create": (authed(writer.token), create, "api"),
        "complete": (authed(writer.token), complete, "api"),
        "minimal GET": (baseline_client, minimal_get, "minimal"),
        "minimal POST": (baseline_client, create, "minimal"),  # the same request, to the minimal app
    }


class MemorySampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.samples: list[dict] = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.samples.append(b.on_host("memory"))
            self.stop.wait(0.5)


def mb(n: float) -> float:
    return round(n / 1048576, 1)


def main() -> int:
    args = b.arguments(__doc__)
    levels = [2] if args.smoke else [1, 4, GOAL_CONCURRENCY, 16]
    seconds = 1.0 if args.smoke else 10.0
    list_tasks = 300 if args.smoke else LIST_TASKS

    b.ensure_host()
    reader, writer, login_user = b.Api(), b.Api(), b.Api()
    reader.sign_in("bench_reader")
    writer.sign_in("bench_writer")
    login_user.sign_in("bench_login")
    seeded = b.on_host("seed", "bench_reader", str(list_tasks))
    b.on_host("seed", "bench_writer", "200")
    _status, body = writer.json("GET", "/api/tasks?per_page=100")
    writer_ids = [t["id"] for t in body["tasks"]]
    b.log(f"bench_reader holds {seeded['tasks']} tasks in all; database {mb(seeded['database_bytes'])} MB")

    at_rest = b.on_host("memory")
    b.on_host("baseline", "up")
    baseline_memory = b.on_host("memory", "task-manager-bench-minimal.service")
    rows, sampler = [], MemorySampler()
    sampler.start()
    try:
        for level in levels:
            for name, (make, step, target) in scenarios(reader, writer, writer_ids).items():
                b.log(f"{name} at concurrency {level} for {seconds:.0f} s")
                result = b.load(make, step, concurrency=level, seconds=seconds).summary()
                rows.append({"scenario": name, "target": target, "concurrency": level, **result})
    finally:
        sampler.stop.set()
        sampler.join()
        b.on_host("baseline", "down")
    under_load = max(sampler.samples, key=lambda s: s["pss_bytes"])

    table_rows, failures = [], 0
    for row in rows:
        failures += row["errors"] + row["non_2xx"]
        table_rows.append({k: row[k] for k in ("scenario", "concurrency", "requests", "rps", "p50_ms", "p95_ms",
                                                 "p99_ms", "max_ms", "errors", "non_2xx")})
    by = {(r["scenario"], r["concurrency"]): r for r in rows}
    ratio_rows = []
    for level in levels:
        reads = by[("list 10k", level)]["rps"] / max(by[("minimal GET", level)]["rps"], 0.1)
        writes = by[("create", level)]["rps"] / max(by[("minimal POST", level)]["rps"], 0.1)
        judged = level == GOAL_CONCURRENCY or args.smoke
        worst = max(by[(s, level)]["p99_ms"] for s in ("list 10k", "create", "complete"))
        ratio_rows.append({
            "concurrency": level,
            "list rps / minimal GET rps": round(reads, 2),
            "create rps / minimal POST rps": round(writes, 2),
            "worst p99 of list, create, complete (ms)": worst,
            "login p99 (ms)": by[("login", level)]["p99_ms"],
            "goal": f"p99 < {GOAL_P99_MS} ms, reads >= {GOAL_READ_RATIO}" if judged else "",
            "verdict": (b.verdict(worst < GOAL_P99_MS) + " / " + b.verdict(reads >= GOAL_READ_RATIO)) if judged else "",
        })
    memory_rows = [
        {"state": "at rest", "processes": at_rest["processes"], "pss_mb": mb(at_rest["pss_bytes"]),
         "rss_sum_mb": mb(at_rest["rss_bytes"]), "goal": f"< {GOAL_MEMORY_MB} MB",
         "verdict": b.verdict(at_rest["pss_bytes"] < GOAL_MEMORY_MB * 1048576)},
        {"state": "under load (peak of samples)", "processes": under_load["processes"],
         "pss_mb": mb(under_load["pss_bytes"]), "rss_sum_mb": mb(under_load["rss_bytes"]),
         "goal": f"< {GOAL_MEMORY_MB} MB",
         "verdict": b.verdict(under_load["pss_bytes"] < GOAL_MEMORY_MB * 1048576)},
        {"state": "minimal app at rest (same gunicorn settings)", "processes": baseline_memory["processes"],
         "pss_mb": mb(baseline_memory["pss_bytes"]), "rss_sum_mb": mb(baseline_memory["rss_bytes"]), "goal": "",
         "verdict": ""},
    ]
    b.emit("api_load", "API latency, throughput and memory", [
        {"title": "Latency and throughput through nginx (closed loop, each client waits for its answer)",
         "columns": list(table_rows[0]), "rows": table_rows},
        {"title": f"Against the minimal app and the goals (judged at concurrency {GOAL_CONCURRENCY})",
         "columns": list(ratio_rows[0]), "rows": ratio_rows,
         "note": "Sign-in is slow by design (scrypt password hashing), so it is shown apart from the 200 ms goal."},
        {"title": "Memory of the service: all gunicorn processes (PSS: shared pages counted once)",
         "columns": list(memory_rows[0]), "rows": memory_rows, "note": f"{len(sampler.samples)} samples under load."},
    ], smoke=args.smoke, method={
        "concurrency_levels": levels, "seconds_per_step": seconds, "tasks_in_listed_account": list_tasks,
        "page": "100 tasks a page, pages 1-5 in turn", "load_generator": "Python threads, keep-alive, on this machine",
        "path": "127.0.0.1 -> podman port -> nginx -> systemd socket -> gunicorn (4 sync workers) -> " + (
            "PostgreSQL 15 on a second host (TLS, a pool per worker)" if b.ENGINE == "postgresql" else "SQLite (WAL)"),
    })
    if failures:
        b.log(f"{failures} requests failed or were not 2xx")
    return 0 if all(r["requests"] > 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
