"""The commands (init, copy, forget, check, list, fetch, status, add-key, share), the command
line, and main: each command's answer in JSON on stdout, its failure on stderr and in the
journal, the exit status."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import stat
import sys
import syslog
from pathlib import Path

from task_manager_host import common, offsite
from task_manager_host.offsite.accounts import backup_account, become, in_child, run_as
from task_manager_host.offsite.fetch import clear_spool, fetch_to_spool, place
from task_manager_host.offsite.restic import TAG, restic, snapshots, to_forget
from task_manager_host.offsite.sets import DRILL_DIR, local_sets, set_paths
from task_manager_host.offsite.settings import KEEPER_COMMANDS, NothingToFetch, OffsiteError, load_config, log
from task_manager_host.offsite.state import locked, read_state, record


def run_init(config: dict, _args) -> dict:
    try:
        restic(config, "cat", "config")
        return {"changed": False, "repository": config["repository"]}
    except OffsiteError as exc:
        if "does not exist" not in str(exc) and "unable to open config file" not in str(exc):
            raise
    restic(config, "init")
    log(config, f"repository created: {config['repository']}")
    return {"changed": True, "repository": config["repository"]}


def run_copy(config: dict, _args) -> dict:
    started = common.utc_now()
    copied, skipped = [], []
    try:
        with locked(config):
            there = {s["stamp"] for s in snapshots(config)}
            for entry in local_sets(config):
                if entry["stamp"] in there:
                    continue
                try:
                    paths = set_paths(entry)
                except OffsiteError as exc:
                    skipped.append(str(exc))
                    continue
                out = restic(config, "backup", "--json", "--host", config["host"], "--tag", TAG,
                             "--tag", f"kind:{entry['kind']}", "--tag", f"stamp:{entry['stamp']}",
                             *(str(p) for p in paths))
                summary = next((json.loads(line) for line in out.splitlines()
                                if line.startswith("{") and '"summary"' in line), {})
                copied.append({"stamp": entry["stamp"], "kind": entry["kind"],
                               "snapshot": summary.get("snapshot_id"), "bytes_added": summary.get("data_added")})
    except OffsiteError as exc:
        outcome = {"at": started, "ok": False, "error": str(exc), "copied": copied, "skipped": skipped}
        record(config, "copy", outcome)
        log(config, f"copy FAILED after {len(copied)} set(s): {exc}")
        raise
    ok = not skipped
    outcome = {"at": started, "ok": ok, "copied": copied, "skipped": skipped,
               **({} if ok else {"error": "; ".join(skipped)})}
    record(config, "copy", outcome)
    if copied or skipped:
        log(config, f"copy {'ok' if ok else 'FAILED'}: {len(copied)} set(s) copied, {len(skipped)} damaged left out")
    if not ok:
        raise OffsiteError("; ".join(skipped))
    return {"changed": bool(copied), **outcome}


def run_forget(config: dict, _args) -> dict:
    keep_min = int(config.get("keep_min", 3))
    days = config.get("retention_days", {})
    with locked(config):
        going, future = to_forget(snapshots(config), days, keep_min, dt.datetime.now(dt.UTC))
        if going:
            restic(config, "forget", *(s["id"] for s in going))
            restic(config, "prune")
            log(config, f"forget: {len(going)} snapshot(s) past their retention removed, repository pruned")
    if future:
        names = ", ".join(f"{s['short_id']} ({s['time']})" for s in future)
        log(config, f"forget: {len(future)} snapshot(s) dated in the future kept and not counted: {names}")
    return {"changed": bool(going), "removed": [s["short_id"] for s in going],
            "future": [s["short_id"] for s in future]}


def run_check(config: dict, args) -> dict:
    started = common.utc_now()
    subset = args.read_data_subset or config.get("check_read_data_subset", "5%")
    try:
        restic(config, "check", "--read-data-subset", subset)
    except OffsiteError as exc:
        record(config, "check", {"at": started, "ok": False, "error": str(exc), "read_data_subset": subset})
        log(config, f"check FAILED: {exc}")
        raise
    outcome = {"at": started, "ok": True, "read_data_subset": subset}
    record(config, "check", outcome)
    return {"changed": False, **outcome}


def run_list(config: dict, _args) -> list[dict]:
    return snapshots(config)


def run_fetch(config: dict, args) -> dict:
    with locked(config):
        try:
            fetched = in_child(config["offsite_user"], fetch_to_spool, config, args)
            placed = in_child(backup_account(config), place, config, fetched, args.drill)
        finally:
            in_child(config["offsite_user"], clear_spool, config)
    snap, entry = fetched["snapshot"], fetched["entry"]
    if placed["changed"]:
        where = " for a restore drill" if args.drill else ""
        log(config, f"fetched set {entry['stamp']} ({entry['kind']}) from snapshot {snap['short_id']}{where}")
    return {"changed": placed["changed"], "snapshot": snap["short_id"], "snapshot_time": snap["time"],
            "stamp": entry["stamp"], "kind": entry["kind"], "manifest": placed["manifest"],
            "created_at": entry.get("created_at"), "users": entry.get("users"), "tasks": entry.get("tasks"),
            "schema_revision": entry.get("schema_revision")}


def run_add_key(config: dict, _args) -> dict:
    """The backup host's own key, so that its retention opens the repository: its password
    on stdin, never on a command line or in a file here."""
    password = sys.stdin.readline().strip()
    if len(password) < 16:
        raise OffsiteError("add-key reads the new key's password (16 characters or more) on stdin")
    with contextlib.suppress(OffsiteError):
        restic(config, "cat", "config", password=password)
        return {"changed": False}
    restic(config, "key", "add", stdin=password + "\n")
    log(config, "a key for the backup host's retention added to the repository")
    return {"changed": True}


def run_share(config: dict, _args) -> dict:
    """As the backup account: every kind's folder it owns and the sets in it (not the safety
    sets, not the drill, not its own hidden files such as locks) given the backup directory's
    group, readable by it, without following a link."""
    backup_dir = Path(config["backup_dir"])
    gid = backup_dir.stat().st_gid
    changed: list[str] = []
    kinds = [d.name for d in backup_dir.iterdir() if not d.name.startswith(".") and d.name not in ("safety", DRILL_DIR)]
    for kind in sorted(kinds):
        entries = [(backup_dir / kind, 0o2750)]
        if (backup_dir / kind).is_dir() and not (backup_dir / kind).is_symlink():
            entries += [(f, 0o640) for f in sorted((backup_dir / kind).iterdir()) if not f.name.startswith(".")]
        for path, mode in entries:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue  # a link, or gone: nothing of ours to open
            try:
                info = os.fstat(fd)
                kind_ok = stat.S_ISDIR(info.st_mode) if mode == 0o2750 else stat.S_ISREG(info.st_mode)
                ours = info.st_uid == os.geteuid() and kind_ok
                if ours and (info.st_gid != gid or stat.S_IMODE(info.st_mode) != mode):
                    os.fchown(fd, -1, gid)
                    os.fchmod(fd, mode)
                    changed.append(str(path))
            finally:
                os.close(fd)
    return {"changed": bool(changed), "shared": len(changed), "paths": changed[:20]}


def run_status(config: dict, _args) -> dict:
    state = read_state(config)
    answer = {"repository": config["repository"], "copy": state.get("copy"), "copy_ok_at": state.get("copy_ok_at"),
              "check": state.get("check"), "check_ok_at": state.get("check_ok_at"), "newest": None,
              "local_sets": len(local_sets(config)), "reachable": True, "error": None}
    try:
        found = snapshots(config)
    except OffsiteError as exc:
        answer.update(reachable=False, error=str(exc))
        return answer
    # Sets still waiting for a copy, and how long the oldest has waited: copies that are
    # stuck show here, whatever the age of the newest snapshot.
    there = {s["stamp"] for s in found}
    waiting = [m for m in local_sets(config) if m["stamp"] not in there]
    answer["waiting"] = len(waiting)
    ages = [(dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(m["created_at"])).total_seconds() / 3600
            for m in waiting if m.get("created_at")]
    answer["oldest_waiting_hours"] = round(max(ages), 2) if ages else None
    if found:
        newest = found[-1]
        when = dt.datetime.fromisoformat(newest["time"])  # restic's nanoseconds: Python 3.11 truncates them
        answer["newest"] = {**newest, "age_hours": round((dt.datetime.now(dt.UTC) - when).total_seconds() / 3600, 2)}
    answer["snapshots"] = len(found)
    return answer


COMMANDS = {"init": run_init, "copy": run_copy, "forget": run_forget, "check": run_check, "list": run_list,
            "fetch": run_fetch, "status": run_status, "add-key": run_add_key, "share": run_share}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    # The package's docstring is the command's: its first paragraph says what it does.
    parser = argparse.ArgumentParser(prog="task-manager-offsite", description=offsite.__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=tuple(COMMANDS))
    parser.add_argument("selector", nargs="?", default=None, help="fetch: latest, a set's stamp or a snapshot id")
    parser.add_argument("--kind", default=None, help="fetch: the newest snapshot of this kind of set")
    parser.add_argument("--read-data-subset", default=None, help="check: how much data to read back (5%%, 1/10)")
    parser.add_argument("--drill", action="store_true",
                        help="fetch: into the backup directory's drill/ folder, never beside the live sets")
    args = parser.parse_args(argv)
    if args.command == "fetch" and not args.selector:
        parser.error("fetch needs latest, a set's stamp or a snapshot id")
    if args.command != "fetch" and (args.selector or args.drill):
        parser.error(f"{args.command} takes no selector and no --drill")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config: dict = {}
    try:
        config = load_config()
        if config.get("keeper") and args.command not in KEEPER_COMMANDS:
            raise OffsiteError(f"{args.command} is not for the backup host: it keeps the repository with "
                               + " and ".join(KEEPER_COMMANDS))
        account = run_as(config, args.command)
        if account != "root":
            become(account)
        print(json.dumps(COMMANDS[args.command](config, args)))
        return 0
    except NothingToFetch as exc:
        print(f"task-manager-offsite: {exc}", file=sys.stderr)
        return 3
    except (OffsiteError, OSError) as exc:
        print(f"task-manager-offsite: FAILED: {exc}", file=sys.stderr)
        # In the journal too: cron's mail goes nowhere on a host without a mail server.
        syslog.openlog("task-manager-offsite", 0, syslog.LOG_DAEMON)
        syslog.syslog(syslog.LOG_ERR, f"{args.command} FAILED: {exc}")
        return 1
