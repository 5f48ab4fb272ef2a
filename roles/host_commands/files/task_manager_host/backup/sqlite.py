"""The SQLite engine (an app host): a set is a copy through SQLite's online backup API and
its SQL dump, both proven before the set is kept; a restore rebuilds the database from
either in a scratch directory beside it, keeps the current one aside as a safety set, and
renames the rebuilt file into place."""

from __future__ import annotations

import concurrent.futures
import contextlib
import gzip
import hashlib
import json
import os
import queue
import shutil
import sqlite3
import subprocess
import tempfile
import threading
from pathlib import Path

from task_manager_host import common, paths
from task_manager_host.backup import crypto, sets, settings
from task_manager_host.backup.errors import BackupError, Missing, NoDatabase, NoUsableBackup


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
    if not os.access(paths.SQLITE3, os.X_OK):
        dump(copy, dump_file)
        verify_dump(dump_file, expected, scratch_db)
        return
    written = hashlib.sha256()
    # The manual's own `sqlite3 ... .dump`, the format restore.yml reads back.
    # S603: fixed absolute programs and argument lists, no shell.
    with subprocess.Popen([paths.SQLITE3, "-bail", str(scratch_db)], stdin=subprocess.PIPE,  # noqa: S603
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
                    [paths.SQLITE3, str(copy), ".dump"], stdout=subprocess.PIPE) as proc:
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


def room_for(database: Path, backup_dir: Path) -> None:
    """Refuse before writing anything when the set cannot fit: a backup that fills the
    disk half-way helps nobody and can stop the service's own writes."""
    size = database.stat().st_size
    wal = database.with_name(database.name + "-wal")
    if wal.exists():
        size += wal.stat().st_size
    # The copy, the dump loaded back to verify it, and the compressed dump, plus a margin.
    sets.require_room(backup_dir, size, 2 * size + size // 2 + 16 * 1048576)


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
    if kind in settings.FULL_KINDS:
        logs = scratch / f"logs_{stamp}.tar.gz"
        sets.tar_paths(logs, [("logs", Path(config["log_dir"]))])
        conf = scratch / f"config_{stamp}.tar.gz"
        sets.tar_paths(conf, [(p.lstrip("/"), Path(p)) for p in config.get("config_paths", [])])
        files += [logs, conf]
    return [crypto.encrypt(config, f) for f in files], facts


def create(config: dict, kind: str, label: str | None) -> dict:
    database = Path(config["database"])
    backup_dir = Path(config["backup_dir"])
    # Only the database file itself may be absent ("nothing to back up yet"); a missing
    # instance directory means a broken or half-made host, and that is a failure.
    settings.require_dir(database.parent, "the instance directory")
    if not database.exists():
        raise NoDatabase(f"no database at {database}: nothing to back up yet")
    return sets.take_set(
        config, kind, label, room=lambda: room_for(database, backup_dir),
        build=lambda stamp, scratch: build_set(config, database, kind, stamp, scratch),
        describe={"engine": "sqlite", "database": str(database), "integrity": "ok", **sets.release_info(config)})


def check_set(config: dict, entry: dict, source: str, scratch: Path) -> Path:
    """A verified, decrypted candidate database file built from one backup set."""
    chosen = sets.set_file(entry, "task_manager_" if source == "db" else "dump_", f"{source} file")
    plain = crypto.decrypt(config, chosen, scratch)
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
    if not os.path.exists(paths.SYSTEMCTL) or not config.get("service"):
        return False
    units = [f"{config['service']}.service", f"{config['service']}.socket"]
    # S603: a fixed absolute program and an argument list, no shell.
    return subprocess.run([paths.SYSTEMCTL, "is-active", "--quiet", *units], check=False).returncode == 0  # noqa: S603


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
    stamp = sets.new_stamp()
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
            kept[target.name] = {"sha256": common.sha256(target), "bytes": target.stat().st_size}
    manifest = safety_dir / f"backup_{stamp}.json"
    manifest.write_text(json.dumps({
        "kind": "safety", "stamp": stamp, "label": f"database as it was before restoring {restoring}",
        "created_at": common.utc_now(), "files": kept,
    }, indent=2) + "\n", encoding="utf-8")
    return str(safety_dir / f"task_manager_{stamp}.db"), str(manifest)


@contextlib.contextmanager
def chosen_set(config: dict, selector: str, source: str, kind: str | None, purpose: str):
    """Under the backup lock: the first set that passes every check, rebuilt as a candidate
    file in a scratch directory beside the database (removed afterwards), with its counts."""
    database = Path(config["database"])
    settings.require_dir(database.parent, "the instance directory")
    with sets.locked(Path(config["backup_dir"])):
        ordered = sets.select_sets(config, selector, kind)
        scratch = Path(tempfile.mkdtemp(prefix=f".{purpose}-", dir=database.parent))
        try:
            entry, candidate, problems = first_good(config, ordered, selector, source, scratch)
            yield entry, candidate, problems, counts(candidate)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def verify(config: dict, selector: str, source: str, kind: str | None) -> dict:
    """Every check restore makes on the set it would use (sums, decryption, integrity,
    counts), on a scratch copy: nothing live is touched, the API may keep serving."""
    with chosen_set(config, selector, source, kind, "verify") as (entry, _candidate, problems, facts):
        return sets.verified(entry, source, problems, facts)


def restore(config: dict, selector: str, source: str, kind: str | None) -> dict:
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
