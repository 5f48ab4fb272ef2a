#!/bin/bash
# What a dry run must not change, as checksums: the installed files (logs aside: every
# request writes a line), link targets, the database's content, unit states, backups.
set -eu -o pipefail
dirs=()
for d in /opt/task-manager /etc/nginx /etc/systemd/system /etc/cron.d /etc/logrotate.d /etc/task-manager \
         /etc/ansible /usr/local/sbin /var/lib/task-manager; do
  if [ -d "$d" ]; then dirs+=("$d"); fi
done
{
  find "${dirs[@]}" -xdev \
       \( -path /opt/task-manager/shared/logs -o -path '/opt/task-manager/releases/*/venv' \) -prune -o \
       -type f ! -name '*.db' ! -name '*.db-wal' ! -name '*.db-shm' -print0 2>/dev/null \
    | sort -z | xargs -0 sha256sum
  find /opt/task-manager /etc/nginx /etc/systemd/system -xdev -type l -printf '%p -> %l\n' 2>/dev/null | sort
  find /opt/task-manager/releases -mindepth 1 -maxdepth 1 | sort
  echo "database: $(sqlite3 /opt/task-manager/shared/instance/task_manager.db .dump | sha256sum)"
  for unit in task-manager.socket task-manager.service nginx.service cron.service; do
    echo "$unit: $(systemctl is-active "$unit" || true) $(systemctl show -p MainPID --value "$unit")"
  done
} 2>&1
