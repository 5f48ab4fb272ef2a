#!/usr/bin/python3
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
import concurrent.futures
import contextlib
import datetime as dt
import errno
import fcntl
import gzip
import hashlib
import json
import os
import queue
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

DEFAULT_CONFIG = "/etc/task-manager/backup.json"  # retention, encryption, what a full set holds
DEFAULT_LAYOUT = "/etc/task-manager/layout.json"  # where things are: written by the base role
# Absolute paths: root starts this command (cron, the runbooks), so PATH decides nothing.
# Module constants, so the tests can point them elsewhere.
GPG = "/usr/bin/gpg"
GPGCONF = "/usr/bin/gpgconf"
SYSTEMCTL = "/usr/bin/systemctl"
SQLITE3 = "/usr/bin/sqlite3"
KINDS = ("hourly", "daily", "weekly", "monthly", "manual", "pre-update")
PRUNED_KINDS = (*KINDS, "safety")
FULL_KINDS = ("weekly", "monthly")
# Where `task-manager-offsite fetch --drill` puts a set for a restore drill: never a kind's folder.
DRILL_DIR = "drill"
# PostgreSQL's own tools, not Debian's wrappers in /usr/bin (they pick a cluster by guessing).
PG_BIN = "/usr/lib/postgresql/15/bin"


class BackupError(Exception):
    """The command failed: exit status 1."""


class Missing(BackupError):
    """Something the command needs is not there (a directory, gpg, the key file): exit 1.
    Never a reason to try an older set: every set would fail the same way."""


class NoDatabase(Exception):
    """The configured database file does not exist yet: nothing to back up (exit 3)."""


class NoUsableBackup(Exception):
    """No backup set matches or passes its checks (exit 3)."""


def config_file() -> Path:
    return Path(os.environ.get("TASK_MANAGER_BACKUP_CONFIG", DEFAULT_CONFIG))


def layout_file() -> Path:
    return Path(os.environ.get("TASK_MANAGER_LAYOUT", DEFAULT_LAYOUT))


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError(f"cannot read {path}: {exc}") from exc


def load_config() -> dict:
    """The host's layout (database, directories, service account), then the backup settings."""
    return {**read_json(layout_file()), **read_json(config_file())}


def log(config: dict, message: str) -> None:
    line = f"{dt.datetime.now().strftime('%Y-%m-%d %H:%M:%S')} backup: {message}"
    print(line, file=sys.stderr)
    with contextlib.suppress(OSError, KeyError, TypeError):
        log_file = Path(config["log_dir"]) / "backup.log"
        with log_file.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")


def require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise Missing(f"{what} {path} is missing")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def integrity(path: Path) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()
    return "ok" if rows == ["ok"] else "; ".join(rows[:5])


def counts(path: Path) -> dict:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        result = {}
        for table in ("users", "tasks"):
            try:
                result[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 (fixed names)
            except sqlite3.DatabaseError:
                result[table] = None
        try:
            result["schema_revision"] = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        except (sqlite3.DatabaseError, TypeError):
            result["schema_revision"] = None
        return result
    finally:
        conn.close()


def online_copy(source: Path, target: Path) -> None:
    """Copy through SQLite's online backup API: consistent while the service writes."""
    src = sqlite3.connect(source, timeout=30)
    dst = sqlite3.connect(target)
    try:
        src.execute("PRAGMA busy_timeout = 30000")
        # One step, so one read snapshot: in WAL mode it does not block the service's
        # writers. Copying in chunks instead restarts from the first page whenever the
        # service writes in between, which under steady writes may never finish.
        src.backup(dst, pages=-1)
        # The copy is a plain file: no -wal beside it to lose when it is moved.
        dst.execute("PRAGMA journal_mode = DELETE")
    finally:
        dst.close()
        src.close()


# gzip's fastest level: for a 100 MB database (74 MB of SQL) level 6 took 4.4 s of a core and
# level 1 0.9 s, for 14 MB of dump instead of 10, beside the set's uncompressed 100 MB copy.
DUMP_COMPRESSLEVEL = 1


def dump(copy: Path, target: Path) -> None:
    """The SQL dump where the sqlite3 program is missing: Python's iterdump, the same format."""
    conn = sqlite3.connect(copy)
    try:
        with gzip.open(target, "wb", compresslevel=DUMP_COMPRESSLEVEL) as out:
            for line in conn.iterdump():
                out.write((line + "\n").encode("utf-8"))
    finally:
        conn.close()


def load_dump(dump_file: Path, target: Path) -> None:
    conn = sqlite3.connect(target)
    try:
        with gzip.open(dump_file, "rt", encoding="utf-8") as handle:
            conn.executescript(handle.read())
    finally:
        conn.close()


def check_loaded(scratch: Path, expected: dict) -> None:
    """The database a dump was loaded into is sound and holds what the copy holds."""
    if integrity(scratch) != "ok":
        raise BackupError("the SQL dump does not load into a sound database")
    loaded = counts(scratch)
    if loaded != expected:
        raise BackupError(f"the SQL dump holds {loaded}, the copy {expected}")


def verify_dump(dump_file: Path, expected: dict, scratch: Path) -> None:
    load_dump(dump_file, scratch)
    check_loaded(scratch, expected)


# The scratch database is thrown away: no journal, no fsync while the dump loads into it.
SCRATCH_PRAGMAS = b"PRAGMA journal_mode = OFF;\nPRAGMA synchronous = OFF;\n"


def _feed(pipe, chunks: queue.Queue, stopped: list) -> None:
    """Write each chunk to pipe until None comes; after a broken pipe (the loader stopped at an
    error, -bail), take the rest and drop it, so that the writer never waits on a full queue."""
    while (chunk := chunks.get()) is not None:
        if stopped:
            continue
        try:
            pipe.write(chunk)
        except BrokenPipeError:
            stopped.append(True)
    with contextlib.suppress(BrokenPipeError):
        pipe.close()


def dump_and_verify(copy: Path, dump_file: Path, expected: dict, scratch_db: Path) -> None:
    """Write the copy's SQL dump and prove it, in one pass: the bytes sqlite3 .dump writes go
    to the gzip file and, at the same time, to a second sqlite3 that loads them into a scratch
    database (on the other core). The scratch must be sound and hold what the copy holds, and
    the file, read back, must hold exactly the bytes that loaded: the same proof as loading the
    written file afterwards, without waiting for the dump to end before the load begins."""
    if not os.access(SQLITE3, os.X_OK):
        dump(copy, dump_file)
        verify_dump(dump_file, expected, scratch_db)
        return
    written = hashlib.sha256()
    # The manual's own `sqlite3 ... .dump`, the format restore.yml reads back.
    # S603: fixed absolute programs and argument lists, no shell.
    with subprocess.Popen([SQLITE3, "-bail", str(scratch_db)], stdin=subprocess.PIPE,  # noqa: S603
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as loader:
        # A thread of its own writes to the loader, so that compressing a chunk here and
        # loading the one before there go on at the same time.
        chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        stopped: list[bool] = []
        feeder = threading.Thread(target=_feed, args=(loader.stdin, chunks, stopped), daemon=True)
        feeder.start()
        chunks.put(SCRATCH_PRAGMAS)
        try:
            with gzip.open(dump_file, "wb", compresslevel=DUMP_COMPRESSLEVEL) as out, subprocess.Popen(  # noqa: S603
                    [SQLITE3, str(copy), ".dump"], stdout=subprocess.PIPE) as proc:
                while chunk := proc.stdout.read(1 << 20):
                    chunks.put(chunk)
                    written.update(chunk)
                    out.write(chunk)
        finally:
            chunks.put(None)
            feeder.join()
        problem = loader.stderr.read().decode(errors="replace").strip()
        loader.wait()
    loading = not stopped
    if proc.returncode != 0:
        raise BackupError(f"sqlite3 .dump exited with {proc.returncode}")
    if loader.returncode != 0 or not loading:
        raise BackupError(f"the SQL dump does not load into a database: {problem[:300] or loader.returncode}")
    check_loaded(scratch_db, expected)
    read_back = hashlib.sha256()
    with gzip.open(dump_file, "rb") as handle:
        while chunk := handle.read(1 << 20):
            read_back.update(chunk)
    if read_back.digest() != written.digest():
        raise BackupError(f"{dump_file.name} does not hold the dump that was loaded")


def tar_paths(target: Path, paths: list[tuple[str, Path]]) -> None:
    with tarfile.open(target, "w:gz") as tar:
        for arcname, path in paths:
            if path.exists():
                tar.add(path, arcname=arcname)


def gpg(config: dict, arguments: list[str], home: Path) -> None:
    """Run gpg with the configured passphrase file; what is missing is named, not guessed."""
    key_file = config.get("encryption_key_file")
    if not key_file or not Path(key_file).is_file():
        raise Missing(f"encryption is on but the key file {key_file} is missing")
    if not os.access(GPG, os.X_OK):
        raise Missing(f"{GPG} is missing: encrypted backups need gnupg (apt install gnupg)")
    env = {**os.environ, "GNUPGHOME": str(home)}
    try:
        # S603: fixed absolute programs and argument lists, no shell.
        subprocess.run(  # noqa: S603
            [GPG, "--batch", "--yes", "--quiet", "--pinentry-mode", "loopback", "--passphrase-file", key_file,
             *arguments],
            check=True, env=env,
        )
    finally:
        # gpg leaves an agent running for its home. Under the backup unit, an agent still
        # there when the command ends kept the unit waiting out its stop timeout (90 s), and
        # the unit failed although the set was good; elsewhere it would outlive the home.
        if os.access(GPGCONF, os.X_OK):
            subprocess.run([GPGCONF, "--kill", "gpg-agent"], check=False, env=env, capture_output=True)  # noqa: S603


def encrypt(config: dict, path: Path) -> Path:
    if not config.get("encrypt"):
        return path
    target = path.with_name(path.name + ".gpg")
    gpg(config, ["--symmetric", "--cipher-algo", "AES256", "--output", str(target), str(path)], path.parent / ".gnupg")
    path.unlink()
    return target


def decrypt(config: dict, path: Path, scratch: Path) -> Path:
    if path.suffix != ".gpg":
        return path
    target = scratch / path.name.removesuffix(".gpg")
    try:
        gpg(config, ["--output", str(target), "--decrypt", str(path)], scratch / ".gnupg")
    except subprocess.CalledProcessError:
        # Not Missing: a damaged file is one set's problem, and latest-good tries the next.
        raise BackupError(f"{path} cannot be decrypted with the passphrase in {config.get('encryption_key_file')}: "
                          "a wrong passphrase (the set was encrypted with another one) or a damaged file") from None
    return target


def release_info(config: dict) -> dict:
    current = Path(config["current_link"])
    info = {"release": None, "revision": None}
    with contextlib.suppress(OSError):
        info["release"] = os.path.basename(os.readlink(current))
    with contextlib.suppress(OSError, ValueError):
        record = json.loads((current / "RELEASE.json").read_text(encoding="utf-8"))
        info["revision"] = record.get("revision")
    return info


@contextlib.contextmanager
def locked(backup_dir: Path):
    # Never made here: a backup directory that is not there (an unmounted backup disk)
    # is a failure to report, not a place to start filling the system disk.
    require_dir(backup_dir, "the backup directory")
    with (backup_dir / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # one backup or prune at a time
        yield


def room_for(database: Path, backup_dir: Path) -> None:
    """Refuse before writing anything when the set cannot fit: a backup that fills the
    disk half-way helps nobody and can stop the service's own writes."""
    size = database.stat().st_size
    wal = database.with_name(database.name + "-wal")
    if wal.exists():
        size += wal.stat().st_size
    # The copy, the dump loaded back to verify it, and the compressed dump, plus a margin.
    require_room(backup_dir, size, 2 * size + size // 2 + 16 * 1048576)


def require_room(where: Path, size: int, needed: int) -> None:
    """Refuse before writing anything when `needed` bytes do not fit in `where`."""
    free = shutil.disk_usage(where).free
    if free < needed:
        raise BackupError(
            f"not enough space in {where}: {free // 1048576} MB free, a backup of this "
            f"{size // 1048576} MB database needs about {needed // 1048576} MB there. Free space "
            "(maintenance.yml prunes old sets) or move it to a larger disk")


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def new_stamp() -> str:
    return dt.datetime.now().strftime("%Y%m%d_%H%M%S_%f")


def build_set(config: dict, database: Path, kind: str, stamp: str, scratch: Path) -> tuple[list[Path], dict]:
    """The set's files in scratch, each verified (and encrypted when configured), and the database's facts."""
    copy = scratch / f"task_manager_{stamp}.db"
    online_copy(database, copy)
    facts = counts(copy)
    dump_file = scratch / f"dump_{stamp}.sql.gz"
    # The copy's integrity check reads it beside the dump (sqlite3 leaves the GIL while it
    # works); the set is written only when both have passed.
    # A damaged copy is named as such, even when its dump failed first because of it.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        checking = pool.submit(integrity, copy)
        try:
            dump_and_verify(copy, dump_file, facts, scratch / "verify.db")
        except BackupError as failed:
            if (check := checking.result()) != "ok":
                raise BackupError(f"the copy of {database} fails PRAGMA integrity_check: {check}") from failed
            raise
        if (check := checking.result()) != "ok":
            raise BackupError(f"the copy of {database} fails PRAGMA integrity_check: {check}")
    (scratch / "verify.db").unlink()
    files = [copy, dump_file]
    if kind in FULL_KINDS:
        logs = scratch / f"logs_{stamp}.tar.gz"
        tar_paths(logs, [("logs", Path(config["log_dir"]))])
        conf = scratch / f"config_{stamp}.tar.gz"
        tar_paths(conf, [(p.lstrip("/"), Path(p)) for p in config.get("config_paths", [])])
        files += [logs, conf]
    return [encrypt(config, f) for f in files], facts


def set_modes(backup_dir: Path) -> tuple[int, int]:
    """A set's file and folder modes: the backup account's alone, or also its group's to
    read where deploy.yml gave the backup directory the off-host account's group (2750)."""
    shared = backup_dir.stat().st_mode & stat.S_IRGRP
    return (0o640, 0o2750) if shared else (0o600, 0o700)


def write_set(scratch: Path, target_dir: Path, files: list[Path], manifest: dict) -> None:
    manifest_file = scratch / f"backup_{manifest['stamp']}.json"
    manifest_file.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    file_mode, dir_mode = set_modes(target_dir.parent)
    target_dir.chmod(dir_mode)
    # Data first, manifest last: a set is complete exactly when its manifest exists.
    for path in [*files, manifest_file]:
        path.chmod(file_mode)
        path.rename(target_dir / path.name)


def engine(config: dict) -> str:
    """sqlite or postgresql; refused on a host that does not hold the database."""
    name = config.get("database_engine", "sqlite")
    if not config.get("database_on_this_host", True):
        # Said plainly rather than "nothing to back up yet": the data exists, elsewhere.
        raise BackupError(
            f"the database is {name} on {config.get('db_host') or 'the db host'}: its backups are taken "
            "and restored there (backup.yml and restore.yml do)")
    return name


def create(config: dict, kind: str, label: str | None) -> dict:
    if engine(config) == "postgresql":
        return pg_create(config, kind, label)
    database = Path(config["database"])
    backup_dir = Path(config["backup_dir"])
    # Only the database file itself may be absent ("nothing to back up yet"); a missing
    # instance directory means a broken or half-made host, and that is a failure.
    require_dir(database.parent, "the instance directory")
    if not database.exists():
        raise NoDatabase(f"no database at {database}: nothing to back up yet")
    return take_set(
        config, kind, label, room=lambda: room_for(database, backup_dir),
        build=lambda stamp, scratch: build_set(config, database, kind, stamp, scratch),
        describe={"engine": "sqlite", "database": str(database), "integrity": "ok", **release_info(config)})


def take_set(config: dict, kind: str, label: str | None, *, room, build, describe: dict) -> dict:
    """One set, either engine: room checked under the lock, built and verified in a scratch
    directory, then moved into backups/<kind>/ with its manifest last."""
    backup_dir = Path(config["backup_dir"])
    target_dir = backup_dir / kind
    stamp = new_stamp()
    os.umask(0o077)
    with locked(backup_dir):
        room()
        target_dir.mkdir(exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".tmp-", dir=backup_dir))
        try:
            files, facts = build(stamp, scratch)
            manifest = {
                "kind": kind, "label": label, "created_at": utc_now(), "stamp": stamp, **describe,
                "encrypted": bool(config.get("encrypt")), **facts,
                "files": {f.name: {"sha256": sha256(f), "bytes": f.stat().st_size} for f in files},
            }
            write_set(scratch, target_dir, files, manifest)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return {**manifest, "manifest": str(target_dir / f"backup_{stamp}.json"), "dir": str(target_dir)}


def manifests(config: dict, kind: str | None = None) -> list[dict]:
    found = []
    backup_dir = Path(config["backup_dir"])
    for path in sorted(backup_dir.glob(f"{kind or '*'}/backup_*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        data["manifest"] = str(path)
        data["dir"] = str(path.parent)
        data["mtime"] = path.stat().st_mtime
        found.append(data)
    return sorted(found, key=lambda m: m.get("stamp", ""))


def prune(config: dict, dry_run: bool) -> list[str]:
    """Remove sets older than their kind's retention, always keeping the newest few of each kind."""
    now = dt.datetime.now().timestamp()
    keep_min = int(config.get("keep_min", 3))
    removed = []
    with locked(Path(config["backup_dir"])):
        for kind in PRUNED_KINDS:
            days = int(config["retention_days"].get(kind, config["retention_days"]["default"]))
            sets = manifests(config, kind)
            candidates = sets[:-keep_min] if keep_min else sets
            for entry in candidates:
                if now - entry["mtime"] <= days * 86400:
                    continue
                directory = Path(entry["dir"])
                for name in [*entry.get("files", {}), Path(entry["manifest"]).name]:
                    path = directory / name
                    if path.exists():
                        removed.append(str(path))
                        if not dry_run:
                            path.unlink()
    return removed


def set_file(entry: dict, prefix: str, what: str) -> Path:
    """The set's file whose name starts with prefix, once every file's sha256 matches the manifest."""
    directory = Path(entry["dir"])
    for name, meta in entry.get("files", {}).items():
        path = directory / name
        if not path.exists() or sha256(path) != meta["sha256"]:
            raise BackupError(f"{path} is missing or does not match its manifest")
    pick = next((n for n in entry.get("files", {}) if n.startswith(prefix)), None)
    if pick is None:
        raise BackupError(f"set {entry['stamp']} has no {what}")
    return directory / pick


def check_set(config: dict, entry: dict, source: str, scratch: Path) -> Path:
    """A verified, decrypted candidate database file built from one backup set."""
    chosen = set_file(entry, "task_manager_" if source == "db" else "dump_", f"{source} file")
    plain = decrypt(config, chosen, scratch)
    candidate = scratch / "candidate.db"
    candidate.unlink(missing_ok=True)
    if source == "db":
        shutil.copyfile(plain, candidate)
    else:
        load_dump(plain, candidate)
    check = integrity(candidate)
    if check != "ok":
        raise BackupError(f"set {entry['stamp']} ({source}) fails PRAGMA integrity_check: {check}")
    return candidate


def service_running(config: dict) -> bool:
    if not os.path.exists(SYSTEMCTL) or not config.get("service"):
        return False
    units = [f"{config['service']}.service", f"{config['service']}.socket"]
    # S603: a fixed absolute program and an argument list, no shell.
    return subprocess.run([SYSTEMCTL, "is-active", "--quiet", *units], check=False).returncode == 0  # noqa: S603


def select_sets(config: dict, selector: str, kind: str | None) -> list[dict]:
    """The sets to try, in order: newest first for latest and latest-good, else the one named."""
    this = config.get("database_engine", "sqlite")
    entries = [m for m in manifests(config, kind) if m.get("kind") != "safety" and m.get("engine", "sqlite") == this]
    if selector in ("latest", "latest-good"):
        ordered = list(reversed(entries))
    else:
        ordered = [m for m in entries if selector in (m["stamp"], m["manifest"], Path(m["manifest"]).name)]
    if not ordered:
        raise NoUsableBackup(f"no backup set matches {selector!r}")
    return ordered


def first_good(config: dict, ordered: list[dict], selector: str, source: str,
               scratch: Path) -> tuple[dict, Path, list[str]]:
    """The first set that passes every check, its candidate file, and why the ones before it failed."""
    problems = []
    for entry in ordered:
        try:
            return entry, check_set(config, entry, source, scratch), problems
        except Missing:
            raise  # gpg or the key file: every other set would fail the same way
        except (BackupError, sqlite3.Error, OSError, subprocess.CalledProcessError) as exc:
            problems.append(str(exc))
            if selector != "latest-good":
                raise BackupError(str(exc)) from None
    raise NoUsableBackup("no backup set passes its checks: " + "; ".join(problems))


def keep_safety_copy(database: Path, backup_dir: Path, restoring: str) -> tuple[str, str] | None:
    """Copy the current database (with its -wal and -shm) aside as a safety set: the copy's
    path and its manifest's."""
    if not database.exists():
        return None
    stamp = new_stamp()
    safety_dir = backup_dir / "safety"
    safety_dir.mkdir(mode=0o700, exist_ok=True)
    kept = {}
    # A copy, not a rename: backups often sit on another file system. The originals go
    # only once every copy is complete (the caller's rename).
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{database}{suffix}")
        if path.exists():
            target = safety_dir / f"task_manager_{stamp}.db{suffix}"
            shutil.copy2(path, target)
            kept[target.name] = {"sha256": sha256(target), "bytes": target.stat().st_size}
    manifest = safety_dir / f"backup_{stamp}.json"
    manifest.write_text(json.dumps({
        "kind": "safety", "stamp": stamp, "label": f"database as it was before restoring {restoring}",
        "created_at": utc_now(), "files": kept,
    }, indent=2) + "\n", encoding="utf-8")
    return str(safety_dir / f"task_manager_{stamp}.db"), str(manifest)


def verified(entry: dict, source: str, problems: list[str], facts: dict) -> dict:
    return {"verified": entry["manifest"], "stamp": entry["stamp"], "kind": entry["kind"], "source": source,
            "backup_created_at": entry.get("created_at"), "skipped": problems, **facts}


@contextlib.contextmanager
def chosen_set(config: dict, selector: str, source: str, kind: str | None, purpose: str):
    """Under the backup lock: the first set that passes every check, rebuilt as a candidate
    file in a scratch directory beside the database (removed afterwards), with its counts."""
    database = Path(config["database"])
    require_dir(database.parent, "the instance directory")
    with locked(Path(config["backup_dir"])):
        ordered = select_sets(config, selector, kind)
        scratch = Path(tempfile.mkdtemp(prefix=f".{purpose}-", dir=database.parent))
        try:
            entry, candidate, problems = first_good(config, ordered, selector, source, scratch)
            yield entry, candidate, problems, counts(candidate)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def verify(config: dict, selector: str, source: str, kind: str | None) -> dict:
    """Every check restore makes on the set it would use (sums, decryption, integrity,
    counts), on a scratch copy: nothing live is touched, the API may keep serving."""
    if engine(config) == "postgresql":
        return pg_verify(config, selector, kind)
    with chosen_set(config, selector, source, kind, "verify") as (entry, _candidate, problems, facts):
        return verified(entry, source, problems, facts)


def restore(config: dict, selector: str, source: str, kind: str | None) -> dict:
    if engine(config) == "postgresql":
        return pg_restore(config, selector, kind)
    if service_running(config):
        raise BackupError(f"stop {config['service']}.socket and .service first: never restore under a running service")
    database = Path(config["database"])
    with chosen_set(config, selector, source, kind, "restore") as (entry, candidate, problems, facts):
        safety = keep_safety_copy(database, Path(config["backup_dir"]), entry["stamp"])
        candidate.chmod(0o600)
        candidate.rename(database)
        for suffix in ("-wal", "-shm"):  # stale ones would be replayed into the restored file
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        if integrity(database) != "ok":
            raise BackupError("the restored database fails PRAGMA integrity_check")
    return {
        "restored": entry["manifest"], "stamp": entry["stamp"], "kind": entry["kind"], "source": source,
        "backup_created_at": entry.get("created_at"),
        # The damaged database's copy, and the manifest of the safety set that holds it.
        "safety_database": safety[0] if safety else None, "safety_copy": safety[1] if safety else None,
        "skipped": problems, **facts,
    }


# --- PostgreSQL (the db host) ---------------------------------------------------------------
# Connections go over the local socket by peer authentication: as postgres to the maintenance
# database, as the schema owner (pg_ident.conf maps postgres to it) to the task manager's
# own; libpq's PGHOST and PGPORT may point elsewhere (the tests do).


def driver_errors() -> tuple[type[Exception], ...]:
    """psycopg's errors where it is installed (the db host), for the except clauses."""
    try:
        import psycopg  # noqa: PLC0415
    except ImportError:
        return ()
    return (psycopg.Error,)


def pg_connect(dbname: str, autocommit: bool = True, role: str | None = None):
    """A connection to `dbname`: as the superuser (the command's own account, peer) for the
    maintenance database only; the task manager's databases as their owner (`role`), never
    as a superuser, since whatever the owner put in them runs with the rights of whoever
    reads, dumps or restores them."""
    import psycopg  # noqa: PLC0415  (Debian's python3-psycopg; only the db host needs it)

    # The superuser's own session sees pg_catalog alone, whatever a database's settings say.
    extra = {"user": role} if role else {"options": "-c search_path=pg_catalog"}
    return psycopg.connect(dbname=dbname, autocommit=autocommit, connect_timeout=10, **extra)


def as_owner(config: dict, dbname: str, autocommit: bool = True):
    return pg_connect(dbname, autocommit, role=config["db_owner"])


# What a dump of the task manager's database may hold: the kinds of object its migrations
# make, all owned by the schema owner, and among routines and triggers only those the
# migrations make (app/task_manager/task_counts.py and task_bytes.py;
# tests/test_backup_postgresql.py holds the two lists together). Anything else (a function of
# the owner's own, an extension, a view, a rule, an event trigger) is refused before the dump
# is loaded anywhere.
DUMP_KINDS = frozenset({
    "TABLE", "TABLE DATA", "SEQUENCE", "SEQUENCE OWNED BY", "SEQUENCE SET", "DEFAULT", "INDEX",
    "CONSTRAINT", "FK CONSTRAINT", "ACL", "DEFAULT ACL", "FUNCTION", "TRIGGER", "COMMENT",
})
MIGRATION_ROUTINES = frozenset({
    ("FUNCTION", "task_counts_add(integer, character varying, integer)"),
    ("FUNCTION", "task_counts_follow()"),
    ("TRIGGER", "tasks task_counts_follow"),
    ("FUNCTION", "task_bytes_follow()"),
    ("TRIGGER", "tasks task_bytes_follow"),
})
# pg_restore --list: "<id>; <catalog> <oid> <KIND> <schema> <name> <owner>", KIND of one or
# more upper-case words; the schema is "-" for objects outside one.
TOC_LINE = re.compile(r"^\d+; \d+ \d+ (?P<rest>.+)$")
TOC_KINDS = sorted(DUMP_KINDS | {
    "AGGREGATE", "CAST", "COLLATION", "CONVERSION", "DATABASE", "DOMAIN", "EVENT TRIGGER", "EXTENSION",
    "FOREIGN DATA WRAPPER", "FOREIGN TABLE", "LANGUAGE", "LARGE OBJECT", "MATERIALIZED VIEW", "OPERATOR",
    "OPERATOR CLASS", "OPERATOR FAMILY", "POLICY", "PROCEDURE", "PUBLICATION", "ROW SECURITY", "RULE",
    "SCHEMA", "SERVER", "STATISTICS", "SUBSCRIPTION", "TEXT SEARCH CONFIGURATION", "TEXT SEARCH DICTIONARY",
    "TEXT SEARCH PARSER", "TEXT SEARCH TEMPLATE", "TRANSFORM", "TYPE", "USER MAPPING", "VIEW",
}, key=len, reverse=True)


def foreign_objects(listing: str, owner: str) -> list[str]:
    """The entries of a dump's table of contents that the migrations did not make."""
    found = []
    for line in listing.splitlines():
        match = TOC_LINE.match(line.rstrip("\r\n"))
        if not match:
            continue
        rest = match["rest"]
        kind = next((k for k in TOC_KINDS if rest.startswith(k + " ")), rest.split(" ", 1)[0])
        # "<schema> <name> <owner>": the name may hold spaces, the owner is empty for some kinds.
        words = rest[len(kind) + 1:].split(" ")
        name, entry_owner = " ".join(words[1:-1]), words[-1]
        if kind == "ACL" and name == "SCHEMA public" and entry_owner == "pg_database_owner":
            continue  # the API role's USAGE on public, as deploy.yml grants it
        if (kind not in DUMP_KINDS or entry_owner != owner
                or (kind in ("FUNCTION", "TRIGGER") and (kind, name) not in MIGRATION_ROUTINES)):
            found.append(f"{kind} {name} (owner {entry_owner or 'none'})")
    return found


def refuse_foreign(config: dict, dump_file: Path) -> None:
    program = Path(config.get("postgresql_bin") or PG_BIN) / "pg_restore"
    # S603: a fixed absolute program and an argument list, no shell.
    result = subprocess.run([str(program), "--list", str(dump_file)],  # noqa: S603
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BackupError(f"pg_restore --list exited with {result.returncode}: {result.stderr.strip()[-600:]}")
    found = foreign_objects(result.stdout, config["db_owner"])
    if found:
        raise BackupError(
            f"the dump {dump_file.name} holds objects the migrations did not make, so it is not loaded: "
            + "; ".join(found)
            + f". Remove them from {config['db_name']} (as {config['db_owner']}) and take a new backup")


def pg_tool(config: dict, tool: str, *arguments: str) -> None:
    program = Path(config.get("postgresql_bin") or PG_BIN) / tool
    if not os.access(program, os.X_OK):
        raise Missing(f"{program} is missing: PostgreSQL backups need the server's own tools")
    # S603: a fixed absolute program and an argument list, no shell.
    result = subprocess.run([str(program), *arguments], capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise BackupError(f"{tool} exited with {result.returncode}: {result.stderr.strip()[-600:]}")


def pg_counts(conn) -> dict:
    """users, tasks and the schema revision, as counts() reads them from SQLite; a table
    that is not there (an empty database) counts as None, not as a failure."""
    def exists(table: str) -> bool:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{table}",)).fetchone()[0]

    result = {}
    for table in ("users", "tasks"):
        result[table] = (conn.execute(f"SELECT count(*) FROM public.{table}").fetchone()[0]  # noqa: S608 (fixed names)
                         if exists(table) else None)
    row = None
    if exists("alembic_version"):
        row = conn.execute("SELECT version_num FROM public.alembic_version").fetchone()
    result["schema_revision"] = row[0] if row else None
    return result


def pg_database_exists(name: str) -> bool:
    with pg_connect("postgres") as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def pg_drop(name: str) -> None:
    from psycopg import sql  # noqa: PLC0415

    with pg_connect("postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def pg_load(config: dict, dump_file: Path, name: str) -> dict:
    """A new database `name` built from the dump (owners and grants as dumped), and its counts."""
    from psycopg import sql  # noqa: PLC0415

    pg_drop(name)
    with pg_connect("postgres") as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING 'UTF8' "
                             "LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'").format(
            sql.Identifier(name), sql.Identifier(config["db_owner"])))
    refuse_foreign(config, dump_file)
    pg_tool(config, "pg_restore", "--exit-on-error", "--single-transaction", "--username", config["db_owner"],
            "--dbname", name, str(dump_file))
    with as_owner(config, name) as conn:
        return pg_counts(conn)


def pg_dump_snapshot(config: dict, target: Path) -> dict:
    """A custom-format dump and the counts, both read in one snapshot: what the dump holds
    is exactly what was counted, however the API writes meanwhile."""
    with as_owner(config, config["db_name"], autocommit=False) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        facts = pg_counts(conn)
        pg_tool(config, "pg_dump", "--format=custom", "--compress=6", f"--snapshot={snapshot}",
                "--username", config["db_owner"], "--file", str(target), "--dbname", config["db_name"])
        conn.rollback()
    return facts


def pg_room_for(config: dict, backup_dir: Path) -> None:
    with pg_connect("postgres") as conn:
        size = conn.execute("SELECT pg_database_size(%s)", (config["db_name"],)).fetchone()[0]
        data_dir = conn.execute("SELECT setting FROM pg_settings WHERE name = 'data_directory'").fetchone()[0]
    # The dump (at most the database's size) and a margin in the backup directory; the
    # scratch database the dump is verified in, beside the live one.
    require_room(backup_dir, size, size + 16 * 1048576)
    require_room(Path(data_dir), size, size + 64 * 1048576)


def pg_build_set(config: dict, kind: str, stamp: str, scratch: Path) -> tuple[list[Path], dict]:
    dump_file = scratch / f"task_manager_{stamp}.dump"
    facts = pg_dump_snapshot(config, dump_file)
    verify = f"{config['db_name']}_verify"
    try:
        loaded = pg_load(config, dump_file, verify)
    finally:
        pg_drop(verify)
    if loaded != facts:
        raise BackupError(f"the dump restores {loaded}, the database held {facts}")
    roles = scratch / f"globals_{stamp}.sql"
    # Role names and attributes, for a new server; passwords come from the inventory (vault)
    # or are generated again by deploy.yml, so no password hash sits in a backup.
    pg_tool(config, "pg_dumpall", "--globals-only", "--no-role-passwords", "--file", str(roles))
    files = [dump_file, roles]
    if kind in FULL_KINDS:
        conf = scratch / f"config_{stamp}.tar.gz"
        tar_paths(conf, [(p.lstrip("/"), Path(p)) for p in config.get("config_paths", [])])
        files.append(conf)
    return [encrypt(config, f) for f in files], facts


def pg_api_sessions(config: dict) -> int:
    with pg_connect("postgres") as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND usename = %s",
                            (config["db_name"], config["db_user"])).fetchone()[0]


def pg_check_set(config: dict, entry: dict, scratch: Path, name: str) -> dict:
    """The set's sums checked and its dump restored into `name`: that database's counts."""
    loaded = pg_load(config, decrypt(config, set_file(entry, "task_manager_", "dump"), scratch), name)
    expected = {key: entry.get(key) for key in loaded}
    if loaded != expected:
        raise BackupError(f"set {entry['stamp']} restores {loaded}, its manifest says {expected}")
    return loaded


def pg_first_good(config: dict, ordered: list[dict], selector: str, scratch: Path,
                  name: str) -> tuple[dict, dict, list[str]]:
    """The first set that passes every check, restored into `name`; its counts, and why the
    ones before it failed."""
    problems = []
    for entry in ordered:
        try:
            return entry, pg_check_set(config, entry, scratch, name), problems
        except Missing:
            raise  # gpg or the key file: every other set would fail the same way
        except (BackupError, OSError, subprocess.CalledProcessError, *driver_errors()) as exc:
            problems.append(str(exc))
            if selector != "latest-good":
                raise BackupError(str(exc)) from None
    raise NoUsableBackup("no backup set passes its checks: " + "; ".join(problems))


def pg_verify(config: dict, selector: str, kind: str | None) -> dict:
    """The set restore would use, restored into a scratch database, counted and dropped."""
    backup_dir = Path(config["backup_dir"])
    name = f"{config['db_name']}_verify"
    with locked(backup_dir):
        ordered = select_sets(config, selector, kind)
        scratch = Path(tempfile.mkdtemp(prefix=".verify-", dir=backup_dir))
        try:
            entry, facts, problems = pg_first_good(config, ordered, selector, scratch, name)
        finally:
            pg_drop(name)
            shutil.rmtree(scratch, ignore_errors=True)
    return verified(entry, "dump", problems, facts)


def pg_safety_copy(config: dict, backup_dir: Path, restoring: str, scratch: Path) -> tuple[str, str] | None:
    """A dump of the database as it is, kept as a safety set: the dump's path and its
    manifest's; None when it cannot be dumped."""
    if not pg_database_exists(config["db_name"]):
        return None
    stamp = new_stamp()
    target = scratch / f"task_manager_{stamp}.dump"
    try:
        facts = pg_dump_snapshot(config, target)
    except (BackupError, OSError, *driver_errors()) as exc:  # a damaged database is why we are here
        log(config, f"no safety dump of the current database ({exc}): it is kept as a database instead")
        return None
    safety_dir = backup_dir / "safety"
    safety_dir.mkdir(mode=0o700, exist_ok=True)
    target.chmod(0o600)
    target = target.rename(safety_dir / target.name)
    manifest = safety_dir / f"backup_{stamp}.json"
    manifest.write_text(json.dumps({
        "kind": "safety", "engine": "postgresql", "stamp": stamp,
        "label": f"database as it was before restoring {restoring}", "created_at": utc_now(), **facts,
        "files": {target.name: {"sha256": sha256(target), "bytes": target.stat().st_size}},
    }, indent=2) + "\n", encoding="utf-8")
    return str(target), str(manifest)


def pg_swap(config: dict, restored: str, safety: bool, stamp: str) -> str | None:
    """The restored database takes the live one's name. The replaced one is dropped when its
    safety dump exists, else kept under a name of its own (returned), so nothing is lost."""
    from psycopg import sql  # noqa: PLC0415

    live = config["db_name"]
    replaced = f"{live}_replaced_{stamp}"[:63]
    with pg_connect("postgres") as conn:
        if pg_database_exists(live):
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (live,))
            conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(live), sql.Identifier(replaced)))
        else:
            replaced = None
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(restored), sql.Identifier(live)))
        # Database-level rights are not in a dump: the deploy's, again (only the two roles connect).
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(live)))
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(live),
                                                                        sql.Identifier(config["db_user"])))
    if replaced and safety:
        pg_drop(replaced)
        return None
    return replaced


def pg_create(config: dict, kind: str, label: str | None) -> dict:
    return take_set(
        config, kind, label, room=lambda: pg_room_for(config, Path(config["backup_dir"])),
        build=lambda stamp, scratch: pg_build_set(config, kind, stamp, scratch),
        describe={"engine": "postgresql", "database": f"{config['db_name']} on {config.get('db_host') or 'this host'}",
                  "integrity": "ok", "release": None, "revision": None})


def pg_restore(config: dict, selector: str, kind: str | None) -> dict:
    sessions = pg_api_sessions(config)
    if sessions:
        raise BackupError(
            f"the API's role {config['db_user']} has {sessions} session(s) open on {config['db_name']}: "
            "stop the API on every app host first (restore.yml does): never restore under a running service")
    backup_dir = Path(config["backup_dir"])
    restored = f"{config['db_name']}_restore"
    with locked(backup_dir):
        ordered = select_sets(config, selector, kind)
        scratch = Path(tempfile.mkdtemp(prefix=".restore-", dir=backup_dir))
        try:
            entry, facts, problems = pg_first_good(config, ordered, selector, scratch, restored)
            safety = pg_safety_copy(config, backup_dir, entry["stamp"], scratch)
            kept = pg_swap(config, restored, safety is not None, new_stamp())
        except BaseException:
            pg_drop(restored)
            raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return {
        "restored": entry["manifest"], "stamp": entry["stamp"], "kind": entry["kind"], "source": "dump",
        "backup_created_at": entry.get("created_at"),
        # The damaged database's copy (a dump, or the database itself kept under another name
        # when it could not be dumped), and the manifest of the safety set that holds a dump.
        "safety_database": safety[0] if safety else (f"database {kept}" if kept else None),
        "safety_copy": safety[1] if safety else (f"database {kept}" if kept else None),
        "skipped": problems, **facts,
    }


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
    entries = manifests(config, args.kind)
    if args.json:
        print(json.dumps(entries, indent=2))
    else:
        for m in entries:
            print(f"{m['stamp']}  {m['kind']:<10} tasks={m.get('tasks')} release={m.get('release')}  {m['manifest']}")
    return 0


def run_prune(config: dict, args: argparse.Namespace) -> int:
    removed = prune(config, args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for path in removed:
        print(f"{verb} {path}")
    if removed:  # an idle prune writes nothing, so an idle log is not rotated for it
        log(config, f"prune: {verb} {len(removed)} files")
    return 0


def run_restore(config: dict, args: argparse.Namespace) -> int:
    result = restore(config, args.selector, args.source, args.kind)
    log(config, f"restore ok from {result['restored']} ({result['source']}): tasks={result.get('tasks')}")
    print(json.dumps(result))
    return 0


def run_verify(config: dict, args: argparse.Namespace) -> int:
    if not args.drill:
        print(json.dumps(verify(config, args.selector, args.source, args.kind)))
        return 0
    # The set `task-manager-offsite fetch --drill` put in the drill folder: the same checks,
    # then the folder goes, whatever they found (it is a copy of a copy).
    drill = Path(config["backup_dir"]) / DRILL_DIR
    if not drill.is_dir():
        raise NoUsableBackup(f"{drill} holds no set: task-manager-offsite fetch latest --drill puts one there")
    try:
        result = verify({**config, "backup_dir": str(drill)}, args.selector, args.source, args.kind)
    finally:
        shutil.rmtree(drill, ignore_errors=True)
    log(config, f"restore drill ok: {result.get('stamp')} holds tasks={result.get('tasks')}")
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
        record_run(config, kind, started, None)
        raise
    record_run(config, kind, started, manifest)
    log(config, f"{kind} backup ok: tasks={manifest.get('tasks')} {manifest['manifest']}")
    print(json.dumps(manifest))
    return 0


# Each kind's last run, for Prometheus: node_exporter's textfile collector reads the .prom
# file (the settings' metrics_file); the runs are kept as JSON beside it, since one run
# knows only its own kind.
BACKUP_METRICS = (
    ("last_success_timestamp_seconds", "When the kind's last verified set was made (Unix time)"),
    ("last_duration_seconds", "How long the kind's last run took, failed or not"),
    ("last_size_bytes", "The size of the kind's last verified set, every file"),
    ("last_verified", "1: the kind's last set passed every check before it was kept"),
    ("last_run_failed", "1: the kind's last run failed (no set was kept)"),
)


def record_run(config: dict, kind: str, started: float, manifest: dict | None) -> None:
    path = config.get("metrics_file")
    # An app host of a PostgreSQL deployment refuses every backup: none of its own to count.
    if not path or not Path(path).parent.is_dir() or not config.get("database_on_this_host", True):
        return
    state_path = Path(path).with_suffix(".json")
    try:
        state = read_own_state(state_path)
        run = state.setdefault(kind, {})
        run.update(last_duration_seconds=round(time.time() - started, 3), last_run_failed=int(manifest is None))
        if manifest is not None:
            run.update(last_success_timestamp_seconds=round(time.time(), 3), last_verified=1,
                       last_size_bytes=sum(f["bytes"] for f in manifest["files"].values()))
        write_public(state_path, json.dumps(state, sort_keys=True) + "\n")
        lines = []
        for name, text in BACKUP_METRICS:
            lines += [f"# HELP task_manager_backup_{name} {text}", f"# TYPE task_manager_backup_{name} gauge"]
            lines += [f'task_manager_backup_{name}{{kind="{kind}"}} {run[name]}'
                      for kind, run in sorted(state.items()) if name in run]
        write_public(Path(path), "\n".join(lines) + "\n")
    except (OSError, ValueError, KeyError) as exc:
        # The figures never fail a backup; the log says they are stale.
        log(config, f"metrics not written to {path}: {exc}")


def read_own_state(path: Path) -> dict:
    """The figures' state as this command left it: {} when there is none, or when a link
    stands at its name (never followed; the write that follows replaces it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return {}
        raise
    with os.fdopen(fd, encoding="utf-8") as handle:
        state = json.load(handle)
    return state if isinstance(state, dict) else {}


def write_public(path: Path, text: str) -> None:
    """Whole or not at all (node_exporter may read at any moment), readable by its user, never
    through a link: a new file (O_EXCL, a name nobody could plant) renamed over the name."""
    fd, scratch = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            os.fchmod(handle.fileno(), 0o644)
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


COMMANDS = {"create": run_create, "list": run_list, "prune": run_prune, "restore": run_restore, "verify": run_verify}


def describe(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"{exc.filename} is missing ({exc.strerror})"
    return str(exc)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="task-manager-backup", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="create", choices=tuple(COMMANDS))
    parser.add_argument("selector", nargs="?", default=None,
                        help="restore, verify: latest, latest-good, a stamp or a manifest")
    parser.add_argument("--from", dest="source", choices=("db", "dump"), default="db",
                        help="restore, verify: from the database copy (default) or the SQL dump")
    parser.add_argument("--kind", choices=PRUNED_KINDS, default=None,
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
        config = load_config()
        drop_privileges(config)
        return COMMANDS[args.command](config, args)
    except (NoDatabase, NoUsableBackup) as exc:
        print(f"task-manager-backup: {exc}", file=sys.stderr)
        return 3
    except (BackupError, OSError, sqlite3.Error, subprocess.CalledProcessError, *driver_errors()) as exc:
        message = f"FAILED: {describe(exc)}"
        if config:
            log(config, message)
        print(f"task-manager-backup: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
