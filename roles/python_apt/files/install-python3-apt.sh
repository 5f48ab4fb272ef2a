#!/bin/sh
# Installs python3-apt, which Ansible's apt module imports. The module can install it
# itself and restart, but not under Mitogen (mitogen-hq/mitogen#849), so it comes first.
# Where the install cannot find the package (no package lists yet, or stale ones), the
# lists are fetched and the install tried again.
set -eu
export DEBIAN_FRONTEND=noninteractive
LOCK_WAIT=300

install() {
    apt-get -q -y -o DPkg::Lock::Timeout=$LOCK_WAIT install --no-install-recommends python3-apt
}

# apt-get update does not wait for the lists' lock (apt-daily may hold it on a fresh
# host): it is tried again for as long as the install waits for dpkg's.
update() {
    waited=0
    until apt-get -q -o DPkg::Lock::Timeout=$LOCK_WAIT update; do
        [ "$waited" -lt "$LOCK_WAIT" ] || return 1
        echo "apt-get update failed (the package lists' lock held?): trying again in 10 s" >&2
        sleep 10
        waited=$((waited + 10))
    done
}

if [ "$(id -u)" -ne 0 ]; then
    echo "python3-apt can only be installed as root: give this host ansible_become: true" >&2
    exit 1
fi
install || { update && install; }
