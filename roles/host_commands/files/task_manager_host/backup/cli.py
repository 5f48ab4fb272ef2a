"""task-manager-backup: verified backups of the task manager's database (SQLite or PostgreSQL).

Run by cron (daily, weekly, monthly) and by the playbooks (before every destructive
step). Uses only Debian's python3, never a release's venv, so it works even when a
release is broken. Installed as /usr/local/sbin/task-manager-backup. It reads where
things are from the host's layout (TASK_MANAGER_LAYOUT, default /etc/task-manager/layout.json,
written by the base role) and its own settings from TASK_MANAGER_BACKUP_CONFIG (default
/etc/task-manager/backup.json: retention, encryption, what a full set holds).

  task-manager-backup [create] [--kind hourly|daily|weekly|monthly|manual|pre-update] [--label TEXT]
  task-manager-backup list [--kind KIND] [--json]
  task-manager-backup prune [--dry-run]
  task-manager-backup restore latest|latest-good|<stamp>|<manifest> [--from db|dump] [--kind KIND]
  task-manager-backup verify latest|latest-good|<stamp>|<manifest> [--from db|dump] [--kind KIND] [--drill]

A backup set is a manifest backup_<stamp>.json beside its files:
  task_manager_<stamp>.db    copy through SQLite's online backup API
  dump_<stamp>.sql.gz        SQL dump of that copy
  logs_<stamp>.tar.gz        logs/ (weekly and monthly: the full backup)
  config_<stamp>.tar.gz      configuration, without secrets (weekly and monthly)
Each file may end in .gpg when encryption is on. The copy passes PRAGMA
integrity_check and the dump is loaded into a scratch database and checked too,
before the set is written; a set that fails leaves nothing behind.

With PostgreSQL (the layout's database_engine), the command runs on the db host, as
postgres, and a set holds instead:
  task_manager_<stamp>.dump  pg_dump --format=custom, taken in the snapshot the counts read
  globals_<stamp>.sql        pg_dumpall --globals-only --no-role-passwords (roles, no secrets)
The dump is restored into a scratch database and counted (users, tasks, schema revision)
before the set is written; restore rebuilds the database the same way under a scratch
name, keeps a dump of the current one as the safety copy, and swaps the names. The API's
role must have no session open (its hosts stopped) while a restore runs. Only the
databases themselves are made, renamed and dropped as the superuser: every dump is taken
and loaded as the schema owner, and a dump holding objects the migrations do not make
(a function of the owner's own, an extension, a view) is refused before it is loaded.

restore puts a set back in place of the database, with the service stopped: it
checks the set's sha256 sums, rebuilds the database from the copy (or the dump) in
the instance folder, checks it with PRAGMA integrity_check, moves the current
database with its -wal and -shm aside as a safety copy (backups/safety/), and only
then renames the restored file into place. latest-good is the newest set that
passes every check, for when the newest ones are damaged. verify makes every check
restore would make on the set it would choose, on a scratch copy, touching nothing
live: restore.yml runs it before it stops the API.

Exit status: 0 done, 1 failed (including a missing instance or backup directory,
gpg or key file: the message names it), 2 bad usage, 3 no database file yet (create)
or no usable backup (restore, verify).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from task_manager_host import common
from task_manager_host.backup import metrics, postgresql, sets, settings, sqlite
from task_manager_host.backup.errors import BackupError, NoDatabase, NoUsableBackup


def create(config: dict, kind: str, label: str | None) -> dict:
    if settings.engine(config) == "postgresql":
        return postgresql.pg_create(config, kind, label)
    return sqlite.create(config, kind, label)


def verify(config: dict, selector: str, source: str, kind: str | None) -> dict:
    """Every check restore makes on the set it would use, touching nothing live."""
    if settings.engine(config) == "postgresql":
        return postgresql.pg_verify(config, selector, kind)
    return sqlite.verify(config, selector, source, kind)


def restore(config: dict, selector: str, source: str, kind: str | None) -> dict:
    if settings.engine(config) == "postgresql":
        return postgresql.pg_restore(config, selector, kind)
    return sqlite.restore(config, selector, source, kind)


def drop_privileges(config: dict) -> None:
    """Run as the service user: files it makes (backups, SQLite's -wal and -shm) are
    then the service's own, and root never touches the live database."""
    if os.geteuid() != 0:
        return
    import grp  # noqa: PLC0415  (Unix-only, needed only here)
    import pwd  # noqa: PLC0415

    # On the db host the settings name postgres, whose peer authentication lets it dump.
    user, group = config.get("run_as_user") or config["user"], config.get("run_as_group") or config["group"]
    try:
        uid = pwd.getpwnam(user).pw_uid
        gid = grp.getgrnam(group).gr_gid
    except KeyError as exc:
        raise BackupError(f"the service account {exc} does not exist") from None
    # Its group and the backup directory's, no other (not the TLS key's on the db host): a
    # root run then keeps a kind's folder setgid to the off-host account's group as cron's
    # run does (the kernel drops the bit, silently, for an owner outside the folder's group).
    try:
        shared = os.stat(config["backup_dir"]).st_gid
    except OSError:
        shared = gid
    os.setgroups(sorted({gid, shared}))
    os.setgid(gid)
    os.setuid(uid)
    os.environ["HOME"] = config["backup_dir"]


def run_list(config: dict, args: argparse.Namespace) -> int:
    entries = sets.manifests(config, args.kind)
    if args.json:
        print(json.dumps(entries, indent=2))
    else:
        for m in entries:
            print(f"{m['stamp']}  {m['kind']:<10} tasks={m.get('tasks')} release={m.get('release')}  {m['manifest']}")
    return 0


def run_prune(config: dict, args: argparse.Namespace) -> int:
    removed = sets.prune(config, args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for path in removed:
        print(f"{verb} {path}")
    if removed:  # an idle prune writes nothing, so an idle log is not rotated for it
        settings.log(config, f"prune: {verb} {len(removed)} files")
    return 0


def run_restore(config: dict, args: argparse.Namespace) -> int:
    result = restore(config, args.selector, args.source, args.kind)
    settings.log(config, f"restore ok from {result['restored']} ({result['source']}): tasks={result.get('tasks')}")
    print(json.dumps(result))
    return 0


def run_verify(config: dict, args: argparse.Namespace) -> int:
    if not args.drill:
        print(json.dumps(verify(config, args.selector, args.source, args.kind)))
        return 0
    # The set `task-manager-offsite fetch --drill` put in the drill folder: the same checks,
    # then the folder goes, whatever they found (it is a copy of a copy).
    drill = Path(config["backup_dir"]) / settings.DRILL_DIR
    if not drill.is_dir():
        raise NoUsableBackup(f"{drill} holds no set: task-manager-offsite fetch latest --drill puts one there")
    try:
        result = verify({**config, "backup_dir": str(drill)}, args.selector, args.source, args.kind)
    finally:
        shutil.rmtree(drill, ignore_errors=True)
    settings.log(config, f"restore drill ok: {result.get('stamp')} holds tasks={result.get('tasks')}")
    print(json.dumps({**result, "drill": True}))
    return 0


def run_create(config: dict, args: argparse.Namespace) -> int:
    kind = args.kind or "manual"
    started = time.time()
    try:
        manifest = create(config, kind, args.label)
    except NoDatabase:
        raise
    except Exception:
        metrics.record_run(config, kind, started, None)
        raise
    metrics.record_run(config, kind, started, manifest)
    settings.log(config, f"{kind} backup ok: tasks={manifest.get('tasks')} {manifest['manifest']}")
    print(json.dumps(manifest))
    return 0


COMMANDS = {"create": run_create, "list": run_list, "prune": run_prune, "restore": run_restore, "verify": run_verify}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="task-manager-backup", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="create", choices=tuple(COMMANDS))
    parser.add_argument("selector", nargs="?", default=None,
                        help="restore, verify: latest, latest-good, a stamp or a manifest")
    parser.add_argument("--from", dest="source", choices=("db", "dump"), default="db",
                        help="restore, verify: from the database copy (default) or the SQL dump")
    parser.add_argument("--kind", choices=settings.PRUNED_KINDS, default=None,
                        help="safety: a copy kept aside (restore.yml takes one), never chosen by latest")
    parser.add_argument("--label", default=None, help="free text kept in the manifest (for example the release)")
    parser.add_argument("--json", action="store_true", help="list: print JSON")
    parser.add_argument("--dry-run", action="store_true", help="prune: say what would go, remove nothing")
    parser.add_argument("--drill", action="store_true",
                        help="verify: the set task-manager-offsite fetch --drill fetched, then remove it")
    args = parser.parse_args(argv)
    if args.command in ("restore", "verify") and not args.selector:
        parser.error(f"{args.command} needs latest, latest-good, a stamp or a manifest")
    if args.command == "create" and args.selector:
        parser.error(f"{args.command} takes no selector")
    if args.drill and args.command != "verify":
        parser.error("only verify takes --drill")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config: dict = {}
    try:
        config = settings.load_config()
        drop_privileges(config)
        return COMMANDS[args.command](config, args)
    except (NoDatabase, NoUsableBackup) as exc:
        print(f"task-manager-backup: {exc}", file=sys.stderr)
        return 3
    except (BackupError, OSError, sqlite3.Error, subprocess.CalledProcessError, *postgresql.driver_errors()) as exc:
        message = f"FAILED: {common.describe(exc)}"
        if config:
            settings.log(config, message)
        print(f"task-manager-backup: {message}", file=sys.stderr)
        return 1

