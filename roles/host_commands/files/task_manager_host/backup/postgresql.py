"""The PostgreSQL engine (the db host, run as postgres): a set is a custom-format dump taken
in the snapshot its counts read, and the roles without their passwords. Every dump is
restored into a scratch database and counted before it is trusted; a restore builds the
database under a scratch name, keeps a dump of the current one as the safety set, and swaps
the names. Only the databases themselves are made, renamed and dropped as the superuser:
every dump is taken and loaded as the schema owner, and a dump holding objects the
migrations do not make is refused before it is loaded.

Connections go over the local socket by peer authentication: as postgres to the maintenance
database, as the schema owner (pg_ident.conf maps postgres to it) to the task manager's
own; libpq's PGHOST and PGPORT may point elsewhere (the tests do). psycopg (Debian's
python3-psycopg) is imported inside the functions: only the db host has it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from task_manager_host import common, paths
from task_manager_host.backup import crypto, sets, settings
from task_manager_host.backup.errors import BackupError, Missing, NoUsableBackup


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
    program = Path(config.get("postgresql_bin") or paths.PG_BIN) / "pg_restore"
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
    program = Path(config.get("postgresql_bin") or paths.PG_BIN) / tool
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
    sets.require_room(backup_dir, size, size + 16 * 1048576)
    sets.require_room(Path(data_dir), size, size + 64 * 1048576)


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
    if kind in settings.FULL_KINDS:
        conf = scratch / f"config_{stamp}.tar.gz"
        sets.tar_paths(conf, [(p.lstrip("/"), Path(p)) for p in config.get("config_paths", [])])
        files.append(conf)
    return [crypto.encrypt(config, f) for f in files], facts


def pg_api_sessions(config: dict) -> int:
    with pg_connect("postgres") as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND usename = %s",
                            (config["db_name"], config["db_user"])).fetchone()[0]


def pg_check_set(config: dict, entry: dict, scratch: Path, name: str) -> dict:
    """The set's sums checked and its dump restored into `name`: that database's counts."""
    loaded = pg_load(config, crypto.decrypt(config, sets.set_file(entry, "task_manager_", "dump"), scratch), name)
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
    with sets.locked(backup_dir):
        ordered = sets.select_sets(config, selector, kind)
        scratch = Path(tempfile.mkdtemp(prefix=".verify-", dir=backup_dir))
        try:
            entry, facts, problems = pg_first_good(config, ordered, selector, scratch, name)
        finally:
            pg_drop(name)
            shutil.rmtree(scratch, ignore_errors=True)
    return sets.verified(entry, "dump", problems, facts)


def pg_safety_copy(config: dict, backup_dir: Path, restoring: str, scratch: Path) -> tuple[str, str] | None:
    """A dump of the database as it is, kept as a safety set: the dump's path and its
    manifest's; None when it cannot be dumped."""
    if not pg_database_exists(config["db_name"]):
        return None
    stamp = sets.new_stamp()
    target = scratch / f"task_manager_{stamp}.dump"
    try:
        facts = pg_dump_snapshot(config, target)
    except (BackupError, OSError, *driver_errors()) as exc:  # a damaged database is why we are here
        settings.log(config, f"no safety dump of the current database ({exc}): it is kept as a database instead")
        return None
    safety_dir = backup_dir / "safety"
    safety_dir.mkdir(mode=0o700, exist_ok=True)
    target.chmod(0o600)
    target = target.rename(safety_dir / target.name)
    manifest = safety_dir / f"backup_{stamp}.json"
    manifest.write_text(json.dumps({
        "kind": "safety", "engine": "postgresql", "stamp": stamp,
        "label": f"database as it was before restoring {restoring}", "created_at": common.utc_now(), **facts,
        "files": {target.name: {"sha256": common.sha256(target), "bytes": target.stat().st_size}},
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
    return sets.take_set(
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
    with sets.locked(backup_dir):
        ordered = sets.select_sets(config, selector, kind)
        scratch = Path(tempfile.mkdtemp(prefix=".restore-", dir=backup_dir))
        try:
            entry, facts, problems = pg_first_good(config, ordered, selector, scratch, restored)
            safety = pg_safety_copy(config, backup_dir, entry["stamp"], scratch)
            kept = pg_swap(config, restored, safety is not None, sets.new_stamp())
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
