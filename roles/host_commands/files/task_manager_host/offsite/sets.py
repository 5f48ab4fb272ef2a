"""The local backup sets: which are worth copying off the host, their files checked against
the manifest, and the names a set's kind and files may have."""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from pathlib import Path

from task_manager_host import common
from task_manager_host.offsite.settings import OffsiteError

# The backup directory's folder for a restore drill's set (task-manager-backup knows it too).
DRILL_DIR = "drill"

# A set's kind names its folder, and a file's name its file there: nothing else is taken
# from a snapshot, whose contents whoever held the source may have written.
KIND = re.compile(r"[a-z]{1,20}")
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")


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
        if not FILE_NAME.fullmatch(name) or not regular_file(path) or common.sha256(path) != meta.get("sha256"):
            raise OffsiteError(f"{path} is missing or does not match its manifest: set {entry['stamp']} not copied")
        paths.append(path)
    return paths
