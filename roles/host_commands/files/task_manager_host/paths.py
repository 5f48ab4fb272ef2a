"""Where things are on the host: the programs the commands start, by absolute path (root
starts them, so PATH decides nothing), and the settings files they read by default (the
environment may point elsewhere, as the tests do). Read as attributes at the moment of use
(`paths.GPG`), so that a test can point one elsewhere with monkeypatch."""

from __future__ import annotations

# Settings: the host's layout (written by the base role) and each command's own.
LAYOUT = "/etc/task-manager/layout.json"
BACKUP_CONFIG = "/etc/task-manager/backup.json"
OFFSITE_CONFIG = "/etc/task-manager/offsite.json"
NOTIFY_CONFIG = "/etc/task-manager/notify.json"
LB_CONFIG = "/etc/haproxy/task-manager-lb.json"
CHECK_STATE = "/var/lib/task-manager/check-state.json"
# The daily timer's reports, kept for a person to read later (check.yml shows the newest).
CHECK_REPORTS = "/var/lib/task-manager/check-reports"
FACTS = "/etc/ansible/facts.d/task_manager.fact"  # the release history the playbooks keep
CRON_DIR = "/etc/cron.d"

# Programs.
SYSTEMCTL = "/usr/bin/systemctl"
JOURNALCTL = "/usr/bin/journalctl"
GPG = "/usr/bin/gpg"
GPGCONF = "/usr/bin/gpgconf"
SQLITE3 = "/usr/bin/sqlite3"
RESTIC = "/usr/bin/restic"
# PostgreSQL's own tools, not Debian's wrappers in /usr/bin (they pick a cluster by guessing).
PG_BIN = "/usr/lib/postgresql/15/bin"
PG_UNIT = "postgresql@15-main.service"
PG_DATA_DIR = "/var/lib/postgresql/15/main"
