"""How task-manager-backup fails, by exit status: BackupError and Missing are 1, NoDatabase
and NoUsableBackup are 3 (nothing there to work on, which the runbooks tell apart)."""

from __future__ import annotations

from task_manager_host.common import CommandError


class BackupError(CommandError):
    """The command failed: exit status 1."""


class Missing(BackupError):
    """Something the command needs is not there (a directory, gpg, the key file): exit 1.
    Never a reason to try an older set: every set would fail the same way."""


class NoDatabase(Exception):
    """The configured database file does not exist yet: nothing to back up (exit 3)."""


class NoUsableBackup(Exception):
    """No backup set matches or passes its checks (exit 3)."""
