#!/bin/sh
# Installs python3-apt, which Ansible's apt module imports. The module can install it
# itself and restart, but not under Mitogen (mitogen-hq/mitogen#849), so it comes first.
# A host whose package lists are missing or stale gets them first.
set -eu
export DEBIAN_FRONTEND=noninteractive
install() {
    apt-get -q -y -o DPkg::Lock::Timeout=300 install --no-install-recommends python3-apt
}
install || { apt-get -q -o DPkg::Lock::Timeout=300 update && install; }
