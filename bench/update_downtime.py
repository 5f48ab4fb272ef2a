#!/usr/bin/env python3
"""Update downtime: requests sent continuously while update.yml replaces the release.

Readers list tasks and a writer creates them, each every 50 ms, through nginx, from
before the update starts until after it ends. Counted: failed requests (an error or
any status other than 2xx), the longest gap between two answered requests, the
slowest request, and how long update.yml took.
  python bench/update_downtime.py [--smoke]
"""

import itertools
import threading
import time

import benchlib as b

PACE_SECONDS = 0.05
GOAL_ROLLBACK_S = 20  # issue 17: from the switch to the old release serving again
FAILED_TITLE = "update.yml to a release whose /health fails, under the same load"


class Prober(threading.Thread):
    def __init__(self, token: str, kind: str, stop: threading.Event):
        super().__init__(daemon=True)
        self.api = b.Api(timeout=60, token=token)
        self.kind, self.stop = kind, stop
        self.records: list[tuple[float, float, int | str]] = []

    def run(self):
        n = 0
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                if self.kind == "read":
                    status = self.api.request("GET", "/api/tasks?per_page=20")[0]
                else:
                    status = self.api.request("POST", "/api/tasks", {"title": f"written during the update {n}"})[0]
            except OSError as exc:
                status = type(exc).__name__
                self.api.close()
            self.records.append((started, time.perf_counter(), status))
            n += 1
            self.stop.wait(max(0.0, PACE_SECONDS - (time.perf_counter() - started)))


def update_under_load(api: b.Api, *, smoke: bool) -> tuple[dict, str]:
    """update.yml to a new release while the probers send; the row of figures and the
    release the API reports afterwards."""
    before = api.json("GET", "/health")[1]
    version = b.new_release()

    stop = threading.Event()
    probers = [Prober(api.token, kind, stop) for kind in ("read", "read", "write")]
    for p in probers:
        p.start()
    time.sleep(1 if smoke else 3)
    update_started = time.perf_counter()
    run = b.playbook("update.yml", "-e", f"version={version}")
    update_ended = time.perf_counter()
    time.sleep(1 if smoke else 3)
    stop.set()
    for p in probers:
        p.join()
    after = api.json("GET", "/health")[1]

    records = sorted(r for p in probers for r in p.records)
    ok = [r for r in records if isinstance(r[2], int) and 200 <= r[2] < 300]
    failed = [r for r in records if r not in ok]
    ends = sorted(r[1] for r in ok)
    gap = max((later - earlier for earlier, later in itertools.pairwise(ends)), default=0.0)
    slowest = max((r[1] - r[0] for r in records), default=0.0)
    failures: dict[str, int] = {}
    for r in failed:
        failures[str(r[2])] = failures.get(str(r[2]), 0) + 1
    during = [r for r in records if update_started <= r[0] <= update_ended]
    row = {
        "update": f"{before.get('release')} -> {after.get('release')}",
        "update_yml_s": run.seconds,
        "requests": len(records),
        "during_update": len(during),
        "failed": len(failed),
        "failures_by_status": failures or "-",
        "longest_gap_s": round(gap, 2),
        "slowest_request_s": round(slowest, 2),
        "goal": "0 failed",
        "verdict": b.verdict(not failed and after.get("release") == version),
    }
    return row, version if after.get("release") == version else ""


class HealthProber(threading.Thread):
    """/health every 50 ms through nginx: which release answered, and how."""

    def __init__(self, stop: threading.Event):
        super().__init__(daemon=True)
        self.api = b.Api(timeout=60)
        self.stop = stop
        self.records: list[tuple[float, int | str, str | None]] = []

    def run(self):
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                status, body = self.api.json("GET", "/health")
                release = body.get("release")
            except OSError as exc:
                status, release = type(exc).__name__, None
                self.api.close()
            self.records.append((time.perf_counter(), status, release))
            self.stop.wait(max(0.0, PACE_SECONDS - (time.perf_counter() - started)))


def failed_update_under_load(api: b.Api, *, smoke: bool) -> dict:
    """update.yml to a release whose /health answers 503, while the probers send: how long
    the switched-to release answered before the old one served again, and what failed."""
    before = api.json("GET", "/health")[1].get("release")
    broken = b.new_release(broken_health=True)
    stop = threading.Event()
    probers = [Prober(api.token, kind, stop) for kind in ("read", "read", "write")]
    health = HealthProber(stop)
    for p in (*probers, health):
        p.start()
    time.sleep(1 if smoke else 3)
    started = time.perf_counter()
    run = b.playbook("update.yml", "-e", f"version={broken}", check=False)
    time.sleep(1 if smoke else 3)
    stop.set()
    for p in (*probers, health):
        p.join()
    after = api.json("GET", "/health")[1].get("release")

    # The switch: the first answer that is not the old release's healthy one; back: the old
    # release's first healthy answer after it.
    switched = next((t for t, status, release in health.records
                     if t >= started and not (status == 200 and release == before)), None)
    back = next((t for t, status, release in health.records
                 if switched is not None and t > switched and status == 200 and release == before), None)
    window = round(back - switched, 2) if switched is not None and back is not None else None
    records = [r for p in probers for r in p.records]
    failed = [r for r in records if not (isinstance(r[2], int) and 200 <= r[2] < 300)]
    answered_by_broken = sum(1 for _t, _status, release in health.records if release == broken)
    ok = run.rc != 0 and after == before and window is not None and window <= GOAL_ROLLBACK_S and not failed
    return {
        "update": f"{before} -> {broken} (its /health answers 503)",
        "update_yml_s": run.seconds,
        "update_yml_rc": run.rc,
        "switch_to_old_serving_s": window if window is not None else "no switch seen",
        "health_answers_from_it": answered_by_broken,
        "requests": len(records),
        "failed": len(failed),
        "serving_after": after,
        "goal": f"rolled back, old release serving within {GOAL_ROLLBACK_S} s, 0 failed",
        "verdict": b.verdict(ok),
    }


def main() -> int:
    args = b.arguments(__doc__)
    b.ensure_host()
    api = b.Api()
    api.sign_in("bench_update")
    row, updated = update_under_load(api, smoke=args.smoke)
    rows = [row]
    failed_row = failed_update_under_load(api, smoke=args.smoke)
    b.emit("update_downtime", "Update downtime", [
        {"title": "Requests during update.yml (3 clients, one request each every 50 ms, through nginx)",
         "columns": list(rows[0]), "rows": rows,
         "note": ("The API's socket belongs to systemd: while gunicorn restarts, new connections wait in its "
                  "backlog, so an update shows as a gap (slow requests), not as errors. nginx retries once "
                  "when a kept-alive upstream connection closes under it (proxy_next_upstream).")},
        {"title": FAILED_TITLE, "columns": list(failed_row), "rows": [failed_row],
         "note": ("The window runs from the first /health answer (every 50 ms, through nginx) that is not the old "
                  "release's healthy one to the old release's next healthy answer: the switch, the health gate "
                  "seeing 503 from the release it expects, the switch back and the restart.")},
    ], smoke=args.smoke, method={"clients": "2 readers (GET /api/tasks?per_page=20), 1 writer (POST /api/tasks), "
                                 "and /health every 50 ms during the failing update",
                                 "pace_s": PACE_SECONDS, "connection": b.CONNECTION,
                                 "update": "update.yml to a new build of the same code "
                                 "(no migration; a verified backup is still taken first); then to a build whose "
                                 "/health answers 503"})
    return 0 if updated and failed_row["serving_after"] == failed_row["update"].split(" -> ")[0] else 1


if __name__ == "__main__":
    raise SystemExit(main())
