"""python3 -m task_manager_host.check: the command, as /usr/local/sbin/task-manager-check runs it."""

import sys

from task_manager_host.check import cli

sys.exit(cli.main())
