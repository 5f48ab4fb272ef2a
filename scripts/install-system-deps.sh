#!/usr/bin/env bash
# Debian packages the tests need on the control node: the browser and fonts for the
# browser tests, podman/runc/debootstrap for the Molecule test hosts, sqlite3 for checks,
# postgresql (15, with libpq5 for the psycopg driver) for the app tests, which start a
# throwaway cluster of their own with its initdb and pg_ctl (app/tests/pgcluster.py);
# podman's dnsname plugin, so the hosts of a multi-host scenario reach each other by name;
# HAProxy, which tests/test_load_balancer.py runs in front of two local servers; the SSH
# client the cluster scenario reaches its hosts with; restic, whose real repositories
# tests/test_offsite_command.py copies sets into, and rclone, which serves one append-only
# there as the backup host does; prometheus, for promtool, which checks and unit-tests the
# alert rules (make test-rules) and the monitoring host's configuration; openssl, which makes
# the certificates tests/test_templates.py hands HAProxy's own check. Nothing is installed
# when everything is present, so `make test` and `make demo` run it first.
set -euo pipefail

packages=(chromium fonts-ipafont-gothic sqlite3 postgresql libpq5 podman runc debootstrap uidmap slirp4netns
  golang-github-containernetworking-plugin-dnsname haproxy openssh-client restic rclone prometheus openssl)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "system packages present: ${packages[*]}"
