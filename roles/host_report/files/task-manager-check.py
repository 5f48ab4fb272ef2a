#!/usr/bin/python3
"""task-manager-check: the manual's daily, weekly and monthly checks and section 9's
limits, measured on the host and printed as one JSON document.

  task-manager-check [--max-response-ms 200] [--max-db-mb 100] [--max-memory-mb 512]
                     [--max-cpu-percent 50] [--max-disk-percent 80] [--max-backup-age-hours 26]
                     [--max-errors N] [--max-failed-logins N] [--no-record]

Counts from the logs (errors, failed logins, request times) are since the previous
check, whose time is kept in the state file; --no-record leaves it as it is.
measure() gathers the figures (the service's own files read as the service user),
judge() holds them to the limits; the document is both.

Installed as /usr/local/sbin/task-manager-check; roles/host_report also runs this file as it is.
Paths from the environment: TASK_MANAGER_LAYOUT (the host's layout, written by the base
role: /etc/task-manager/layout.json), TASK_MANAGER_CHECK_STATE (the time of the previous
check, /var/lib/task-manager/check-state.json), TASK_MANAGER_CHECK_FACTS (the release
history; by default the layout's facts_file).
Exit status 0 whatever the findings (the report says which limits are broken), 1 when
the check itself could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

# Where it reads and keeps things; the environment may point elsewhere (the tests do).
DEFAULT_LAYOUT = "/etc/task-manager/layout.json"  # where things are: written by the base role
DEFAULT_STATE = "/var/lib/task-manager/check-state.json"
DEFAULT_FACTS = "/etc/ansible/facts.d/task_manager.fact"  # the release history the playbooks keep
# Absolute path: root runs this command, so PATH decides nothing. A module constant, so the
# tests can point it at a stand-in.
SYSTEMCTL = "/usr/bin/systemctl"
NEVER = "0000-00-00 00:00:00"  # the "previous check" before the first one: every line counts
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")
# Whole lines only, in the formats the app writes (task_manager/requestlog.py and
# logging_setup.py), so text a client managed to get into a line never counts: the app
# escapes line breaks, quotes and backslashes in every field it logs.
#   access.log:        <asctime> <client> "<METHOD> <path>" <status> <ms>ms <size>
ACCESS_LINE = re.compile(
    r'(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (?P<client>[0-9A-Fa-f.:]+|-) '
    r'"(?P<method>[^"\s]+) (?P<path>[^"]*)" (?P<status>\d{3}) (?P<ms>\d+\.\d)ms (?P<size>\d+|-)'
)
#   task_manager.log:  <asctime> <LEVEL> [<pid>] <logger>: <message>
APP_LINE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) \[\d+\] (?P<logger>[\w.]+): "
# The warning auth.py writes for a wrong password (and for tries made while slowed down).
FAILED_LOGIN = re.compile(APP_LINE + r"認証失敗")
ERROR_LINE = re.compile(APP_LINE)
# Sign-in and registration hash passwords with scrypt on purpose (about 0.1-0.2 s):
# they are left out of the response-time figure, which is about the task API.
SLOW_BY_DESIGN = ("/api/auth/login", "/api/auth/register", "/api/auth/password")


class CheckError(Exception):
    """The check itself could not run: exit status 1."""


def config_file() -> Path:
    return Path(os.environ.get("TASK_MANAGER_LAYOUT", DEFAULT_LAYOUT))


def state_file() -> Path:
    return Path(os.environ.get("TASK_MANAGER_CHECK_STATE", DEFAULT_STATE))


def facts_file(config: dict) -> Path:
    return Path(os.environ.get("TASK_MANAGER_CHECK_FACTS") or config.get("facts_file") or DEFAULT_FACTS)


def since_lines(path: Path, since: str):
    """Lines of a log (and its newest rotated file) stamped at or after `since`."""
    files = [*sorted(path.parent.glob(path.name + "-*"))[-1:], path]
    for file in files:
        if file.suffix == ".gz" or not file.exists():
            continue
        with file.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                match = STAMP.match(line)
                if match and match.group(1) >= since:
                    yield line


def request_durations(lines) -> list[float]:
    """Milliseconds of each request in access-log lines, sign-in and registration aside."""
    durations = []
    for line in lines:
        match = ACCESS_LINE.fullmatch(line.rstrip("\n"))
        if match and match["path"].split("?", 1)[0] not in SLOW_BY_DESIGN:
            durations.append(float(match["ms"]))
    return durations


def failed_logins(lines) -> int:
    """Failed sign-ins: only the app's own warning line, from its own logger."""
    return sum(
        1 for line in lines
        if (m := FAILED_LOGIN.match(line)) and m["level"] == "WARNING" and m["logger"] == "task_manager"
    )


def error_lines(lines) -> int:
    return sum(1 for line in lines if (m := ERROR_LINE.match(line)) and m["level"] in ("ERROR", "CRITICAL"))


def systemd(units: list[str]) -> dict:
    props = "ActiveState,SubState,UnitFileState,NRestarts,MainPID,MemoryCurrent"
    # S603: a fixed absolute program and an argument list, no shell.
    out = subprocess.run([SYSTEMCTL, "show", *units, "-p", props], capture_output=True, text=True, check=False)  # noqa: S603
    result, blocks = {}, out.stdout.strip().split("\n\n")
    for unit, block in zip(units, blocks, strict=False):
        result[unit] = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
    return result


def process_tree(main_pid: int) -> list[int]:
    pids, children = [main_pid], {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    for pid in pids:
        pids.extend(children.get(pid, []))
    return pids


def memory_bytes(pids: list[int]) -> int:
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total


def cpu_percent(pids: list[int], seconds: float = 1.0) -> float:
    def ticks() -> int:
        total = 0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except (OSError, IndexError, ValueError):
                continue
        return total

    start = ticks()
    time.sleep(seconds)
    used = (ticks() - start) / os.sysconf("SC_CLK_TCK")
    return round(100 * used / seconds / (os.cpu_count() or 1), 1)


def service_files(config: dict, since: str) -> dict:
    """What the service's own files say: request times, errors and failed sign-ins from
    its logs, the database's size, the newest backup. They belong to the service user,
    so root reads them as that user: a link planted among them reads nothing more."""
    logs = Path(config["log_dir"])
    database = Path(config["database"])
    backups = [p for p in Path(config["backup_dir"]).glob("*/backup_*.json") if p.parent.name != "safety"]
    return {
        "durations": request_durations(since_lines(logs / "access.log", since)),
        "errors": error_lines(since_lines(logs / "errors.log", since)),
        "failed_logins": failed_logins(since_lines(logs / "task_manager.log", since)),
        "db_bytes": sum(p.stat().st_size for p in (database, Path(f"{database}-wal"), Path(f"{database}-shm"))
                        if p.exists()),
        "newest_backup": max((p.stat().st_mtime for p in backups), default=None),
    }


def as_service_user(config: dict, func, *args) -> dict:
    """func(*args) in a child that has dropped to the service user; its JSON result."""
    if os.geteuid() != 0:
        return func(*args)
    import grp  # noqa: PLC0415  (Unix-only, needed only here)
    import pwd  # noqa: PLC0415

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop, measure, answer, and never return into the parent's code
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(grp.getgrnam(config["group"]).gr_gid)
            os.setuid(pwd.getpwnam(config["user"]).pw_uid)
            with os.fdopen(write_end, "w", encoding="utf-8") as out:
                json.dump(func(*args), out)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, encoding="utf-8") as answer:
        text = answer.read()
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise OSError(f"measuring the service's files as {config['user']} failed")
    return json.loads(text)


def health(url: str) -> dict:
    times, body, status = [], {}, None
    # The host asks itself over loopback: its certificate names the public domain.
    context = ssl._create_unverified_context() if re.match(r"https://(127\.|localhost[:/])", url) else None  # noqa: S323
    for _ in range(3):
        started = time.perf_counter()
        try:
            # S310: the loopback URL comes from the role's own settings.
            with urllib.request.urlopen(url, timeout=5, context=context) as response:  # noqa: S310
                status, body = response.status, json.load(response)
        except Exception as exc:  # any failure is the finding
            status, body = getattr(exc, "code", None), {"error": type(exc).__name__}
        if not isinstance(body, dict):
            body = {"error": "not a JSON object"}
        times.append((time.perf_counter() - started) * 1000)
    return {"url": url, "status": status, "ok": status == 200 and body.get("status") == "OK",
            "ms": round(statistics.median(times), 1), "release": body.get("release"), "version": body.get("version")}


def read_json(path: Path) -> dict:
    """A JSON object from a file, or {} when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_config() -> dict:
    path = config_file()
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckError(f"cannot read {path}: {exc}") from exc


def service_state(config: dict) -> tuple[dict, list[int], int]:
    """The units' systemd state, the service's process tree and its memory in bytes."""
    service = config.get("service", "task-manager")
    units = systemd([f"{service}.service", f"{service}.socket", "nginx.service", "cron.service"])
    main_pid = int(units[f"{service}.service"].get("MainPID", "0") or 0)
    pids = process_tree(main_pid) if main_pid else []
    memory = units[f"{service}.service"].get("MemoryCurrent", "")
    return units, pids, int(memory) if memory.isdigit() else memory_bytes(pids)


def p95(durations: list[float]) -> float | None:
    if len(durations) >= 2:
        return round(statistics.quantiles(durations, n=20)[-1], 1)
    return durations[0] if durations else None


def measure(config: dict, args: argparse.Namespace) -> dict:
    """Every figure the check reports, measured and nothing judged: the report without
    its limits and breaches. OSError or ValueError when the check itself cannot run."""
    now = datetime.now()
    since = read_json(state_file()).get("last_check", NEVER)
    if not isinstance(since, str):
        since = NEVER
    units, pids, memory = service_state(config)
    files = as_service_user(config, service_files, config, since)
    durations = files["durations"]
    disk = shutil.disk_usage(Path(config["database"]).parent)
    # Backups often live on a disk of their own; a full one stops the nightly backup.
    backup_dir = Path(config["backup_dir"])
    backup_disk = shutil.disk_usage(backup_dir) if backup_dir.is_dir() else disk
    newest = files["newest_backup"]
    facts = read_json(facts_file(config))
    return {
        "checked_at": now.strftime("%Y-%m-%d %H:%M:%S"),
        "since": None if since.startswith("0000") else since,
        "units": {u: {k: v.get(k) for k in ("ActiveState", "UnitFileState", "NRestarts")} for u, v in units.items()},
        "health": [health(args.api_url), health(args.web_url)],
        "requests": len(durations),
        "request_ms_p95": p95(durations),
        "errors": files["errors"],
        "failed_logins": files["failed_logins"],
        "database_mb": round(files["db_bytes"] / 1048576, 2),
        "memory_mb": round(memory / 1048576, 1),
        "cpu_percent": cpu_percent(pids) if pids else None,
        "disk_percent": round(100 * disk.used / disk.total, 1),
        "disk_free_mb": round(disk.free / 1048576),
        "backup_disk_percent": round(100 * backup_disk.used / backup_disk.total, 1),
        "backup_disk_free_mb": round(backup_disk.free / 1048576),
        "newest_backup_age_hours": round((time.time() - newest) / 3600, 2) if newest else None,
        "release": facts.get("current"), "version": facts.get("version"),
        "history": facts.get("history", [])[:5],
    }


def limits_from(args: argparse.Namespace) -> dict:
    return {
        "response_ms": args.max_response_ms, "database_mb": args.max_db_mb, "memory_mb": args.max_memory_mb,
        "cpu_percent": args.max_cpu_percent, "disk_percent": args.max_disk_percent,
        "backup_age_hours": args.max_backup_age_hours, "errors": args.max_errors,
        "failed_logins": args.max_failed_logins,
    }


# Report figure, the limit it is held to, and how a breach reads.
FIGURE_LIMITS = (
    ("request_ms_p95", "response_ms", "p95 request time since the last check {} ms"),
    ("database_mb", "database_mb", "database is {} MB"),
    ("memory_mb", "memory_mb", "service memory is {} MB"),
    ("cpu_percent", "cpu_percent", "service CPU is {} %"),
    ("disk_percent", "disk_percent", "disk is {} % used"),
    ("backup_disk_percent", "disk_percent", "backup disk is {} % used"),
    ("errors", "errors", "{} errors in errors.log since the last check"),
    ("failed_logins", "failed_logins", "{} failed logins since the last check"),
)


def judge(report: dict, limits: dict) -> list[str]:
    """The limits a measured report breaks, as sentences; [] when it keeps them all.
    A limit of None is not checked; a figure of None (not measured) breaks nothing."""
    breaches = [f"{unit} is {info['ActiveState']}" for unit, info in report["units"].items()
                if info["ActiveState"] != "active"]
    for item in report["health"]:
        if not item["ok"]:
            breaches.append(f"{item['url']} answered {item['status']}")
        elif item["ms"] > limits["response_ms"]:
            breaches.append(f"{item['url']} took {item['ms']} ms (limit {limits['response_ms']:g})")
    for key, limit, text in FIGURE_LIMITS:
        if limits[limit] is not None and report[key] is not None and report[key] > limits[limit]:
            breaches.append(f"{text.format(report[key])} (limit {limits[limit]:g})")
    age = report["newest_backup_age_hours"]
    if age is None:
        breaches.append("there is no backup")
    elif age > limits["backup_age_hours"]:
        breaches.append(f"newest backup is {age} h old (limit {limits['backup_age_hours']:g})")
    return breaches


def record(report: dict) -> None:
    """Keep the time of this check: the next one counts the logs from here."""
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"last_check": report["checked_at"]}) + "\n", encoding="utf-8")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="task-manager-check")
    parser.add_argument("--api-url", default="http://127.0.0.1:5000/health")
    parser.add_argument("--web-url", default="http://127.0.0.1:8080/health")
    parser.add_argument("--max-response-ms", type=float, default=200)
    parser.add_argument("--max-db-mb", type=float, default=100)
    parser.add_argument("--max-memory-mb", type=float, default=512)
    parser.add_argument("--max-cpu-percent", type=float, default=50)
    parser.add_argument("--max-disk-percent", type=float, default=80)
    parser.add_argument("--max-backup-age-hours", type=float, default=26)
    parser.add_argument("--max-errors", type=int, default=None)
    parser.add_argument("--max-failed-logins", type=int, default=None)
    parser.add_argument("--no-record", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config()
        report = measure(config, args)
    except (CheckError, OSError, ValueError) as exc:
        print(f"task-manager-check: {exc}", file=sys.stderr)
        return 1
    limits = limits_from(args)
    report["limits"] = limits
    report["breaches"] = judge(report, limits)
    if not args.no_record:
        record(report)
    print(json.dumps(report, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
