"""The task manager's host commands, one package: backups (task-manager-backup), their
off-host copies (task-manager-offsite), the on-host check (task-manager-check), the
failure notices (task-manager-notify) and the load balancer's drain and admit
(task-manager-lb). Installed by the host_commands role into
/usr/local/lib/task-manager-host; each command in /usr/local/sbin is a few lines that
import its `main()` and run it."""
