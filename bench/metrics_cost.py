#!/usr/bin/env python3
"""What the Prometheus metrics cost the API: the same gunicorn, the same database and the
same load with the metrics as deployed (prometheus-client's multiprocess mode, a counter and
a histogram written per request) and with them off (TASK_MANAGER_METRICS_ENABLED=false).

No bench host: a real gunicorn on a free 127.0.0.1 port with its own SQLite instance, two
workers, as the browser tests start it (app/tests/livesrv.py). The two variants take turns,
three rounds each, so that whatever else the machine does falls on both; each figure is the
median of its rounds. Two loads: /health (the cheapest request, where the per-request cost
shows most) and the task list of an account holding 200 tasks.
  python bench/metrics_cost.py [--smoke]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import benchlib as b

sys.path.insert(0, str(b.ROOT / "app"))
from tests.livesrv import live_server  # the app's own test server

GOAL_COST_PERCENT = 5
CONCURRENCY = 4
TASKS = 200
VARIANTS = {
    "metrics on (as deployed)": lambda base: {"TASK_MANAGER_METRICS_DIR": str(base / "metrics")},
    "metrics off": lambda _base: {"TASK_MANAGER_METRICS_ENABLED": "false"},
}


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def measure(url: str, seconds: float) -> dict:
    port = port_of(url)
    owner = b.Api(port=port)
    owner.sign_in("bench_metrics")
    for n in range(TASKS):
        status, _ = owner.request("POST", "/api/tasks", {"title": f"task {n}"})
        if status not in (201, 409):
            raise RuntimeError(f"seeding: {status}")
    token = owner.token
    loads = {
        "GET /health": lambda api, _n: api.request("GET", "/health")[0],
        "GET /api/tasks": lambda api, n: api.request("GET", f"/api/tasks?page={1 + n % 10}")[0],
    }
    figures = {}
    for name, step in loads.items():
        result = b.load(lambda _i: b.Api(port=port, token=token), step, concurrency=CONCURRENCY, seconds=seconds)
        figures[name] = result.summary()
    return figures


def main() -> None:
    args = b.arguments(__doc__)
    seconds = 2 if args.smoke else 10
    rounds = 1 if args.smoke else 3
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        for round_no in range(rounds):
            for variant, env in VARIANTS.items():
                base = Path(tmp) / f"{round_no}-{len(runs[variant])}-{variant.split()[1]}"
                base.mkdir()
                b.log(f"round {round_no + 1}/{rounds}: {variant}")
                with live_server(base, workers=2, extra_env=env(base)) as url:
                    runs[variant].append(measure(url, seconds))
    rows = []
    for load in ("GET /health", "GET /api/tasks"):
        rps = {v: statistics.median(r[load]["rps"] for r in runs[v]) for v in VARIANTS}
        p95 = {v: statistics.median(r[load]["p95_ms"] for r in runs[v]) for v in VARIANTS}
        failed = {v: sum(r[load]["errors"] + r[load]["non_2xx"] for r in runs[v]) for v in VARIANTS}
        on, off = VARIANTS
        cost = round(100 * (rps[off] - rps[on]) / rps[off], 1) if rps[off] else float("nan")
        rows.append({"load": load, "req/s off": rps[off], "req/s on": rps[on], "cost %": cost,
                     "p95 ms off": p95[off], "p95 ms on": p95[on],
                     "failed": failed[on] + failed[off],
                     f"goal (< {GOAL_COST_PERCENT} %)": b.verdict(cost < GOAL_COST_PERCENT)})
    b.emit("metrics_cost", "What the Prometheus metrics cost the API", [{
        "title": f"{CONCURRENCY} clients, {seconds:g} s per load, median of {rounds} alternating round(s)",
        "columns": list(rows[0]), "rows": rows,
        "note": "cost % = throughput lost with the metrics on; a negative figure is noise between rounds.",
    }], smoke=args.smoke, method={"concurrency": CONCURRENCY, "seconds": seconds, "rounds": rounds,
                                  "workers": 2, "tasks": TASKS, "server": "gunicorn on 127.0.0.1, SQLite"})


if __name__ == "__main__":
    main()
