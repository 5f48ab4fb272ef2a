"""The command line of task-manager-check: its options, and main(), which measures the
host its layout names, judges the figures, keeps the time of the check, writes the
textfile and prints the document (see the package's docstring for the exit statuses)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from task_manager_host import common
from task_manager_host.check import database, figures, layout, limits, outputs

# Whose check the next one counts from (the state file says it; the report repeats it).
DAILY = "the daily check (task-manager-check.timer)"
BY_HAND = "a check run by hand (check.yml)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="task-manager-check")
    parser.add_argument("--api-url", default="http://127.0.0.1:5000/health")
    parser.add_argument("--web-url", default="http://127.0.0.1:8080/health")
    parser.add_argument("--max-response-ms", type=float, default=200)
    parser.add_argument("--max-db-mb", type=float, default=100)
    parser.add_argument("--max-memory-mb", type=float, default=512)
    parser.add_argument("--max-cpu-percent", type=float, default=50)
    parser.add_argument("--max-disk-percent", type=float, default=80)
    parser.add_argument("--max-backup-age-hours", type=float, default=None,
                        help="the newest backup's age limit; by default the backup schedule's longest gap + 2 h")
    parser.add_argument("--max-connections-percent", type=float, default=80)
    parser.add_argument("--max-errors", type=int, default=None)
    parser.add_argument("--max-failed-logins", type=int, default=None)
    parser.add_argument("--failed-login-burst", type=int, default=20,
                        help="failed sign-ins in 5 minutes that the monitoring alerts on (published, not judged here)")
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--keep-report", action="store_true",
                        help="keep the whole report in the reports folder (the daily timer's run)")
    parser.add_argument("--fail-on-breach", action="store_true",
                        help="exit 2 when a limit is broken (the daily timer's unit, whose failure is told)")
    parser.add_argument("--textfile", default=None,
                        help="also write the figures and their limits there, for node_exporter's textfile collector")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = layout.load_config()
        kind = layout.host_kind(config)
        report = database.measure_database(config) if kind == "database" else figures.measure(config, args)
    except (layout.CheckError, OSError, ValueError) as exc:
        print(f"task-manager-check: {exc}", file=sys.stderr)
        return 1
    held_to = limits.limits_from(args, kind)
    report["limits"] = held_to
    report["breaches"] = limits.judge(report, held_to)
    reports = layout.reports_dir()
    report["daily_report"] = outputs.newest_daily(reports)
    # The db host counts nothing from logs: there is no "since the last check" to keep.
    # common.write_whole refuses a directory another account can write with a CommandError.
    if kind == "app" and not args.no_record:
        try:
            outputs.record(report, DAILY if args.keep_report else BY_HAND)
        except (common.CommandError, OSError) as exc:
            print(f"task-manager-check: the time of this check not kept: {exc}", file=sys.stderr)
            return 1
    if args.keep_report:
        try:
            outputs.keep_report(report, reports)
        except (common.CommandError, OSError) as exc:
            print(f"task-manager-check: the report not kept in {reports}: {exc}", file=sys.stderr)
            return 1
    if args.textfile:
        try:
            common.write_whole(Path(args.textfile), outputs.textfile(report, config.get("offsite_metrics_file")), 0o644)
        except (common.CommandError, OSError) as exc:
            print(f"task-manager-check: figures not written to {args.textfile}: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(report, ensure_ascii=False))
    if args.fail_on_breach and report["breaches"]:
        print("task-manager-check: LIMITS BROKEN: " + "; ".join(report["breaches"]), file=sys.stderr)
        return 2
    return 0
