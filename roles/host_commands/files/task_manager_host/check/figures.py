"""The app host's measurements: its units, the service's processes (memory, CPU), the
counts from its logs since the previous check, /health, the disks, and, where the
database is kept here (SQLite), its size and the newest backup."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import ssl
import statistics
import time
import urllib.request
from datetime import datetime
from pathlib import Path

from task_manager_host import common
from task_manager_host.check import layout, logs, shared_figures


def process_tree(main_pid: int) -> list[int]:
    pids, children = [main_pid], {}
    for proc_stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = proc_stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(proc_stat.parent.name))
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
    its logs, the database's size, the newest backup (those two None on a host that does
    not hold the database). They belong to the service user, so root reads them as that
    user: a link planted among them reads nothing more."""
    log_dir = Path(config["log_dir"])
    database = Path(config["database"])
    here = layout.holds_database(config)
    return {
        "durations": logs.request_durations(logs.since_lines(log_dir / "access.log", since)),
        "errors": logs.error_lines(logs.since_lines(log_dir / "errors.log", since)),
        "failed_logins": logs.failed_logins(logs.since_lines(log_dir / "task_manager.log", since)),
        "db_bytes": sum(p.stat().st_size for p in (database, Path(f"{database}-wal"), Path(f"{database}-shm"))
                        if p.exists()) if here else None,
        "newest_backup": shared_figures.newest_backup(Path(config["backup_dir"])) if here else None,
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


def service_state(config: dict) -> tuple[dict, list[int], int]:
    """The units' systemd state, the service's process tree and its memory in bytes."""
    service = config.get("service", "task-manager")
    units = shared_figures.systemd([f"{service}.service", f"{service}.socket", "nginx.service", "cron.service"])
    main_pid = int(units[f"{service}.service"].get("MainPID", "0") or 0)
    pids = process_tree(main_pid) if main_pid else []
    memory = units[f"{service}.service"].get("MemoryCurrent", "")
    return units, pids, int(memory) if memory.isdigit() else memory_bytes(pids)


# A p95 of fewer requests is only the slowest of them: one cold request after a restart
# would break the manual's limit. It is reported, and judged from this many requests on.
P95_MIN_REQUESTS = 20


def p95(durations: list[float]) -> float | None:
    if len(durations) >= 2:
        return round(statistics.quantiles(durations, n=20)[-1], 1)
    return durations[0] if durations else None


def measure(config: dict, args: argparse.Namespace) -> dict:
    """Every figure the check reports, measured and nothing judged: the report without
    its limits and breaches. OSError or ValueError when the check itself cannot run."""
    now = datetime.now()
    state = common.read_json_or_empty(layout.state_file())
    since = state.get("last_check", logs.NEVER)
    if not isinstance(since, str):
        since = logs.NEVER
    units, pids, memory = service_state(config)
    files = as_service_user(config, service_files, config, since)
    durations = files["durations"]
    here = layout.holds_database(config)
    disk = shutil.disk_usage(Path(config["database"]).parent)
    # Backups often live on a disk of their own; a full one stops the nightly backup.
    # Where the database is elsewhere, so are its backups: their disk is measured there.
    backup_dir = Path(config["backup_dir"])
    backup_disk = (shutil.disk_usage(backup_dir) if backup_dir.is_dir() else disk) if here else None
    facts = common.read_json_or_empty(layout.facts_file(config))
    return {
        "checked_at": now.strftime("%Y-%m-%d %H:%M:%S"),
        "kind": "app",
        "since": None if since.startswith("0000") else since,
        # Whose time the counts run from: the daily timer's check, or one run by hand.
        "since_by": state.get("by") if isinstance(state.get("by"), str) and not since.startswith("0000") else None,
        "units": shared_figures.unit_states(units),
        "health": [health(args.api_url), health(args.web_url)],
        "requests": len(durations),
        "request_ms_p95": p95(durations),
        "request_ms_p95_judged": len(durations) >= P95_MIN_REQUESTS,
        "errors": files["errors"],
        "failed_logins": files["failed_logins"],
        "database_mb": shared_figures.megabytes(files["db_bytes"]),
        "memory_mb": shared_figures.megabytes(memory, 1),
        "cpu_percent": cpu_percent(pids) if pids else None,
        **shared_figures.disk_figures(disk, "disk"),
        **shared_figures.disk_figures(backup_disk, "backup_disk"),
        "newest_backup_age_hours": shared_figures.age_hours(files["newest_backup"]),
        "database_checked_on": None if here else config.get("db_host"),
        "release": facts.get("current"), "version": facts.get("version"),
        "history": facts.get("history", [])[:5],
    }
