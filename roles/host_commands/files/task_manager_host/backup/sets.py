"""Backup sets, either engine: a manifest backup_<stamp>.json beside its files in
backups/<kind>/. Taking one (under the lock, room checked, built in a scratch directory,
moved in with its manifest last), listing, choosing and pruning them, and their modes."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
import stat
import tarfile
import tempfile
from pathlib import Path

from task_manager_host import common
from task_manager_host.backup import settings
from task_manager_host.backup.errors import BackupError, NoUsableBackup


@contextlib.contextmanager
def locked(backup_dir: Path):
    # Never made here: a backup directory that is not there (an unmounted backup disk)
    # is a failure to report, not a place to start filling the system disk.
    settings.require_dir(backup_dir, "the backup directory")
    with (backup_dir / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # one backup or prune at a time
        yield


def require_room(where: Path, size: int, needed: int) -> None:
    """Refuse before writing anything when `needed` bytes do not fit in `where`."""
    free = shutil.disk_usage(where).free
    if free < needed:
        raise BackupError(
            f"not enough space in {where}: {free // 1048576} MB free, a backup of this "
            f"{size // 1048576} MB database needs about {needed // 1048576} MB there. Free space "
            "(maintenance.yml prunes old sets) or move it to a larger disk")


def new_stamp() -> str:
    return dt.datetime.now().strftime("%Y%m%d_%H%M%S_%f")


def release_info(config: dict) -> dict:
    current = Path(config["current_link"])
    info = {"release": None, "revision": None}
    with contextlib.suppress(OSError):
        info["release"] = os.path.basename(os.readlink(current))
    with contextlib.suppress(OSError, ValueError):
        record = json.loads((current / "RELEASE.json").read_text(encoding="utf-8"))
        info["revision"] = record.get("revision")
    return info


def tar_paths(target: Path, paths: list[tuple[str, Path]]) -> None:
    with tarfile.open(target, "w:gz") as tar:
        for arcname, path in paths:
            if path.exists():
                tar.add(path, arcname=arcname)


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
                "kind": kind, "label": label, "created_at": common.utc_now(), "stamp": stamp, **describe,
                "encrypted": bool(config.get("encrypt")), **facts,
                "files": {f.name: {"sha256": common.sha256(f), "bytes": f.stat().st_size} for f in files},
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
        for kind in settings.PRUNED_KINDS:
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
        if not path.exists() or common.sha256(path) != meta["sha256"]:
            raise BackupError(f"{path} is missing or does not match its manifest")
    pick = next((n for n in entry.get("files", {}) if n.startswith(prefix)), None)
    if pick is None:
        raise BackupError(f"set {entry['stamp']} has no {what}")
    return directory / pick


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


def verified(entry: dict, source: str, problems: list[str], facts: dict) -> dict:
    return {"verified": entry["manifest"], "stamp": entry["stamp"], "kind": entry["kind"], "source": source,
            "backup_created_at": entry.get("created_at"), "skipped": problems, **facts}
