"""task-manager-backup's settings: the host's layout and the backup settings, read from the
files the environment names (TASK_MANAGER_LAYOUT, TASK_MANAGER_BACKUP_CONFIG), the kinds of
set, the log, and which database engine this host backs up."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from task_manager_host import common, paths
from task_manager_host.backup.errors import BackupError, Missing

KINDS = ("hourly", "daily", "weekly", "monthly", "manual", "pre-update")
PRUNED_KINDS = (*KINDS, "safety")
FULL_KINDS = ("weekly", "monthly")
# Where `task-manager-offsite fetch --drill` puts a set for a restore drill: never a kind's folder.
DRILL_DIR = "drill"


def config_file() -> Path:
    """Retention, encryption, what a full set holds."""
    return Path(os.environ.get("TASK_MANAGER_BACKUP_CONFIG", paths.BACKUP_CONFIG))


def layout_file() -> Path:
    """Where things are: written by the base role."""
    return Path(os.environ.get("TASK_MANAGER_LAYOUT", paths.LAYOUT))


def load_config() -> dict:
    """The host's layout (database, directories, service account), then the backup settings."""
    return {**common.read_json(layout_file(), error=BackupError), **common.read_json(config_file(), error=BackupError)}


def log(config: dict, message: str) -> None:
    line = f"{common.local_stamp()} backup: {message}"
    print(line, file=sys.stderr)
    with contextlib.suppress(OSError, KeyError, TypeError):
        log_file = Path(config["log_dir"]) / "backup.log"
        with log_file.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")


def require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise Missing(f"{what} {path} is missing")


def engine(config: dict) -> str:
    """sqlite or postgresql; refused on a host that does not hold the database."""
    name = config.get("database_engine", "sqlite")
    if not config.get("database_on_this_host", True):
        # Said plainly rather than "nothing to back up yet": the data exists, elsewhere.
        raise BackupError(
            f"the database is {name} on {config.get('db_host') or 'the db host'}: its backups are taken "
            "and restored there (backup.yml and restore.yml do)")
    return name
