"""The backups' schedule, as the backup role writes it in cron, and the age limit it sets
for the newest backup. Each line starts one kind's unit. The newest backup may be as old
as the longest gap between two runs, plus the time a run takes and a little slack;
without a schedule (cron turned off), the daily one's."""

from __future__ import annotations

import itertools
import os
import re
from datetime import datetime, timedelta
from pathlib import Path

from task_manager_host import paths

BACKUP_CRON_LINE = re.compile(r"^\s*(?P<spec>(\S+\s+){4}\S+)\s+\S+\s+.*task-manager-backup@(?P<kind>[a-z-]+)\.service")
BACKUP_SLACK_HOURS = 2
UNSCHEDULED_BACKUP_AGE_HOURS = 26
CRON_FIELDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def cron_values(field: str, low: int, high: int) -> set[int]:
    """One cron field's values: *, N, A-B, */S, A-B/S and lists of them."""
    values: set[int] = set()
    for part in field.split(","):
        span, _, step = part.partition("/")
        if span == "*":
            first, last = low, high
        elif "-" in span:
            first, last = (int(x) for x in span.split("-", 1))
        else:
            first = last = int(span)
        if not low <= first <= last <= high:
            raise ValueError(f"{part} is outside {low}-{high}")
        values |= set(range(first, last + 1, int(step) if step else 1))
    return values


def backup_schedule(cron_dir: Path) -> list[str]:
    """The five-field times of the cron lines that start a backup, in the project's cron files."""
    specs = []
    for path in sorted(cron_dir.glob("task-manager-*")):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        specs += [match.group("spec") for match in map(BACKUP_CRON_LINE.match, lines) if match]
    return specs


def longest_gap_hours(specs: list[str], start: datetime | None = None, days: int = 400) -> float | None:
    """The longest time between two runs of any of these cron times, over a year and a bit
    (every month length and weekday meet): None when they never run."""
    start = (start or datetime(2026, 1, 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    runs: list[datetime] = []
    for spec in specs:
        fields = spec.split()
        minutes, hours, days_of_month, months, weekdays = (
            cron_values(field, low, high) for field, (low, high) in zip(fields, CRON_FIELDS, strict=True))
        weekdays = {day % 7 for day in weekdays}
        # cron's rule: with both the day of the month and the weekday restricted, either runs it.
        either = fields[2] != "*" and fields[4] != "*"
        for offset in range(days):
            day = start + timedelta(days=offset)
            by_date, by_weekday = day.day in days_of_month, day.isoweekday() % 7 in weekdays
            if day.month in months and ((by_date or by_weekday) if either else (by_date and by_weekday)):
                runs += [day.replace(hour=h, minute=m) for h in sorted(hours) for m in sorted(minutes)]
    runs.sort()
    if not runs:
        return None
    gaps = [(later - earlier).total_seconds() / 3600 for earlier, later in itertools.pairwise(runs)]
    return round(max(gaps), 2) if gaps else None


def backup_age_limit(given: float | None, cron_dir: Path | None = None) -> float:
    """The limit the newest backup's age is held to: the one given, else the schedule's."""
    if given:
        return given
    cron_dir = cron_dir or Path(os.environ.get("TASK_MANAGER_CRON_DIR", paths.CRON_DIR))
    try:
        gap = longest_gap_hours(backup_schedule(cron_dir))
    except ValueError:
        gap = None
    return UNSCHEDULED_BACKUP_AGE_HOURS if gap is None else gap + BACKUP_SLACK_HOURS
