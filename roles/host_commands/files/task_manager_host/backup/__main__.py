"""`python3 -m task_manager_host.backup`: the command, as /usr/local/sbin/task-manager-backup runs it."""

import sys

from task_manager_host.backup import cli

sys.exit(cli.main())
