#!/usr/bin/env python3
"""What the Prometheus metrics cost the API: the same gunicorn, the same database and the
same load with the metrics as deployed (prometheus-client's multiprocess mode, a counter and
a histogram written per request) and with them off (TASK_MANAGER_METRICS_ENABLED=false).
Two figures for each: the requests per second, and the CPU the server spent per request
(gunicorn's master and workers, from /proc, reaped workers included), which the other
load on the machine moves far less than the throughput.

No bench host: a real gunicorn on a free 127.0.0.1 port with its own SQLite instance, two
workers, as the browser tests start it (app/tests/livesrv.py). The two variants take turns,
five rounds each, so that whatever else the machine does falls on both; each figure is the
median of its rounds. Two loads: /health (the cheapest request, where the per-request cost
shows most) and the task list of an account holding 200 tasks.
  python bench/metrics_cost.py [--smoke]
"""

from __future__ import annotations

import os
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


TICKS = os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(port: int) -> float:
    """CPU of the gunicorn serving `port`: every process whose environment binds it (the
    master and its workers), with what the master reaped from workers that exited."""
    total = 0.0
    marker = f"TASK_MANAGER_BIND=127.0.0.1:{port}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15]) / TICKS  # utime stime cutime cstime
    return total


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
        cpu_before = server_cpu_seconds(port)
        result = b.load(lambda _i: b.Api(port=port, token=token), step, concurrency=CONCURRENCY, seconds=seconds)
        cpu = server_cpu_seconds(port) - cpu_before
        figures[name] = {**result.summary(), "cpu_ms_per_request": 1000 * cpu / max(1, len(result.latencies_ms))}
    return figures


def main() -> None:
    args = b.arguments(__doc__)
    seconds = 2 if args.smoke else 10
    rounds = 1 if args.smoke else 5
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
        cpu = {v: statistics.median(r[load]["cpu_ms_per_request"] for r in runs[v]) for v in VARIANTS}
        on, off = VARIANTS
        cost = round(100 * (rps[off] - rps[on]) / rps[off], 1) if rps[off] else float("nan")
        cpu_cost = round(100 * (cpu[on] - cpu[off]) / cpu[off], 1) if cpu[off] else float("nan")
        rows.append({"load": load, "req/s off": rps[off], "req/s on": rps[on], "throughput cost %": cost,
                     "CPU ms/req off": round(cpu[off], 3), "CPU ms/req on": round(cpu[on], 3), "CPU cost %": cpu_cost,
                     "p95 ms off": p95[off], "p95 ms on": p95[on],
                     "failed": failed[on] + failed[off],
                     "goal": f"throughput cost < {GOAL_COST_PERCENT} %",
                     "verdict": b.verdict(cost < GOAL_COST_PERCENT)})
    b.emit("metrics_cost", "What the Prometheus metrics cost the API", [{
        "title": f"{CONCURRENCY} clients, {seconds:g} s per load, median of {rounds} alternating round(s)",
        "columns": list(rows[0]), "rows": rows,
        "note": ("throughput cost % = requests/s lost with the metrics on; CPU cost % = the server's CPU per "
                 "request added by them. A negative figure is noise between rounds."),
    }], smoke=args.smoke, method={"concurrency": CONCURRENCY, "seconds": seconds, "rounds": rounds,
                                  "workers": 2, "tasks": TASKS, "server": "gunicorn on 127.0.0.1, SQLite"})


if __name__ == "__main__":
    main()
