#!/usr/bin/env bash
# Debian packages the tests need on the control node: the browser and fonts for the
# browser tests, podman/runc/debootstrap for the Molecule test hosts, sqlite3 for checks.
set -euo pipefail

packages=(chromium fonts-ipafont-gothic sqlite3 podman runc debootstrap uidmap slirp4netns)
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
