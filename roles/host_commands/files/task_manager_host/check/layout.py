"""Which host this is and where the check's files are: the layout the base role writes,
the state file that keeps the time of the previous check, and the release history. The
environment may point each elsewhere (the tests do); the defaults are task_manager_host.paths',
read at call time."""

from __future__ import annotations

import os
from pathlib import Path

from task_manager_host import common, paths


class CheckError(common.CommandError):
    """The check itself could not run: exit status 1."""


def config_file() -> Path:
    return Path(os.environ.get("TASK_MANAGER_LAYOUT", paths.LAYOUT))


def state_file() -> Path:
    return Path(os.environ.get("TASK_MANAGER_CHECK_STATE", paths.CHECK_STATE))


def reports_dir() -> Path:
    return Path(os.environ.get("TASK_MANAGER_CHECK_REPORTS", paths.CHECK_REPORTS))


def facts_file(config: dict) -> Path:
    return Path(os.environ.get("TASK_MANAGER_CHECK_FACTS") or config.get("facts_file") or paths.FACTS)


def load_config() -> dict:
    return common.read_json(config_file(), error=CheckError)


def holds_database(config: dict) -> bool:
    """Whether the database and its backups are kept on this host. Layouts written before
    PostgreSQL have no such key: a single SQLite host holds it."""
    # A string "False" would be truthy; the layout is JSON that people also edit by hand.
    return str(config.get("database_on_this_host", True)).lower() != "false"


def host_kind(config: dict) -> str:
    """database on the PostgreSQL host, app everywhere else (a SQLite host included)."""
    if config.get("database_engine") == "postgresql" and holds_database(config):
        return "database"
    return "app"
