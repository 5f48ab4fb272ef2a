"""The limits a report is held to (the command line's, the backups' from their schedule),
the figures each limit applies to, and judge(), which names the breaches."""

from __future__ import annotations

import argparse

from task_manager_host.check import schedule


def limits_from(args: argparse.Namespace, kind: str = "app") -> dict:
    backup_age_hours = schedule.backup_age_limit(args.max_backup_age_hours)
    if kind == "database":
        return {"database_mb": args.max_db_mb, "connections_percent": args.max_connections_percent,
                "disk_percent": args.max_disk_percent, "backup_age_hours": backup_age_hours}
    return {
        "response_ms": args.max_response_ms, "database_mb": args.max_db_mb, "memory_mb": args.max_memory_mb,
        "cpu_percent": args.max_cpu_percent, "disk_percent": args.max_disk_percent,
        "backup_age_hours": backup_age_hours, "errors": args.max_errors,
        "failed_logins": args.max_failed_logins, "failed_logins_5m": args.failed_login_burst,
    }


# Report figure, the limit it is held to, and how a breach reads ({} the figure, {name}
# any other figure of the report).
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
DATABASE_FIGURE_LIMITS = (
    ("database_mb", "database_mb", "database is {} MB"),
    ("connections_percent", "connections_percent",
     "{} % of max_connections in use ({connections} of {max_connections})"),
    ("disk_percent", "disk_percent", "data directory's disk is {} % used"),
    ("backup_disk_percent", "disk_percent", "backup disk is {} % used"),
)


def judge(report: dict, limits: dict) -> list[str]:
    """The limits a measured report breaks, as sentences; [] when it keeps them all.
    A limit of None is not checked; a figure of None (not measured) breaks nothing,
    except a missing backup on the host that keeps the backups."""
    breaches = [f"{unit} is {info['ActiveState']}" for unit, info in report["units"].items()
                if info["ActiveState"] != "active"]
    if report.get("kind") == "database":
        if report["postgresql_error"]:
            breaches.append(f"PostgreSQL {report['postgresql_error']}")
        table = DATABASE_FIGURE_LIMITS
    else:
        breaches += health_breaches(report["health"], limits)
        table = FIGURE_LIMITS
        if not report["request_ms_p95_judged"]:
            report = {**report, "request_ms_p95": None}
    return breaches + figure_breaches(report, limits, table) + backup_breaches(report, limits)


def health_breaches(health: list[dict], limits: dict) -> list[str]:
    breaches = []
    for item in health:
        if not item["ok"]:
            breaches.append(f"{item['url']} answered {item['status']}")
        elif item["ms"] > limits["response_ms"]:
            breaches.append(f"{item['url']} took {item['ms']} ms (limit {limits['response_ms']:g})")
    return breaches


def figure_breaches(report: dict, limits: dict, table: tuple) -> list[str]:
    return [f"{text.format(report[key], **report)} (limit {limits[limit]:g})" for key, limit, text in table
            if limits[limit] is not None and report[key] is not None and report[key] > limits[limit]]


def backup_breaches(report: dict, limits: dict) -> list[str]:
    if report.get("database_checked_on"):
        return []  # the backups are kept, and checked, on the db host
    age = report["newest_backup_age_hours"]
    if age is None:
        return ["there is no backup"]
    if age > limits["backup_age_hours"]:
        return [f"newest backup is {age} h old (limit {limits['backup_age_hours']:g})"]
    return []
