"""python3 -m task_manager_host.offsite: the command, as /usr/local/sbin/task-manager-offsite runs it."""

import sys

from task_manager_host.offsite.cli import main

sys.exit(main())
