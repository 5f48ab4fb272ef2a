"""task-manager-check: the manual's daily, weekly and monthly checks and section 9's
limits, measured on the host and printed as one JSON document.

  task-manager-check [--max-response-ms 200] [--max-db-mb 100] [--max-memory-mb 512]
                     [--max-cpu-percent 50] [--max-disk-percent 80] [--max-backup-age-hours H]
                     [--max-connections-percent 80] [--max-errors N] [--max-failed-logins N] [--no-record]

The layout says which host this is, and so what is measured ("kind" in the document):
  app       the API's host: units, /health, counts from the logs, memory, CPU, disk,
            and, where the database is kept here (SQLite), its size and the newest backup.
            On an app host of a PostgreSQL deployment (database_on_this_host false)
            database_mb, the backup disk and newest_backup_age_hours are None and
            database_checked_on names the db host, where they are measured.
  database  the PostgreSQL db host (database_engine postgresql, database_on_this_host
            true): the unit postgresql@15-main, the database's size, client connections
            against max_connections, the disks of the data directory and of the backups,
            the newest backup, and replication (pg_stat_replication; none is deployed).
            It connects as postgres over the local socket, with Debian's python3-psycopg;
            libpq's PGHOST and PGPORT may point elsewhere. A server that does not answer
            is a broken limit in the report, not a failed check.
Counts from the logs (errors, failed logins, request times) are since the previous
check, whose time is kept in the state file (app hosts only); --no-record leaves it as it is.
figures.measure() and database.measure_database() gather the figures (on an app host the
service's own files read as the service user), limits.judge() holds them to the limits;
the document is both.

Installed as /usr/local/sbin/task-manager-check.
Paths from the environment: TASK_MANAGER_LAYOUT (the host's layout, written by the base
role: /etc/task-manager/layout.json), TASK_MANAGER_CHECK_STATE (the time of the previous
check, /var/lib/task-manager/check-state.json), TASK_MANAGER_CHECK_FACTS (the release
history; by default the layout's facts_file).
Exit status 0 whatever the findings (the report says which limits are broken), 1 when
the check itself could not run, 2 with --fail-on-breach when a limit is broken.

The parts: layout (which host this is, where the check's files are), logs (the app's log
lines), figures (the app host's measurements), database (the db host's), shared_figures
(what both measure alike), schedule (the backups' cron times), limits (the limits and
judge), outputs (the textfile and the state record), cli (the command line).
"""
