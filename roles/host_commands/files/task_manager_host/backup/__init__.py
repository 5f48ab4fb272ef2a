"""task-manager-backup: verified backups of the task manager's database, SQLite or
PostgreSQL (the command's own description, its usage and its exit statuses are cli's
docstring). Standard library only; psycopg, on the db host, is imported where it is used.

  cli         the command line, the commands, the drop to the service account
  settings    the layout and backup settings, the kinds of set, the log
  sets        backup sets of either engine: taken, listed, chosen, pruned; lock and room
  sqlite      the SQLite engine: online copy, dump, their proofs, restore
  postgresql  the PostgreSQL engine: dump in a snapshot, scratch restores, the swap
  crypto      gpg, when the settings encrypt the sets
  metrics     each kind's last run, for Prometheus
  errors      the failures, by exit status
"""
