#!/usr/bin/env python3
"""Fault drills on a deployed host, each timed or counted, printed as one table.

  - the service's main process killed (SIGKILL): time until /health answers again;
  - a gunicorn worker killed: requests failed meanwhile;
  - the database corrupted: recover.yml's duration and the tasks lost;
  - the backup file system nearly full: what check.yml and backup.yml do, and whether
    the service keeps serving;
  - malformed and hostile input to the API through nginx: the count of 5xx (must be 0).
  python bench/fault_drills.py [--smoke]
"""

import base64
import json
import re
import time

import benchlib as b


def wait_healthy(limit: float = 120) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        if b.healthy():
            return time.perf_counter() - started
        time.sleep(0.05)
    raise RuntimeError(f"not healthy after {limit} s")


def main_pid() -> int:
    return int(b.host_exec("systemctl", "show", "-p", "MainPID", "--value", "task-manager.service").stdout)


def drill_kill_master() -> dict:
    pid = main_pid()
    b.host_exec("kill", "-9", str(pid))
    time.sleep(0.05)
    seconds = wait_healthy()
    return {"drill": "gunicorn master killed (kill -9 MainPID)", "figure": f"healthy again after {seconds:.2f} s",
            "goal": "systemd restarts it (Restart=on-failure)", "verdict": b.verdict(main_pid() not in (0, pid))}


def drill_kill_worker(api: b.Api) -> dict:
    worker = b.host_exec("pgrep", "-P", str(main_pid())).stdout.split()[0]
    b.host_exec("kill", "-9", worker)
    failed = 0
    for _ in range(60):
        status = api.request("GET", "/api/tasks?per_page=5")[0]
        failed += status != 200
        time.sleep(0.05)
    return {"drill": "a gunicorn worker killed", "figure": f"{failed} of 60 requests failed over 3 s",
            "goal": "0 failed", "verdict": b.verdict(failed == 0)}


def drill_corrupt_database() -> dict:
    api = b.Api()
    api.sign_in("drill_data")
    for i in range(5):
        api.json("POST", "/api/tasks", {"title": f"before the backup {i}"})
    b.host_exec("/usr/local/sbin/task-manager-backup", "create", "--kind", "manual", "--label", "drill")
    for i in range(3):
        api.json("POST", "/api/tasks", {"title": f"after the backup {i}"})
    before = api.json("GET", "/api/tasks?per_page=100")[1]["total"]
    b.on_host("corrupt")
    run = b.playbook("recover.yml", check=False)
    after_api = b.Api()
    after_api.sign_in("drill_data")
    after = after_api.json("GET", "/api/tasks?per_page=100")[1]["total"]
    lost = before - after
    return {"drill": "database corrupted (first page overwritten)",
            "figure": f"recover.yml {run.seconds:.0f} s (rc={run.rc}); {lost} of {before} tasks lost "
                      f"(the ones written after the newest backup)",
            "goal": "recovered from the newest good backup; only writes after it lost",
            "verdict": b.verdict(run.rc == 0 and lost == 3 and b.healthy())}


def drill_disk_full(api: b.Api) -> list[dict]:
    size = b.on_host("dbsize")["file_bytes"]
    filled = b.on_host("fill", str(max(1.0, size / 1048576 / 2)))
    try:
        check = b.playbook("check.yml", check=False)
        backup = b.playbook("backup.yml", check=False)
        leftovers = b.host_exec("find", b.BACKUP_MOUNT, "-name", ".tmp-*").stdout.split()
        write = api.request("POST", "/api/tasks", {"title": "written with the backup disk full"})[0]
    finally:
        b.on_host("unfill")

    def said(run: b.PlaybookRun, needle: str) -> str:
        found = re.search(re.escape(needle) + r"[^\\\n\"']*", run.output)
        return found.group(0)[:220] if found else "(no message)"

    free_mb = filled["free_bytes"] / 1048576
    return [
        {"drill": f"backup disk {filled['used_percent']} % used ({free_mb:.1f} MB free): check.yml",
         "figure": f"rc={check.rc}: {said(check, 'backup disk is')}",
         "goal": "fails, naming the full disk",
         "verdict": b.verdict(check.rc != 0 and "backup disk is" in check.output)},
        {"drill": "backup disk nearly full: backup.yml",
         "figure": f"rc={backup.rc}: {said(backup, 'not enough space')}; partial files left: {len(leftovers)}",
         "goal": "refuses before writing, leaves nothing behind",
         "verdict": b.verdict(backup.rc != 0 and "not enough space" in backup.output and not leftovers)},
        {"drill": "backup disk nearly full: the API", "figure": f"a task write answered {write}",
         "goal": "keeps serving", "verdict": b.verdict(write == 201)},
    ]


def hostile_requests(token: str, other_task: int) -> list[tuple[str, str, bytes | None, dict]]:
    json_h = {"Content-Type": "application/json"}
    auth = {"Authorization": f"Bearer {token}"}
    aj = {**auth, **json_h}
    none_alg = (base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=") + b"."
                + base64.urlsafe_b64encode(b'{"sub":"1","type":"access"}').rstrip(b"=") + b".").decode()
    forged = token.rsplit(".", 1)[0] + ".c2lnbmF0dXJl"
    deep = b"[" * 100_000 + b"]" * 100_000
    cases = [
        ("POST", "/api/auth/login", b"not json", json_h),
        ("POST", "/api/auth/login", b"[]", json_h),
        ("POST", "/api/auth/login", b"null", json_h),
        ("POST", "/api/auth/login", b'{"username": 1, "password": []}', json_h),
        ("POST", "/api/auth/login", json.dumps({"username": "a" * 10_000, "password": "b"}).encode(), json_h),
        ("POST", "/api/auth/login", b'{"username": "a\\u0000b", "password": "x\\u0000"}', json_h),
        ("POST", "/api/auth/login", b'{"username": "\xff\xfe", "password": "x"}', json_h),
        ("POST", "/api/auth/login", b'{"username": "x", "password": "y"}', {"Content-Type": "text/plain"}),
        ("POST", "/api/auth/login", deep, json_h),
        ("POST", "/api/auth/register", b'{"username": "x", "password": "y", "admin": true}', json_h),
        ("POST", "/api/auth/register", b'{"username": "\' OR 1=1 --", "password": "long enough pw 1"}', json_h),
        ("POST", "/api/auth/register", b'{"username": "<script>", "password": "' + b"p" * 100_000 + b'"}', json_h),
        ("POST", "/api/tasks", b"{}", aj),
        ("POST", "/api/tasks", b'{"title": ""}', aj),
        ("POST", "/api/tasks", json.dumps({"title": "t" * 10_000}).encode(), aj),
        ("POST", "/api/tasks", b'{"title": "t", "priority": "urgent!!"}', aj),
        ("POST", "/api/tasks", b'{"title": "t", "due_date": "2024-13-45"}', aj),
        ("POST", "/api/tasks", b'{"title": "t", "due_date": 20240101}', aj),
        ("POST", "/api/tasks", b'{"title": "t", "status": "done"}', aj),
        ("POST", "/api/tasks", b'{"title": "t", "id": 1, "user_id": 1}', aj),
        ("POST", "/api/tasks", b'{"title": 1e999}', aj),
        ("POST", "/api/tasks", b'{"title": NaN}', aj),
        ("POST", "/api/tasks", b'{"title": "a", "title": "b"}', aj),
        ("POST", "/api/tasks", json.dumps({"title": "t", "description": "d" * 2_000_000}).encode(), aj),
        ("POST", "/api/tasks", b'{"title": "t", "description": "' + b"d" * 30_000_000 + b'"}', aj),
        ("POST", "/api/tasks", deep, aj),
        ("GET", "/api/tasks?page=-1", None, auth),
        ("GET", "/api/tasks?page=abc", None, auth),
        ("GET", "/api/tasks?page=99999999999999999999999", None, auth),
        ("GET", "/api/tasks?per_page=0", None, auth),
        ("GET", "/api/tasks?per_page=1000000", None, auth),
        ("GET", "/api/tasks?sort=;DROP%20TABLE%20tasks", None, auth),
        ("GET", "/api/tasks?sort=--created_at", None, auth),
        ("GET", "/api/tasks?status=bogus", None, auth),
        ("GET", "/api/tasks?q=%27%20OR%201=1%20--", None, auth),
        ("GET", "/api/tasks?q=" + "x" * 5_000, None, auth),
        ("GET", "/api/tasks?q=%ff%fe%00", None, auth),
        ("GET", "/api/tasks/99999999999999999999999999", None, auth),
        ("GET", "/api/tasks/-1", None, auth),
        ("GET", f"/api/tasks/{other_task}", None, auth),
        ("PATCH", f"/api/tasks/{other_task}", b'{"title": "mine now"}', aj),
        ("DELETE", f"/api/tasks/{other_task}", None, auth),
        ("PATCH", "/api/tasks/1", b"[1, 2]", aj),
        ("PUT", "/api/tasks", b"{}", aj),
        ("DELETE", "/api/auth/login", None, {}),
        ("GET", "/api/tasks", None, {"Authorization": "Bearer garbage"}),
        ("GET", "/api/tasks", None, {"Authorization": f"Bearer {none_alg}"}),
        ("GET", "/api/tasks", None, {"Authorization": f"Bearer {forged}"}),
        ("GET", "/api/tasks", None, {"Authorization": "Basic YWRtaW46YWRtaW4="}),
        ("GET", "/api/tasks", None, {"Authorization": "Bearer " + "a" * 6000}),
        ("POST", "/api/auth/refresh", None, auth),
        ("GET", "/api/auth/me", None, {"Cookie": "x=" + "c" * 20_000}),
        ("GET", "/api/../../etc/passwd", None, {}),
        ("GET", "/api/%2e%2e/%2e%2e/etc/passwd", None, {}),
        ("GET", "/../../etc/passwd", None, {}),
        ("GET", "/.git/config", None, {}),
        ("GET", "/api/tasks/%00", None, auth),
        ("GET", "/api/nowhere", None, {}),
        ("GET", "/health?<script>alert(1)</script>", None, {}),
        ("OPTIONS", "/api/tasks", None, {"Origin": "https://evil.example", "Access-Control-Request-Method": "DELETE"}),
        ("GET", "/api/tasks", None, {**auth, "X-Forwarded-For": "1.2.3.4, ' OR 1=1 --", "Host": "evil.example"}),
    ]
    return cases


def tracebacks_logged() -> int:
    found = b.host_exec("sh", "-c", "grep -c Traceback /opt/task-manager/shared/logs/errors.log || true").stdout
    return int(found.strip() or 0)


def drill_hostile(api: b.Api) -> dict:
    other = b.Api()
    other.sign_in("drill_other")
    other_task = other.json("POST", "/api/tasks", {"title": "someone else's"})[1]["id"]
    tracebacks_before = tracebacks_logged()
    statuses: dict[int, int] = {}
    server_errors = []
    for method, path, body, headers in hostile_requests(api.token, other_task):
        client = b.Api(timeout=60)
        try:
            status = client.request(method, path, raw=body, headers=headers)[0]
        except (OSError, ConnectionError) as exc:
            status = 0
            server_errors.append(f"{method} {path[:60]}: {type(exc).__name__}")
        finally:
            client.close()
        statuses[status] = statuses.get(status, 0) + 1
        if status >= 500:
            server_errors.append(f"{method} {path[:60]} -> {status}")
    tracebacks = tracebacks_logged() - tracebacks_before
    still_theirs = other.json("GET", f"/api/tasks/{other_task}")[1].get("title")
    count = sum(statuses.values())
    figure = (f"{count} requests: " + ", ".join(f"{k}x{v}" for k, v in sorted(statuses.items()))
              + f"; 5xx: {sum(v for k, v in statuses.items() if k >= 500)}; new tracebacks: {tracebacks}")
    if server_errors:
        figure += "; " + "; ".join(server_errors)
    return {"drill": "malformed and hostile input through nginx", "figure": figure,
            "goal": "0 5xx, 0 tracebacks, other users' data untouched",
            "verdict": b.verdict(not server_errors and tracebacks == 0 and still_theirs == "someone else's")}


def main() -> int:
    args = b.arguments(__doc__)
    b.ensure_host()
    api = b.Api()
    api.sign_in("drill_user")
    rows = [drill_kill_master()]
    api.close()
    rows.append(drill_kill_worker(api))
    rows.append(drill_hostile(api))
    rows += drill_disk_full(api)
    rows.append(drill_corrupt_database())
    b.emit("fault_drills", "Fault drills", [
        {"title": "Each fault injected on the bench host, then measured from outside through nginx",
         "columns": ["drill", "figure", "goal", "verdict"], "rows": rows},
    ], smoke=args.smoke, method={"host": "the deployed bench host", "traffic": "127.0.0.1 through nginx only"})
    return 0 if all(r["verdict"] == "met" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
