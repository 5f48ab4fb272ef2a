#!/usr/bin/env python3
"""One definition of a systemd test host, shared by Molecule, the demo and the bench.

A test host is a podman container of the Debian 12 test-host image
(scripts/build-test-image.sh) with systemd as PID 1, podman's limits from
molecule/containers.conf, and nothing else in common: what differs (published ports,
a network, a small file system, a hosts entry) is an argument. Answers in JSON.

    test-host.py create NAME [--publish 127.0.0.1:HOST:CONTAINER]... [--network NET [--ip ADDR]]
                             [--ssh-key PUBLIC_KEY_FILE [--known-hosts FILE]]
                             [--tmpfs PATH:SIZE]... [--add-host NAME:IP]... [--command CMD]
    test-host.py destroy NAME... [--network NET]
    test-host.py image
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
# systemd inside is ready (or degraded, which a bare image may report) within seconds.
READY_STATES = ("running", "degraded")
READY_TIMEOUT = 120
INIT = "/sbin/init"


def _env() -> dict:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(ROOT / "molecule" / "containers.conf"))
    return env


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], check=check, text=True, capture_output=True, env=_env())


def image() -> str:
    built = subprocess.run([str(ROOT / "scripts" / "build-test-image.sh")], check=True, text=True,
                           capture_output=True, env=_env())
    return built.stdout.strip()


def _publish(value: str) -> str:
    # Test traffic goes to ports on this machine's loopback only, never to another address.
    parts = value.split(":")
    if len(parts) != 3 or parts[0] != LOOPBACK or not all(p.isdigit() for p in parts[1:]):
        raise argparse.ArgumentTypeError(f"--publish {value!r}: write it as {LOOPBACK}:HOSTPORT:PORT")
    return value


def _ensure_network(name: str, ip: str | None = None) -> None:
    if podman("network", "exists", name, check=False).returncode != 0:
        # A host with an address of its own keeps it when stopped and started again, as a
        # server does: its network is the /24 around that address.
        subnet = ["--subnet", str(ipaddress.ip_network(f"{ip}/24", strict=False))] if ip else []
        podman("network", "create", *subnet, name)


def running(name: str) -> bool:
    state = podman("container", "inspect", "--format", "{{.State.Running}}", name, check=False)
    return state.returncode == 0 and state.stdout.strip() == "true"


def wait_for_systemd(name: str) -> str:
    deadline = time.monotonic() + READY_TIMEOUT
    state = ""
    while time.monotonic() < deadline:
        state = podman("exec", name, "systemctl", "is-system-running", check=False).stdout.strip()
        if state in READY_STATES:
            return state
        time.sleep(0.5)
    raise SystemExit(json.dumps({"name": name, "error": f"systemd did not come up (last state {state!r})"}))


def create(args: argparse.Namespace) -> dict:
    created = False
    if not running(args.name):
        podman("rm", "-f", args.name, check=False)
        if args.network:
            _ensure_network(args.network, args.ip)
        argv = ["run", "-d", "--name", args.name, "--hostname", args.name, "--systemd=always"]
        for port in args.publish:
            argv += ["-p", port]
        if args.network:
            argv += ["--network", args.network]
        if args.ip:
            argv += ["--ip", args.ip]
        for mount in args.tmpfs:
            path, _, size = mount.partition(":")
            argv += ["--mount", f"type=tmpfs,destination={path},tmpfs-size={size or '64m'},tmpfs-mode=0700"]
        for entry in args.add_host:
            argv += ["--add-host", entry]
        for capability in args.cap_add:
            argv += ["--cap-add", capability]
        if os.environ.get("TEST_HOST_CGROUP_PARENT"):
            # A background lane's hosts share its small CPU share (scripts/run-lane.sh).
            argv += ["--cgroup-parent", os.environ["TEST_HOST_CGROUP_PARENT"]]
        podman(*argv, image(), *shlex.split(args.command))
        created = True
    if args.command != INIT:
        # A host without systemd as PID 1 (preflight must refuse it): nothing to wait for.
        return {"name": args.name, "created": created, "systemd": None}
    state = wait_for_systemd(args.name)
    if args.ssh_key:
        add_ssh_user(args.name, Path(args.ssh_key))
        if args.known_hosts:
            record_host_keys(args.name, args.publish, Path(args.known_hosts))
    return {"name": args.name, "created": created, "systemd": state,
            "ssh_user": SSH_USER if args.ssh_key else None}


SSH_USER = "deploy"
# The user a real server gives Ansible: a login of its own, the key, sudo without a password.
SSH_SETUP = f"""set -eu
id {SSH_USER} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash {SSH_USER}
install -d -m 0700 -o {SSH_USER} -g {SSH_USER} /home/{SSH_USER}/.ssh
cat > /home/{SSH_USER}/.ssh/authorized_keys
chown {SSH_USER}:{SSH_USER} /home/{SSH_USER}/.ssh/authorized_keys
chmod 0600 /home/{SSH_USER}/.ssh/authorized_keys
echo '{SSH_USER} ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/{SSH_USER}
chmod 0440 /etc/sudoers.d/{SSH_USER}
"""


def add_ssh_user(name: str, public_key: Path) -> None:
    subprocess.run(["podman", "exec", "-i", name, "sh", "-c", SSH_SETUP], input=public_key.read_text(),
                   check=True, text=True, capture_output=True, env=_env())


def known_hosts_with(existing: str, addresses: set[str], keys: list[str]) -> str:
    """existing's lines without any for these addresses, then each key at each address."""
    kept = [line for line in existing.splitlines() if line.strip()
            and not set(line.split(" ", 1)[0].split(",")) & addresses]
    added = [f"{address} {' '.join(key.split()[:2])}" for address in sorted(addresses) for key in keys if key.strip()]
    return "".join(f"{line}\n" for line in kept + added)


def record_host_keys(name: str, publish: list[str], known_hosts: Path) -> None:
    """Trust the keys the host's sshd presents at each published SSH port, read from the host
    itself, in place of any earlier host's at that port: Ansible (strict host key checking,
    as ansible.cfg sets it) then reaches a new host without trusting it on first sight."""
    keys = podman("exec", name, "sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub").stdout.splitlines()
    addresses = {f"[{LOOPBACK}]:{p.split(':')[1]}" for p in publish if p.split(":")[2] == "22"}
    existing = known_hosts.read_text() if known_hosts.exists() else ""
    known_hosts.write_text(known_hosts_with(existing, addresses, keys))


def destroy(args: argparse.Namespace) -> dict:
    removed = [n for n in args.names if podman("container", "exists", n, check=False).returncode == 0]
    if removed:
        podman("rm", "-f", *removed)
    if args.network and podman("network", "exists", args.network, check=False).returncode == 0:
        podman("network", "rm", "-f", args.network, check=False)
    return {"removed": removed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    c = sub.add_parser("create", help="start a host (kept as is when it already runs) and wait for systemd")
    c.add_argument("name")
    c.add_argument("--publish", action="append", default=[], type=_publish)
    c.add_argument("--network")
    c.add_argument("--ip", help="the host's own address on --network (kept across a stop and a start)")
    c.add_argument("--tmpfs", action="append", default=[], help="PATH:SIZE, a small file system of its own")
    c.add_argument("--add-host", action="append", default=[], help="NAME:IP, a hosts entry")
    c.add_argument("--cap-add", action="append", default=[],
                   help="a capability beyond podman's defaults (NET_ADMIN for a floating address)")
    c.add_argument("--ssh-key", help=f"a public key file: user {SSH_USER} logs in with it and has sudo")
    c.add_argument("--known-hosts", help="an SSH known_hosts file: the host's keys at its published port 22")
    c.add_argument("--command", default=INIT, help=f"PID 1 (default {INIT}: systemd)")
    d = sub.add_parser("destroy", help="remove hosts (and their network)")
    d.add_argument("names", nargs="+")
    d.add_argument("--network")
    sub.add_parser("image", help="print the test-host image, building it once")
    args = parser.parse_args(argv)
    try:
        if args.action == "create":
            answer = create(args)
        elif args.action == "destroy":
            answer = destroy(args)
        else:
            answer = {"image": image()}
    except subprocess.CalledProcessError as exc:
        print(json.dumps({"error": f"{' '.join(exc.cmd[:3])}… failed", "stderr": exc.stderr}), file=sys.stderr)
        return 1
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
