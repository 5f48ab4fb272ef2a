"""task-manager-offsite: the verified local backup sets, copied off the host with restic.

Run by cron after each local backup (and hourly when configured) and by the runbooks.
Uses only Debian's python3 and restic. It reads where things are from the host's layout
and the backup settings (as task-manager-backup does), and its own settings from
TASK_MANAGER_OFFSITE_CONFIG (default /etc/task-manager/offsite.json: the repository,
its password file, how long each kind of set is kept, where its state is written).

Started as root, it runs as the off-host account (offsite_user), which alone reads the
repository's password and key: the service's account reaches neither. That account reads
the sets (the backup directory's group) and writes only its own directory (state_dir:
restic's cache, the state, its figures, a fetch's spool). A fetched set is put in place
by a second child running as the backup account, so root writes nothing anywhere.

On the backup host, with "keeper": true in its settings, the same command keeps one
source's repository: forget (each kind's retention, then prune) and list, as that source's
account, on the repository's directory. The sources reach that directory only through
`rclone serve restic --append-only`, so none of them can delete or rewrite a snapshot.

  task-manager-offsite init        create the repository unless it exists
  task-manager-offsite copy        every local set not yet in the repository, oldest first
  task-manager-offsite forget      each kind's retention, then restic prune
  task-manager-offsite check       restic check, reading back a sample of the data
  task-manager-offsite list        this host's snapshots
  task-manager-offsite fetch latest|<stamp>|<snapshot id> [--kind KIND] [--drill]
                                   a snapshot's set back into the backup directory; with
                                   --drill into its drill/ folder instead, apart from the
                                   live sets, for `task-manager-backup verify --drill`
  task-manager-offsite status      the last copy and check, and the newest snapshot
  task-manager-offsite add-key     a second key (its password on stdin) for the backup host's
                                   retention; nothing when that password opens it already
  task-manager-offsite share       the backup account lets the off-host account read the sets
                                   made before it existed (group and mode; deploy.yml runs it)

Each local set becomes one snapshot, tagged task-manager, kind:<kind> and stamp:<stamp>,
under the host's inventory name (--host), so that a new host of the same name finds the
old one's snapshots. A set is copied only when every file matches its manifest's sha256.
Every command answers in JSON on stdout. copy and check record their outcome in the state
file, which check.yml reads; a failure there never touches the local sets.

Exit status: 0 done, 1 failed (the message names the cause), 2 bad usage, 3 nothing
to fetch.

The modules: settings (the settings, the log, the failures), restic (restic's runs, the
snapshots and the retention), sets (the local sets and the names a set may have), state
(the lock, the state file and its figures), accounts (which account runs what, and the
children that run as them), fetch (a snapshot back into the backup directory) and cli
(the commands).
"""
