#!/usr/bin/env python3
"""A cluster through HAProxy: the same load with two app hosts in service and with one,
then a rolling update.yml under load, every request counted.

The cluster is four hosts (lb, two app hosts, db on PostgreSQL) deployed with the real
deploy.yml; only the lb publishes a port. One app host is taken out with the lb's own
`task-manager-lb drain`, the way the runbooks do it, and put back with `admit`. The
requests each app host answered are read from HAProxy's counters, so a figure that
claims two hosts shows that both served.
  BENCH_HOST=.. BENCH_APP2_HOST=.. BENCH_LB_HOST=.. BENCH_DB_HOST=.. python bench/cluster_load.py [--smoke]
"""

import json
import os

import benchlib as b
from update_downtime import update_under_load

LIST_TASKS = 2_000


def served_by_host() -> dict[str, int]:
    return {s["host"]: s["requests_total"] for s in b.lb_exec("state")["servers"]}


def measure(label: str, levels: list[int], seconds: float, reader: b.Api, writer: b.Api) -> list[dict]:
    def listing(api, n):
        return api.request("GET", f"/api/tasks?page={1 + n % 5}&per_page=20")[0]

    def create(api, n):
        return api.request("POST", "/api/tasks", {"title": f"cluster bench task {n}"})[0]

    rows = []
    for level in levels:
        for name, token, step in (("list", reader.token, listing), ("create", writer.token, create)):
            before = served_by_host()
            b.log(f"{label}: {name} at concurrency {level} for {seconds:.0f} s")
            result = b.load(lambda _i, t=token: b.Api(token=t), step, concurrency=level, seconds=seconds).summary()
            after = served_by_host()
            rows.append({"app hosts in service": label, "scenario": name, "concurrency": level,
                         **{k: result[k] for k in ("requests", "rps", "p50_ms", "p99_ms", "max_ms", "errors",
                                                   "non_2xx")},
                         "answered by": {h: after[h] - before.get(h, 0) for h in sorted(after)}})
    return rows


def single_host_update() -> dict:
    """The single-host figures of `make bench-update`, if it ran: shown beside, never as this run's."""
    path = b.results_dir() / "update_downtime.json"
    if not path.exists():
        return {}
    record = json.loads(path.read_text(encoding="utf-8"))
    row = record["sections"][0]["rows"][0]
    return {"update": f"one host, nginx only ({'smoke run' if record['smoke'] else 'measured'} "
                      f"{record['measured_at'][:10]}, make bench-update)",
            **{k: row[k] for k in ("update_yml_s", "requests", "failed", "longest_gap_s", "slowest_request_s")}}


def main() -> int:
    args = b.arguments(__doc__)
    if not b.CLUSTER:
        raise SystemExit("cluster_load.py needs a cluster: set BENCH_LB_HOST, BENCH_APP2_HOST and BENCH_DB_HOST "
                         "(make bench-cluster does)")
    levels = [2] if args.smoke else [8, 16]
    seconds = 1.0 if args.smoke else 10.0

    b.ensure_host()
    reader, writer = b.Api(), b.Api()
    reader.sign_in("bench_cluster_reader")
    writer.sign_in("bench_cluster_writer")
    b.on_host("seed", "bench_cluster_reader", str(300 if args.smoke else LIST_TASKS))

    rows = measure("both", levels, seconds, reader, writer)
    drained = b.lb_exec("drain", b.APP2_HOST_NAME, "--timeout", "30")
    try:
        rows += measure(f"{b.HOST_NAME} only", levels, seconds, reader, writer)
    finally:
        b.lb_exec("admit", b.APP2_HOST_NAME, "--timeout", "60")
    b.log(f"{b.APP2_HOST_NAME} drained ({drained.get('message', drained)}) and admitted again")

    update_row, updated = update_under_load(reader, smoke=args.smoke)
    update_rows = [{**update_row, "update": f"rolling, two app hosts through HAProxy: {update_row['update']}"}]
    if baseline := single_host_update():
        update_rows.append(baseline)
    failures = sum(r["errors"] + r["non_2xx"] for r in rows)

    b.emit("cluster_load", "A cluster through HAProxy", [
        {"title": "Throughput and latency through the lb: both app hosts in service, then one drained",
         "columns": list(rows[0]), "rows": rows,
         "note": (f"Every host of the cluster and the load generator share this machine's {os.cpu_count()} "
                  "cores, so a second app host cannot add throughput here: the figures show what HAProxy costs "
                  "and that it spreads the load (answered by), not how the cluster scales on separate "
                  f"machines. Failed requests in all: {failures}.")},
        {"title": "update.yml under load (3 clients, one request each every 50 ms)",
         "columns": ["update", "update_yml_s", "requests", "during_update", "failed", "failures_by_status",
                     "longest_gap_s", "slowest_request_s", "goal", "verdict"],
         "rows": update_rows,
         "note": ("The rolling update drains each app host in HAProxy before its service restarts and admits it "
                  "once HAProxy's own check sees it healthy, so requests go to the other host meanwhile; on one "
                  "host they wait in the socket systemd holds instead (the gap).")},
    ], smoke=args.smoke, method={
        "hosts": f"lb {b.LB_HOST_NAME}, app {b.HOST_NAME} and {b.APP2_HOST_NAME}, db {b.DB_HOST_NAME} (PostgreSQL)",
        "load": "closed loop through the lb's published port: GET /api/tasks (20 per page) and POST /api/tasks",
        "drain": "task-manager-lb drain on the lb host, as update.yml does; admit waits for HAProxy's check",
        "update": "update.yml to a new build of the same code, one host at a time"})
    return 0 if updated and not failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
