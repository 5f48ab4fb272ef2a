#!/bin/bash
# run-lane.sh [--background] COMMAND...: one lane of `make test`.
#
# The lane that sets how long the run takes (the cluster scenario) runs as it is. A lane
# beside it (--background) has time to spare and yields the CPU: it goes, with everything it
# starts and its test hosts, into one CPU cgroup with a small share (LANE_CPU_SHARES against
# the 1024 of everything else), and runs under nice (LANE_NICE).
#
# Why a cgroup and not nice alone: the kernel weighs nice only among the processes of one
# session (autogroups), and the test hosts live in podman's own cgroups, where a lane's nice
# does not reach; a daemon a lane starts (PostgreSQL's pg_ctl, ssh's ControlPersist master)
# opens a session of its own at full weight. Measured on a 2-core machine: with the cgroup, the
# cluster's prepare, converge and idempotence took 8.3 minutes instead of 14, and the whole run
# 22.1 instead of 26.7. Where there is no cgroup v1 CPU controller to write to (cgroup v2, not
# root), the lane keeps nice alone and says so.
set -eu
if [ "${1:-}" != "--background" ]; then
  exec "$@"
fi
shift
group=task-manager-tests-background
cpu=/sys/fs/cgroup/cpu
if mkdir -p "$cpu/$group" 2>/dev/null \
   && echo "${LANE_CPU_SHARES:-256}" > "$cpu/$group/cpu.shares" 2>/dev/null \
   && echo $$ > "$cpu/$group/cgroup.procs" 2>/dev/null; then
  # scripts/test-host.py makes the lane's test hosts under it.
  export TEST_HOST_CGROUP_PARENT="/$group"
else
  echo "run-lane.sh: no cgroup v1 CPU controller to write to; this lane yields by nice alone" >&2
fi
exec nice -n "${LANE_NICE:-10}" "$@"
