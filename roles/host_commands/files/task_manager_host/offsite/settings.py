"""The off-host copy's settings (its own, merged on a source with the layout and the backup
settings), its failures and its log line."""

from __future__ import annotations

import os
import sys
import syslog
from pathlib import Path

from task_manager_host import common, paths


class OffsiteError(common.CommandError):
    """The command failed: exit status 1."""


class NothingToFetch(Exception):
    """No snapshot matches: exit status 3."""


# What each side's settings must name: the source's (merged with the layout and the backup
# settings) and the backup host's keeper of one source's repository.
REQUIRED = {"source": ("repository", "password_file", "host", "backup_dir", "state_dir", "offsite_user"),
            "keeper": ("repository", "password_file", "host", "run_as_user")}
KEEPER_COMMANDS = ("forget", "list")


def load_config() -> dict:
    env = os.environ.get
    own = common.read_json(Path(env("TASK_MANAGER_OFFSITE_CONFIG", paths.OFFSITE_CONFIG)), error=OffsiteError)
    config = {}
    if not own.get("keeper"):
        for name, default in (("TASK_MANAGER_LAYOUT", paths.LAYOUT),
                              ("TASK_MANAGER_BACKUP_CONFIG", paths.BACKUP_CONFIG)):
            config.update(common.read_json(Path(env(name, default)), error=OffsiteError))
    config.update(own)
    for key in REQUIRED["keeper" if config.get("keeper") else "source"]:
        if not config.get(key):
            raise OffsiteError(f"the settings name no {key}: deploy.yml writes them when the inventory has a backup "
                               "host or an offsite repository")
    return config


def log(_config: dict, message: str) -> None:
    """stderr (cron's mail, the runbook's output) and the journal, under task-manager-offsite:
    the off-host account writes no other account's log."""
    print(f"{common.local_stamp()} offsite: {message}", file=sys.stderr)
    syslog.openlog("task-manager-offsite", 0, syslog.LOG_DAEMON)
    syslog.syslog(syslog.LOG_INFO, message)
