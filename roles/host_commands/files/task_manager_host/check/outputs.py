"""What the check writes besides the document it prints: the figures and their limits for
node_exporter's textfile collector (with the off-host copies' figures relayed), the time of
this check in the state file, and the daily timer's whole report. Each written whole, never
through a link, and as root only into a directory no other account can write
(common.write_whole)."""

from __future__ import annotations

import json
import os
import re
import stat
import time
from pathlib import Path

from task_manager_host import common
from task_manager_host.check.layout import state_file
from task_manager_host.check.limits import DATABASE_FIGURE_LIMITS, FIGURE_LIMITS


def record(report: dict, by: str) -> None:
    """Keep the time of this check, and whose it was: the next one counts the logs from here."""
    path = state_file()
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    common.write_whole(path, json.dumps({"last_check": report["checked_at"], "by": by}) + "\n", 0o644)


# The daily timer's reports: one file per run, named by its time, the newest KEPT_REPORTS
# kept. An operator's check later in the day counts only from the timer's run; the night's
# counts and findings stay readable here (check.yml shows the newest).
KEPT_REPORTS = 31
REPORT_NAME = re.compile(r"\d{4}-\d\d-\d\dT\d{6}\.json")
DAILY_SUMMARY = ("checked_at", "since", "requests", "errors", "failed_logins", "breaches")


def kept_reports(directory: Path) -> list[str]:
    """The kept reports' names, oldest first (their names are their times); a person's own
    files beside them are not reports."""
    if not directory.is_dir():
        return []
    return sorted(path.name for path in directory.glob("*.json") if REPORT_NAME.fullmatch(path.name))


def newest_daily(directory: Path) -> dict | None:
    """What the newest kept report says, with its file; None when the timer has kept none."""
    for name in reversed(kept_reports(directory)):
        kept = common.read_json_or_empty(directory / name)
        if kept:
            return {**{key: kept.get(key) for key in DAILY_SUMMARY}, "file": str(directory / name)}
    return None


def keep_report(report: dict, directory: Path) -> Path:
    """The whole report, kept for a person to read later; the oldest beyond KEPT_REPORTS go."""
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    path = directory / (report["checked_at"].replace(" ", "T").replace(":", "") + ".json")
    common.write_whole(path, json.dumps(report, ensure_ascii=False, indent=1) + "\n", 0o644)
    for name in kept_reports(directory)[:-KEPT_REPORTS]:
        (directory / name).unlink(missing_ok=True)
    return path


# For Prometheus: each figure of the report that has a limit, with the limit it is held
# to, so that an alert compares the two and a limit changed in the inventory moves the alert.
# The off-host copies' lines, each as that command writes it: anything else (another
# family, a malformed line that would make node_exporter drop this whole file) is left out.
RELAYED_LINE = re.compile(
    r"# (HELP|TYPE) task_manager_offsite_[a-z_]+ [ -~]{1,200}"
    r'|task_manager_offsite_[a-z_]+\{what="(copy|check)"\} -?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?')
RELAYED_MAX_BYTES = 16384


def relayed(path: str | None) -> list[str]:
    """The off-host copies' figures, which their account writes in its own directory (it may
    write nowhere else): its own well-formed lines, and nothing else it might say."""
    if not path:
        return []
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return []
            text = handle.read(RELAYED_MAX_BYTES + 1).decode("utf-8")
    except (OSError, ValueError):
        return []
    if len(text) > RELAYED_MAX_BYTES:
        return []
    return [line for line in text.splitlines() if RELAYED_LINE.fullmatch(line)]


def as_float(value: float | None) -> float | None:
    # Counts too are written as %g, as the file always had them (gauges writes an int whole).
    return None if value is None else float(value)


def textfile(report: dict, relay: str | None = None) -> str:
    table = DATABASE_FIGURE_LIMITS if report.get("kind") == "database" else FIGURE_LIMITS
    rows = [(key, report.get(key), report["limits"].get(limit)) for key, limit, _ in table]
    rows.append(("newest_backup_age_hours", report.get("newest_backup_age_hours"),
                 None if report.get("database_checked_on") else report["limits"].get("backup_age_hours")))
    # A limit with no figure of the check's: the alert counts the API's own failed sign-ins.
    rows.append(("failed_logins_5m", None, report["limits"].get("failed_logins_5m")))
    lines = common.gauges("task_manager_check_figure", "A figure the on-host check measured",
                          [({"figure": key}, as_float(value)) for key, value, _ in rows])
    lines += common.gauges("task_manager_check_limit", "The limit the check holds the figure to",
                           [({"figure": key}, as_float(limit)) for key, _, limit in rows])
    lines += common.gauges("task_manager_check_breaches", "The limits the check found broken",
                           [({}, len(report["breaches"]))])
    # To the millisecond, which %g (gauges' float format) would round to 1.7e+09.
    lines += common.gauges("task_manager_check_timestamp_seconds", "When the check ran (Unix time)", [])
    lines.append(f"task_manager_check_timestamp_seconds {time.time():.3f}")
    return "\n".join(lines + relayed(relay)) + "\n"
