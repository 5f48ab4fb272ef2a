#!/usr/bin/python3
"""task-manager-offsite: the verified local backup sets, copied off the host with restic.

Run by cron after each local backup (and hourly when configured) and by the runbooks.
Uses only Debian's python3 and restic. It reads where things are from the host's layout
and the backup settings (as task-manager-backup does), and its own settings from
TASK_MANAGER_OFFSITE_CONFIG (default /etc/task-manager/offsite.json: the repository,
its password file, how long each kind of set is kept, where its state is written).

Started as root, it runs as the off-host account (offsite_user), which alone reads the
repository's password and key: the service's account reaches neither. That account reads
the sets (the backup directory's group) and writes only its own directory (state_dir:
restic's cache, the state, its figures, a fetch's spool). A fetched set is put in place
by a second child running as the backup account, so root writes nothing anywhere.

On the backup host, with "keeper": true in its settings, the same command keeps one
source's repository: forget (each kind's retention, then prune) and list, as that source's
account, on the repository's directory. The sources reach that directory only through
`rclone serve restic --append-only`, so none of them can delete or rewrite a snapshot.

  task-manager-offsite init        create the repository unless it exists
  task-manager-offsite copy        every local set not yet in the repository, oldest first
  task-manager-offsite forget      each kind's retention, then restic prune
  task-manager-offsite check       restic check, reading back a sample of the data
  task-manager-offsite list        this host's snapshots
  task-manager-offsite fetch latest|<stamp>|<snapshot id> [--kind KIND] [--drill]
                                   a snapshot's set back into the backup directory; with
                                   --drill into its drill/ folder instead, apart from the
                                   live sets, for `task-manager-backup verify --drill`
  task-manager-offsite status      the last copy and check, and the newest snapshot
  task-manager-offsite add-key     a second key (its password on stdin) for the backup host's
                                   retention; nothing when that password opens it already
  task-manager-offsite share       the backup account lets the off-host account read the sets
                                   made before it existed (group and mode; deploy.yml runs it)

Each local set becomes one snapshot, tagged task-manager, kind:<kind> and stamp:<stamp>,
under the host's inventory name (--host), so that a new host of the same name finds the
old one's snapshots. A set is copied only when every file matches its manifest's sha256.
Every command answers in JSON on stdout. copy and check record their outcome in the state
file, which check.yml reads; a failure there never touches the local sets.

Exit status: 0 done, 1 failed (the message names the cause), 2 bad usage, 3 nothing
to fetch.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import syslog
import tempfile
from pathlib import Path

DEFAULT_CONFIG = "/etc/task-manager/offsite.json"
DEFAULT_BACKUP_CONFIG = "/etc/task-manager/backup.json"
DEFAULT_LAYOUT = "/etc/task-manager/layout.json"
RESTIC = "/usr/bin/restic"  # absolute: root starts this command, PATH decides nothing
TAG = "task-manager"
# The backup directory's folder for a restore drill's set (task-manager-backup knows it too).
DRILL_DIR = "drill"
# restic prints its progress and errors on stderr; a message keeps the last lines.
MESSAGE_LINES = 6


class OffsiteError(Exception):
    """The command failed: exit status 1."""


class NothingToFetch(Exception):
    """No snapshot matches: exit status 3."""


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OffsiteError(f"cannot read {path}: {exc}") from exc


# What each side's settings must name: the source's (merged with the layout and the backup
# settings) and the backup host's keeper of one source's repository.
REQUIRED = {"source": ("repository", "password_file", "host", "backup_dir", "state_dir", "offsite_user"),
            "keeper": ("repository", "password_file", "host", "run_as_user")}
KEEPER_COMMANDS = ("forget", "list")


def load_config() -> dict:
    env = os.environ.get
    own = read_json(Path(env("TASK_MANAGER_OFFSITE_CONFIG", DEFAULT_CONFIG)))
    config = {}
    if not own.get("keeper"):
        for name, default in (("TASK_MANAGER_LAYOUT", DEFAULT_LAYOUT),
                              ("TASK_MANAGER_BACKUP_CONFIG", DEFAULT_BACKUP_CONFIG)):
            config.update(read_json(Path(env(name, default))))
    config.update(own)
    for key in REQUIRED["keeper" if config.get("keeper") else "source"]:
        if not config.get(key):
            raise OffsiteError(f"the settings name no {key}: deploy.yml writes them when the inventory has a backup "
                               "host or an offsite repository")
    return config


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def log(_config: dict, message: str) -> None:
    """stderr (cron's mail, the runbook's output) and the journal, under task-manager-offsite:
    the off-host account writes no other account's log."""
    print(f"{dt.datetime.now().strftime('%Y-%m-%d %H:%M:%S')} offsite: {message}", file=sys.stderr)
    syslog.openlog("task-manager-offsite", 0, syslog.LOG_DAEMON)
    syslog.syslog(syslog.LOG_INFO, message)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------- restic


def restic_env(config: dict) -> dict:
    """restic's environment: nothing inherited but what it needs, and the backend's
    credentials (an S3 key, a REST server's password) from the settings' env file."""
    home = config.get("state_dir") or "/nonexistent"
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "LC_ALL": "C.UTF-8", "RESTIC_CACHE_DIR": str(Path(home) / "cache")}
    env_file = config.get("env_file")
    if env_file and Path(env_file).is_file():
        for line in Path(env_file).read_text(encoding="utf-8").splitlines():
            name, sep, value = line.partition("=")
            if sep and name.strip() and not name.lstrip().startswith("#"):
                env[name.strip()] = value.strip()
    return env


def restic(config: dict, *args: str, timeout: float = 3600, stdin: str | None = None,
           password: str | None = None) -> str:
    """restic with the settings' repository and password file (or a password given, in its
    environment: never a command line or a file); its stdout, or an error naming what
    restic said."""
    if not os.access(RESTIC, os.X_OK):
        raise OffsiteError(f"{RESTIC} is missing: off-host copies need restic (apt install restic)")
    env = restic_env(config)
    argv = [RESTIC, "--repo", config["repository"], "--quiet"]
    if password is not None:
        env["RESTIC_PASSWORD"] = password
    elif Path(config["password_file"]).is_file():
        argv[3:3] = ["--password-file", config["password_file"]]
    else:
        raise OffsiteError(f"the repository's password file {config['password_file']} is missing")
    if config.get("rclone_program"):
        # The backup host's forced command decides what runs there (rclone serve restic
        # --append-only on this host's repository): what is sent is for the log only.
        argv += ["--option", f"rclone.program={config['rclone_program']}",
                 "--option", "rclone.args=serve restic --stdio --append-only"]
    if config.get("keeper"):
        argv.append("--no-cache")
    try:
        # S603: a fixed absolute program and an argument list, no shell.
        done = subprocess.run([*argv, *args], capture_output=True, text=True, env=env,  # noqa: S603
                              timeout=timeout, check=False, input=stdin)
    except subprocess.TimeoutExpired:
        raise OffsiteError(f"restic {args[0]} did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        said = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        raise OffsiteError(f"restic {args[0]} failed (exit {done.returncode}) on {config['repository']}: "
                           + " / ".join(said[-MESSAGE_LINES:]))
    return done.stdout


def snapshots(config: dict) -> list[dict]:
    """This host's snapshots, oldest first: id, time, kind and stamp."""
    found = []
    for snap in json.loads(restic(config, "snapshots", "--json", "--host", config["host"], "--tag", TAG) or "[]"):
        tags = dict(tag.split(":", 1) for tag in snap.get("tags", []) if ":" in tag)
        found.append({"id": snap["id"], "short_id": snap.get("short_id", snap["id"][:8]), "time": snap["time"],
                      "kind": tags.get("kind"), "stamp": tags.get("stamp")})
    return sorted(found, key=lambda s: s["time"])


# ---------------------------------------------------------------------------- local sets


def local_sets(config: dict) -> list[dict]:
    """The local sets worth copying, oldest first. Not a safety set (a restore's leftover),
    nor the set of an empty database (a rebuilt host's first backup): off the host it would
    only stand, as the newest, in front of the sets a rebuild needs."""
    found = []
    for path in sorted(Path(config["backup_dir"]).glob("*/backup_*.json")):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("kind") != "safety" and data.get("stamp") and (data.get("users") or data.get("tasks")):
                found.append({**data, "manifest": str(path), "dir": str(path.parent)})
    return sorted(found, key=lambda m: m["stamp"])


def regular_file(path: Path) -> bool:
    """A regular file itself, not a link to one."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def set_paths(entry: dict) -> list[Path]:
    """The manifest and its files, once every file matches the manifest's sha256."""
    directory = Path(entry["dir"])
    paths = [Path(entry["manifest"])]
    for name, meta in entry.get("files", {}).items():
        path = directory / name
        if not FILE_NAME.fullmatch(name) or not regular_file(path) or sha256(path) != meta.get("sha256"):
            raise OffsiteError(f"{path} is missing or does not match its manifest: set {entry['stamp']} not copied")
        paths.append(path)
    return paths


@contextlib.contextmanager
def locked(config: dict):
    if config.get("keeper"):  # restic's own lock in the repository is enough there
        yield
        return
    backup_dir, lock = Path(config["backup_dir"]), Path(config["state_dir"]) / "lock"
    if not backup_dir.is_dir():
        raise OffsiteError(f"the backup directory {backup_dir} is missing")
    if os.geteuid() == 0:
        # Root (a fetch) creates nothing in the off-host account's directory: the account
        # makes the lock, and root opens that file of the account's, never through a link.
        in_child(config["offsite_user"], make_lock, lock)
        fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW)
        if os.fstat(fd).st_uid != pwd.getpwnam(config["offsite_user"]).pw_uid:
            os.close(fd)
            raise OffsiteError(f"{lock} is not the off-host account's: not used")
    else:
        fd = make_lock(lock, keep=True)
    with os.fdopen(fd, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # one copy, forget or fetch at a time
        yield


def make_lock(lock: Path, keep: bool = False):
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    if keep:
        return fd
    os.close(fd)
    return {}


# ---------------------------------------------------------------------------- state


def state_file(config: dict) -> Path:
    return Path(config["state_dir"]) / "state.json"


def read_state(config: dict) -> dict:
    with contextlib.suppress(OSError, ValueError):
        return json.loads(state_file(config).read_text(encoding="utf-8"))
    return {}


def record(config: dict, what: str, outcome: dict) -> None:
    """The outcome of a copy or a check, and when each last succeeded."""
    state = read_state(config)
    state[what] = outcome
    if outcome["ok"]:
        state[f"{what}_ok_at"] = outcome["at"]
    write_whole(state_file(config), json.dumps(state, indent=2) + "\n", 0o644)
    write_metrics(config, state)


def write_whole(path: Path, text: str, mode: int) -> None:
    """Whole or not at all, never through a link: a new file (O_EXCL, a name nobody could
    plant) renamed over the name."""
    fd, scratch = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            os.fchmod(handle.fileno(), mode)
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


def unix_time(stamp: str | None) -> float | None:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else None


# For Prometheus: the last copy and check, from the state, in the settings' metrics_file in
# the state directory (none: not written). The figures' unit, which writes node_exporter's
# textfile directory, relays these lines: this account writes nowhere but its own directory.
OFFSITE_METRICS = (
    ("last_run_failed", "1: the last copy or check failed", lambda s, w: int(not s[w]["ok"])),
    ("last_success_timestamp_seconds", "When the copy or check last succeeded (Unix time)",
     lambda s, w: unix_time(s.get(f"{w}_ok_at"))),
    ("last_added_bytes", "What the last copy added to the repository, before compression",
     lambda s, w: sum(c.get("bytes_added") or 0 for c in s[w].get("copied", [])) if w == "copy" else None),
)


def write_metrics(config: dict, state: dict) -> None:
    path = config.get("offsite_metrics_file")
    if not path or not Path(path).parent.is_dir():
        return
    lines = []
    for name, text, value in OFFSITE_METRICS:
        lines += [f"# HELP task_manager_offsite_{name} {text}", f"# TYPE task_manager_offsite_{name} gauge"]
        for what in ("copy", "check"):
            figure = value(state, what) if what in state else None
            if figure is not None:
                lines.append(f'task_manager_offsite_{name}{{what="{what}"}} {figure}')
    try:
        write_whole(Path(path), "\n".join(lines) + "\n", 0o644)
    except OSError as exc:
        log(config, f"metrics not written to {path}: {exc}")


# ---------------------------------------------------------------------------- commands


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
    started = now()
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


# A snapshot dated more than this far ahead of this host's clock is not trusted: whoever
# holds a source could date snapshots years ahead to make restic's own --keep-within
# (which counts back from the newest snapshot) forget every real one.
CLOCK_SKEW = dt.timedelta(hours=1)


def snapshot_time(snap: dict) -> dt.datetime:
    return dt.datetime.fromisoformat(snap["time"])  # restic's nanoseconds: Python 3.11 truncates them


def in_future(snap: dict, at: dt.datetime) -> bool:
    return snapshot_time(snap) > at + CLOCK_SKEW


def to_forget(found: list[dict], days: dict, keep_min: int, at: dt.datetime) -> tuple[list[dict], list[dict]]:
    """By this host's clock, for each kind: keep what was taken within the kind's days and
    the newest keep_min; the rest goes. Snapshots dated in the future are neither kept in
    anyone's place nor removed: they are named (a wrong clock, or someone's forgery)."""
    future = [s for s in found if in_future(s, at)]
    going = []
    for kind in sorted({s["kind"] or "" for s in found}):
        dated = sorted((s for s in found if (s["kind"] or "") == kind and s not in future), key=snapshot_time)
        cutoff = at - dt.timedelta(days=int(days.get(kind, days.get("default", 30))))
        newest = dated[-keep_min:] if keep_min > 0 else []
        going += [s for s in dated if snapshot_time(s) < cutoff and s not in newest]
    return going, future


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
    started = now()
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


def choose(found: list[dict], selector: str, kind: str | None) -> dict:
    found = [s for s in found if s["stamp"] and (kind is None or s["kind"] == kind)]
    if selector == "latest":
        # Never one dated in the future: it would stand in front of every real copy.
        at = dt.datetime.now(dt.UTC)
        matches = [s for s in found if not in_future(s, at)][-1:]
    else:
        matches = [s for s in found if selector in (s["stamp"], s["id"], s["short_id"])
                   or (len(selector) >= 8 and s["id"].startswith(selector))]
    if not matches:
        raise NothingToFetch(f"no snapshot of {'this host' if kind is None else kind + ' sets'} matches {selector!r}")
    return matches[-1]


def fetch_to_spool(config: dict, args) -> dict:
    """As the off-host account: the chosen snapshot restored into the spool, every file
    checked against its manifest. The set's entry, its files named by the spool."""
    spool = Path(config["state_dir"]) / "fetch"
    shutil.rmtree(spool, ignore_errors=True)
    spool.mkdir(mode=0o750)
    snap = choose(snapshots(config), args.selector, args.kind)
    restic(config, "restore", snap["id"], "--target", str(spool))
    plain = plain_tree(spool, snap["short_id"])
    manifests = list(spool.rglob("backup_*.json"))
    if len(manifests) != 1:
        raise OffsiteError(f"snapshot {snap['short_id']} holds {len(manifests)} manifests, not one")
    entry = {**read_json(manifests[0]), "manifest": str(manifests[0]), "dir": str(manifests[0].parent)}
    set_paths(entry)
    for path, is_dir in plain:  # the backup account reads them through the group
        set_mode_no_follow(path, 0o750 if is_dir else 0o640)
    return {"snapshot": snap, "entry": entry}


def plain_tree(root: Path, name: str) -> list[tuple[Path, bool]]:
    """Every path under root, each a folder or a regular file: a snapshot that holds a link
    (to this account's password, say) or a device is refused before anything reads it."""
    found = []
    for folder, dirs, files in os.walk(root):
        for entry in [*dirs, *files]:
            path = Path(folder) / entry
            mode = os.lstat(path).st_mode
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise OffsiteError(f"snapshot {name} holds {path.relative_to(root)}, which is no plain file or folder: "
                                   "refused, nothing placed")
            found.append((path, stat.S_ISDIR(mode)))
    return found


def set_mode_no_follow(path: Path, mode: int) -> None:
    """chmod through a descriptor opened without following a link."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


# A set's kind names its folder, and a file's name its file there: nothing else is taken
# from a snapshot, whose contents whoever held the source may have written.
KIND = re.compile(r"[a-z]{1,20}")
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")


def copy_checked(source: Path, target_dir: Path, owner: int, sha: str | None) -> Path:
    """One spool file into the target folder as a new file renamed over its name: opened
    without following a link, a regular file of the spool's owner, hashed as it is copied."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:  # a link (ELOOP), or gone
        raise OffsiteError(f"{source} is not a file the off-host account fetched ({exc.strerror}): "
                           "nothing placed") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != owner:
            raise OffsiteError(f"{source} is not a file the off-host account fetched: nothing placed")
        digest = hashlib.sha256()
        out_fd, scratch = tempfile.mkstemp(prefix=".fetch-", dir=target_dir)
        try:
            with os.fdopen(out_fd, "wb") as out:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
                os.fchmod(out.fileno(), 0o640)
            if sha is not None and digest.hexdigest() != sha:
                raise OffsiteError(f"{source} does not match its manifest: nothing placed")
            os.replace(scratch, target_dir / source.name)
            return target_dir / source.name
        except BaseException:
            Path(scratch).unlink(missing_ok=True)
            raise


def place(config: dict, fetched: dict, drill: bool) -> dict:
    """As the backup account: the spool's set copied into backups/<kind>/ (or drill/<kind>/,
    never beside the live sets), files first and the manifest last, each checked again as
    it is copied; a set that does not check leaves nothing behind."""
    entry, backup_dir = fetched["entry"], Path(config["backup_dir"])
    kind, files = str(entry.get("kind")), entry.get("files") or {}
    names = [*files, Path(entry["manifest"]).name]
    if not KIND.fullmatch(kind) or kind in ("safety", DRILL_DIR) or not all(FILE_NAME.fullmatch(n) for n in names):
        raise OffsiteError(f"the fetched set names a kind or a file that is not a set's ({kind!r}): nothing placed")
    spool_dir = Path(entry["dir"])
    owner = os.lstat(Path(config["state_dir"]) / "fetch").st_uid
    if drill:
        shutil.rmtree(backup_dir / DRILL_DIR, ignore_errors=True)
        (backup_dir / DRILL_DIR).mkdir(mode=0o750)
    target = backup_dir / (DRILL_DIR if drill else "") / kind
    target.mkdir(mode=0o750, exist_ok=True)
    manifest = target / names[-1]
    changed = not manifest.exists()
    placed: list[Path] = []
    if changed:
        try:
            for name in names:
                sha = (files.get(name) or {}).get("sha256") if name in files else None
                placed.append(copy_checked(spool_dir / name, target, owner, sha))
        except BaseException:
            for path in placed:
                path.unlink(missing_ok=True)
            raise
    return {"changed": changed, "manifest": str(manifest)}


def clear_spool(config: dict) -> dict:
    shutil.rmtree(Path(config["state_dir"]) / "fetch", ignore_errors=True)
    return {}


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


def backup_account(config: dict) -> str:
    return config.get("run_as_user") or config["user"]


def become(user: str) -> None:
    """This process, from root, to the account: its own groups (the backup directory's for
    the off-host account), nothing else. As any other account: already where it runs."""
    if os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam(user)
        grp.getgrgid(entry.pw_gid)
    except KeyError:
        raise OffsiteError(f"the account {user} does not exist: deploy.yml makes it") from None
    os.initgroups(user, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)


def in_child(user: str, work, *args):
    """work(*args) in a child running as the account; its JSON answer, or its failure raised
    here. The parent, root, stays root only to start the next child."""
    if os.geteuid() != 0:
        return work(*args)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the parent's code
        os.close(read_end)
        try:
            become(user)
            answer = {"ok": work(*args)}
        except NothingToFetch as exc:
            answer = {"nothing": str(exc)}
        except (OffsiteError, OSError, ValueError) as exc:
            answer = {"error": str(exc)}
        except BaseException as exc:  # whatever it was, the parent says it
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        with os.fdopen(write_end, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(answer))
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, encoding="utf-8") as handle:
        said = handle.read()
    os.waitpid(pid, 0)
    answer = json.loads(said) if said else {"error": f"the child running as {user} died"}
    if "nothing" in answer:
        raise NothingToFetch(answer["nothing"])
    if "error" in answer:
        raise OffsiteError(answer["error"])
    return answer["ok"]


def run_as(config: dict, command: str) -> str:
    """Who runs the command: the backup account shares its sets; a fetch starts as root and
    runs each part as its account; everything else runs as the off-host account (on the
    backup host: the source's account)."""
    if config.get("keeper"):
        return config["run_as_user"]
    return {"share": backup_account(config), "fetch": "root"}.get(command, config["offsite_user"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="task-manager-offsite", description=__doc__.split("\n\n")[0])
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


if __name__ == "__main__":
    sys.exit(main())
