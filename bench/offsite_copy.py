#!/usr/bin/env python3
"""Off-host copies: a 100 MB database copied with restic (first and incremental), the
host then lost and rebuilt from the copies alone, and the RPO the schedule gives.

Two hosts on a network of their own: the app host on SQLite, which takes the backups,
and a backup host (the inventory's backup group) holding its restic repository behind an
SFTP-only account, both deployed with the real deploy.yml.
1. The database is grown to 100 MB (tasks with 1 KB descriptions); a daily set is taken
   and `task-manager-offsite copy` sends it: the first copy, every byte new to the
   repository. Then 1,000 tasks more, another set, another copy: the incremental one.
2. The app host is destroyed with its disk and every local set, a bare host is made
   under the same name, and the operator's two commands run: deploy.yml, then
   restore.yml -e backup=latest -e from=offsite. Each is timed; the tasks are counted.
3. The RPO: from the cron files the host was given, the longest time a lost host's
   writes can have waited for a copy, over five weeks of the schedule, plus the
   measured time of a set and its copy; for the default (no hourly copy) and with
   offsite_backup_hourly: true.
  BENCH_HOST=.. BENCH_BACKUP_HOST=.. python bench/offsite_copy.py [--smoke]
"""

import datetime as dt
import json
import time

import benchlib as b

GOAL_DB_MB = 100
ACCOUNT = "bench_offsite"
OFFSITE = "/usr/local/sbin/task-manager-offsite"
BACKUP = "/usr/local/sbin/task-manager-backup"
CRON_FILES = ["/etc/cron.d/task-manager-backup", "/etc/cron.d/task-manager-offsite"]
SIMULATED_DAYS = 35  # five weeks hold every weekly line and a first of the month


def timed(*argv: str) -> tuple[float, dict]:
    started = time.perf_counter()
    answer = b.host_exec(*argv)
    return round(time.perf_counter() - started, 1), json.loads(answer.stdout)


def copy_row(step: str, db_mb: float, set_seconds: float, copy_seconds: float, copied: dict) -> dict:
    added = sum(c["bytes_added"] or 0 for c in copied["copied"])
    return {"copy": step, "database_mb": db_mb, "sets_copied": len(copied["copied"]),
            "backup_s": set_seconds, "copy_s": copy_seconds, "added_to_repository_mb": round(added / 1048576, 1)}


# ---------------------------------------------------------------------------- cron


def _field(spec: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in spec.split(","):
        base, _, step = part.partition("/")
        start, end = (low, high) if base == "*" else (int(base.split("-")[0]), int(base.split("-")[-1]))
        values.update(range(start, end + 1, int(step or 1)))
    return values


def cron_lines(text: str) -> list[dict]:
    """The schedule lines of /etc/cron.d files: when each runs, and what it does to the sets."""
    lines = []
    for line in text.splitlines():
        fields = line.split(None, 6)
        if not line.strip() or line.lstrip().startswith("#") or "=" in fields[0] or len(fields) < 7:
            continue
        minute, hour, day, month, weekday, _user, command = fields
        creates = f"{BACKUP} create" in command
        copies = f"{OFFSITE} copy" in command
        if not (creates or copies):
            continue  # prune, forget, check: they make no set and copy none
        lines.append({"minute": _field(minute, 0, 59), "hour": _field(hour, 0, 23),
                      "day": _field(day, 1, 31), "any_day": day == "*", "month": _field(month, 1, 12),
                      "weekday": {w % 7 for w in _field(weekday, 0, 7)}, "any_weekday": weekday == "*",
                      "creates": creates, "copies": copies, "hourly": "--kind hourly" in command})
    return lines


def _due(line: dict, t: dt.datetime) -> bool:
    if t.minute not in line["minute"] or t.hour not in line["hour"] or t.month not in line["month"]:
        return False
    day_ok, weekday_ok = t.day in line["day"], (t.isoweekday() % 7) in line["weekday"]
    if line["any_day"] or line["any_weekday"]:
        return day_ok and weekday_ok
    return day_ok or weekday_ok  # cron: either, when both are restricted


def worst_rpo_minutes(lines: list[dict]) -> int:
    """The longest a write can wait before a copy holds it, in minutes of the schedule.

    A copy takes every set made before it starts (a set made in the same minute by another
    line is left to the next copy: cron starts both at once); the hourly line makes its set
    and then copies it. Lost just before a copy ends, the host takes every write since the
    newest set a copy already holds.
    """
    start = dt.datetime(2026, 1, 5)  # a Monday; the first week only fills the schedule
    newest_set = newest_copied = None
    worst = 0
    for minute in range(SIMULATED_DAYS * 24 * 60):
        t = start + dt.timedelta(minutes=minute)
        due = [line for line in lines if _due(line, t)]
        if any(line["copies"] for line in due):
            if newest_copied is not None and minute >= 7 * 24 * 60:
                worst = max(worst, int((t - newest_copied).total_seconds() // 60))
            newest_copied = t if any(line["creates"] and line["copies"] for line in due) else newest_set
        if any(line["creates"] for line in due):
            newest_set = t
    return worst


def rpo_rows(cron_text: str, set_seconds: float, copy_seconds: float) -> list[dict]:
    lines = cron_lines(cron_text)
    rows = []
    for label, chosen in (("default schedule (offsite_backup_hourly: false)", [x for x in lines if not x["hourly"]]),
                          ("offsite_backup_hourly: true", lines)):
        minutes = worst_rpo_minutes(chosen)
        rows.append({"schedule": label, "sets made (per day)": _per_day(chosen, creates=True),
                     "copy runs (per day)": _per_day(chosen, creates=False),
                     "worst RPO (schedule)": f"{minutes // 60} h {minutes % 60:02d} min",
                     "plus a set and its copy (measured)": f"{round(set_seconds + copy_seconds)} s"})
    return rows


def _per_day(lines: list[dict], *, creates: bool) -> int:
    day = dt.datetime(2026, 1, 6)  # a Tuesday, the second of the month: no weekly or monthly line
    return sum(1 for m in range(24 * 60) for line in lines
               if (line["creates"] if creates else line["copies"]) and _due(line, day + dt.timedelta(minutes=m)))


# ---------------------------------------------------------------------------- the run


def main() -> int:
    args = b.arguments(__doc__)
    if not b.BACKUP_HOST_NAME or b.DB_HOST_NAME:
        raise SystemExit("offsite_copy.py needs BENCH_BACKUP_HOST (and no BENCH_DB_HOST): make bench-offsite sets it")
    grow_mb = 8 if args.smoke else GOAL_DB_MB
    more_tasks = 100 if args.smoke else 1000

    b.ensure_host()
    b.Api().sign_in(ACCOUNT)
    grown = b.on_host("grow", ACCOUNT, str(grow_mb))
    db_mb = round(grown["database_bytes"] / 1048576, 1)
    b.log(f"database grown to {db_mb} MB ({grown['tasks']} tasks)")
    b.host_exec(OFFSITE, "copy")  # whatever the deploy left uncopied: the figures are of one set each

    rows = []
    set_s, _ = timed(BACKUP, "create", "--kind", "daily", "--label", "bench")
    copy_s, copied = timed(OFFSITE, "copy")
    rows.append(copy_row("first: every byte new to the repository", db_mb, set_s, copy_s, copied))

    have = b.on_host("count", ACCOUNT)["tasks"]
    added = b.on_host("seed", ACCOUNT, str(have + more_tasks))
    set_s, _ = timed(BACKUP, "create", "--kind", "hourly", "--label", "bench")
    copy_s, copied = timed(OFFSITE, "copy")
    rows.append(copy_row(f"incremental: {added['added']} tasks more", round(added["database_bytes"] / 1048576, 1),
                         set_s, copy_s, copied))
    repository_mb = round(int(b.podman("exec", b.BACKUP_HOST_NAME, "du", "-sb", "/srv/task-manager-offsite")
                              .stdout.split()[0]) / 1048576, 1)
    cron_text = b.host_exec("cat", *CRON_FILES).stdout
    rpo = rpo_rows(cron_text, set_s, copy_s)

    release = b.Api().json("GET", "/health")[1]["release"]
    copied_tasks = b.on_host("count", ACCOUNT)["tasks"]
    b.log(f"losing {b.HOST_NAME} ({copied_tasks} tasks of {ACCOUNT} in the last copy, release {release})")
    lost_at = time.perf_counter()
    b.replace_app_host()
    deploy = b.playbook("deploy.yml", "-e", f"version={release}")
    restore = b.playbook("restore.yml", "-e", "backup=latest", "-e", "from=offsite")
    serving_s = round(time.perf_counter() - lost_at, 1)
    b.install_helper()
    back = b.on_host("count", ACCOUNT)["tasks"]
    healthy = b.healthy()
    restore_rows = [{"database_mb": rows[-1]["database_mb"], "bare host made_s": round(
        serving_s - deploy.seconds - restore.seconds, 1), "deploy.yml_s": deploy.seconds,
        "restore.yml from=offsite_s": restore.seconds, "bare host to serving_s": serving_s,
        "tasks in the copy": copied_tasks, "tasks back": back, "healthy": healthy,
        "verdict": b.verdict(back == copied_tasks and healthy)}]

    b.emit("offsite_copy", "Off-host copies (restic over SFTP) and a host rebuilt from them", [
        {"title": "A copy of the database off the host", "columns": list(rows[0]), "rows": rows,
         "note": (f"backup_s: the verified local set (online copy, integrity_check, SQL dump loaded back); copy_s: "
                  f"task-manager-offsite copy, restic over SFTP to the backup host, encrypted and deduplicated. "
                  f"The repository holds {repository_mb} MB after both.")},
        {"title": "The host lost: a bare one under its name, deploy.yml, then restore.yml -e from=offsite",
         "columns": list(restore_rows[0]), "rows": restore_rows,
         "note": "Timed as the operator waits; the release is built on this machine again (wheels from pip's cache)."},
        {"title": "RPO: the writes a lost host can take with it", "columns": list(rpo[0]), "rows": rpo,
         "note": ("Read from the cron files deploy.yml wrote on the host, over five weeks of the schedule: the "
                  "longest time from the newest set a copy holds to the moment the next copy ends.")},
    ], smoke=args.smoke, method={
        "hosts": f"app {b.HOST_NAME} (SQLite), backup {b.BACKUP_HOST_NAME} (restic repository over SFTP)",
        "database": "grown with tasks of 1 KB descriptions, then 1,000 tasks more for the incremental copy",
        "restore": "the app host destroyed with every local set; deploy.yml on a bare host, then restore.yml"})
    return 0 if back == copied_tasks and healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())
