#!/usr/bin/env bash
# Build the Debian 12 test-host image once and cache it (see docs/architecture.md, "Test hosts"):
# debootstrap a minimal root file system with systemd (and sshd with sudo, so that a
# scenario can reach a host as real servers are reached), import it into podman.
# The tag carries a hash of this script, so a change here builds a new image.
set -euo pipefail
cd "$(dirname "$0")/.."

export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/molecule/containers.conf}"
hash=$(sha256sum "$0" | cut -c1-12)
image="${TEST_HOST_IMAGE:-localhost/task-manager-testhost:bookworm-$hash}"

if podman image exists "$image"; then
  echo "$image"
  exit 0
fi

# The mirror this machine's apt already uses, so the build needs no other network.
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror="${mirror:-http://deb.debian.org/debian}"
rootfs=$(mktemp -d /var/tmp/testhost-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

echo "building $image from $mirror (about a minute)" >&2
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,python3,python3-apt,ca-certificates,iproute2,procps,openssh-server,sudo \
  bookworm "$rootfs" "$mirror" >/dev/null

cat > "$rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
SOURCES
# A container has no consoles or kernel to manage; these units only fail there.
for unit in getty@tty1.service systemd-udevd.service systemd-udev-trigger.service \
            systemd-remount-fs.service sys-kernel-debug.mount sys-kernel-tracing.mount; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
# As Debian's own container images do: no documentation or manual pages unpacked, and no
# fsync after each file (a test host lives minutes; the scenarios install their packages
# side by side on two cores). The roles install the same packages; only the disk work goes.
cat > "$rootfs/etc/dpkg/dpkg.cfg.d/test-host" <<'DPKG'
force-unsafe-io
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
DPKG
printf 'Acquire::Languages "none";\n' > "$rootfs/etc/apt/apt.conf.d/90test-host-no-translations"
: > "$rootfs/etc/machine-id"
rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*
# Like a host installed long ago: its apt cache is stale, so the roles must refresh it.
touch -d '2000-01-01' "$rootfs/var/lib/apt/lists"

tar -C "$rootfs" -c . | podman import --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' - "$image" >/dev/null
echo "$image"
