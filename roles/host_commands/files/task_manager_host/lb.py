"""task-manager-lb: the load balancer's app hosts, through HAProxy's admin socket (root's only).

  task-manager-lb state                    every app host: in service or not, checked UP or not, open requests
  task-manager-lb drain HOST [--timeout S] [--even-if-last]
                                           no new requests to HOST; wait until its open ones end; out
  task-manager-lb admit HOST [--timeout S] HOST back in; wait until HAProxy's checks see it UP
  task-manager-lb address [--textfile F]   whether this host holds the users' floating address and
                                           keepalived runs (F: the same as Prometheus figures)

Each prints one JSON object; a drain or admit that cannot finish exits 1 and says why.
The admin socket, the backend's name and the floating address come from
TASK_MANAGER_LB_CONFIG (default /etc/haproxy/task-manager-lb.json, written by the haproxy
role from the inventory).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from task_manager_host import common, paths

SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# The admin socket's path and the backend's name, read once by main().
SETTINGS: dict = {}


def ask(command):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(10)
        conn.connect(SETTINGS["socket"])
        conn.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


# srv_admin_state bits (HAProxy's enum srv_admin) and the running operational state.
FORCED_MAINT, INHERITED_MAINT, CONFIG_MAINT, RESOLUTION_MAINT = 0x01, 0x02, 0x04, 0x20
FORCED_DRAIN, INHERITED_DRAIN = 0x08, 0x10
RUNNING = 2


def admin_states():
    lines = ask(f"show servers state {SETTINGS['backend']}").splitlines()
    header = next((line[2:].split() for line in lines if line.startswith("# be_id")), [])
    states = {}
    for line in lines[1:]:
        if not line or line.startswith("#"):
            continue
        row = dict(zip(header, line.split(), strict=False))
        admin = int(row.get("srv_admin_state", 0))
        states[row["srv_name"]] = {
            "admin": "maint" if admin & (FORCED_MAINT | INHERITED_MAINT | CONFIG_MAINT | RESOLUTION_MAINT)
            else "drain" if admin & (FORCED_DRAIN | INHERITED_DRAIN) else "ready",
            # Checks run on a drained host too: up says whether it would serve if admitted.
            "up": int(row.get("srv_op_state", 0)) == RUNNING,
        }
    return states


def servers():
    states = admin_states()
    rows = csv.DictReader(ask("show stat").lstrip("# ").splitlines())
    found = {}
    for row in rows:
        if row["pxname"] != SETTINGS["backend"] or row["svname"] in ("FRONTEND", "BACKEND"):
            continue
        state = states.get(row["svname"], {"admin": "ready", "up": False})
        found[row["svname"]] = {
            "host": row["svname"],
            "status": row["status"],
            # ready: in service; drain: no new requests (checks go on); maint: out, unchecked.
            "admin": state["admin"],
            "up": state["up"],
            "open_requests": int(row["scur"] or 0),
            "check": row.get("check_status", ""),
            "check_ms": int(row["check_duration"]) if row.get("check_duration") else None,
            "requests_total": int(row["stot"] or 0),
            "answers_5xx": int(row["hrsp_5xx"] or 0),
            "seconds_in_state": int(row["lastchg"]) if row.get("lastchg") else None,
            # Since HAProxy started: how often its checks took the host out, and for how long.
            "times_down": int(row["chkdown"] or 0),
            "seconds_down": int(row["downtime"] or 0),
        }
    return found


def server(host):
    found = servers()
    if host not in found:
        known = ", ".join(sorted(found)) or "none"
        fail(f"{host} is not a server of HAProxy's {SETTINGS['backend']} backend (known: {known}): "
             "run deploy.yml so that the load balancer's configuration lists every app host.")
    return found[host]


def fail(message, **extra):
    print(json.dumps({"ok": False, "message": message, **extra}))
    sys.exit(1)


def set_state(host, state):
    answer = ask(f"set server {SETTINGS['backend']}/{host} state {state}").strip()
    if answer:
        fail(f"HAProxy refused 'set server {SETTINGS['backend']}/{host} state {state}': {answer}")


def drain(host, timeout, even_if_last=False):
    before = server(host)
    if before["admin"] != "ready":
        return {"ok": True, "changed": False, "host": host, "state": before}
    others = [state for name, state in servers().items() if name != host]
    if not others:
        # Nothing else could take its requests: the host stays in, and its restart queues them.
        return {"ok": True, "changed": False, "host": host, "alone": True, "state": before}
    if not even_if_last and not any(state["up"] and state["admin"] == "ready" for state in others):
        fail(f"No app host but {host} serves through the load balancer: taking it out would leave nothing serving. "
             "Bring the others back first (check.yml says why they are out; recover.yml).", host=host)
    # Drained, not in maintenance: HAProxy keeps checking the host, so that an admit can
    # wait for checks that pass rather than trust what the host answered before.
    set_state(host, "drain")
    started = time.monotonic()
    current = server(host)
    while current["open_requests"] > 0:
        if time.monotonic() - started > timeout:
            fail(f"{host} still has {current['open_requests']} open requests after {timeout} s of draining; it takes "
                 "no new ones. Find what holds them, then run the same command again.", host=host, state=current)
        time.sleep(0.2)
        current = server(host)
    return {"ok": True, "changed": True, "host": host, "drained_s": round(time.monotonic() - started, 1),
            "state": current}


def checked_up(state):
    # INI: no check has run since the host left maintenance; HAProxy then shows it UP.
    return state["up"] and state["check"] not in ("", "INI")


def admit(host, timeout):
    before = server(host)
    if before["admin"] == "ready" and before["up"]:
        return {"ok": True, "changed": False, "host": host, "state": before}
    if before["admin"] == "maint":
        set_state(host, "drain")  # checks start again; still no requests
    # Marked down, the host is UP again only after `rise` checks from now pass: never on
    # a check from before its restart.
    answer = ask(f"set server {SETTINGS['backend']}/{host} health down").strip()
    if answer:
        fail(f"HAProxy refused 'set server {SETTINGS['backend']}/{host} health down': {answer}")
    started = time.monotonic()
    current = server(host)
    # Admitted once HAProxy's own checks pass, while it still sends the host nothing.
    while not checked_up(current):
        if time.monotonic() - started > timeout:
            fail(f"HAProxy does not see {host} UP {timeout} s after it was to be put back (status {current['status']}, "
                 f"last check {current['check']}): its /health does not answer 200 to the load balancer. It stays "
                 "out; see check.yml.", host=host, state=current)
        time.sleep(0.2)
        current = server(host)
    set_state(host, "ready")
    return {"ok": True, "changed": True, "host": host, "waited_s": round(time.monotonic() - started, 1),
            "state": server(host)}


def held_addresses() -> list[str]:
    """Every IPv4 address this host holds now, the floating one included (ip's JSON)."""
    # Fixed arguments; the program found on the system's own directories, never the caller's PATH.
    ip = shutil.which("ip", path=SYSTEM_PATH) or "/usr/sbin/ip"
    done = subprocess.run([ip, "-json", "-4", "addr", "show"], capture_output=True, text=True,  # noqa: S603
                          check=True, timeout=10)
    return addresses_in(done.stdout)


def addresses_in(ip_json: str) -> list[str]:
    """Every address in `ip -json addr show`'s answer, secondary (floating) ones included."""
    return [entry["local"] for link in json.loads(ip_json or "[]") for entry in link.get("addr_info") or []
            if entry.get("local")]


def unit_active(unit: str) -> bool:
    systemctl = shutil.which("systemctl", path=SYSTEM_PATH) or "/usr/bin/systemctl"
    return subprocess.run([systemctl, "is-active", "--quiet", unit], check=False, timeout=10).returncode == 0  # noqa: S603


def address_state(address: str) -> dict:
    """Whether this lb host holds the users' address, and whether keepalived could take it over."""
    if not address:
        raise common.CommandError("the settings name no floating address (task_manager_lb_address is empty)")
    return {"ok": True, "address": address, "holds": address in held_addresses(),
            "keepalived": unit_active("keepalived.service")}


def address_figures(state: dict) -> str:
    lines = common.gauges("task_manager_lb_holds_address", "1: this lb host holds the users' floating address",
                          [({"address": state["address"]}, int(state["holds"]))])
    lines += common.gauges("task_manager_lb_keepalived_up",
                           "1: keepalived runs on this lb host (it can take the users' address over)",
                           [({}, int(state["keepalived"]))])
    lines += [f"task_manager_lb_figures_timestamp_seconds {round(time.time(), 3)}"]
    return "\n".join(lines) + "\n"


def load_settings() -> dict:
    found = common.read_json(Path(os.environ.get("TASK_MANAGER_LB_CONFIG", paths.LB_CONFIG)))
    missing = [key for key in ("socket", "backend") if not isinstance(found.get(key), str) or not found[key]]
    if missing:
        raise common.CommandError(f"the settings name no {', '.join(missing)}: deploy.yml writes them on the lb host")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("state")
    figures = commands.add_parser("address")
    figures.add_argument("--textfile", help="also write the figures here, for node_exporter")
    for name in ("drain", "admit"):
        sub = commands.add_parser(name)
        sub.add_argument("host")
        sub.add_argument("--timeout", type=float, default=60)
        if name == "drain":
            sub.add_argument("--even-if-last", action="store_true",
                             help="take the host out even when no other host serves (the site stops)")
    args = parser.parse_args(argv)
    try:
        SETTINGS.update(load_settings())
    except common.CommandError as error:
        fail(str(error))
    try:
        if args.command == "state":
            result = {"ok": True, "backend": SETTINGS["backend"], "servers": list(servers().values())}
        elif args.command == "address":
            result = address_state(SETTINGS.get("address") or "")
            if args.textfile:
                common.write_whole(Path(args.textfile), address_figures(result))
        elif args.command == "drain":
            result = drain(args.host, args.timeout, args.even_if_last)
        else:
            result = admit(args.host, args.timeout)
    except common.CommandError as error:
        fail(str(error))
    except (OSError, subprocess.SubprocessError, ValueError) as error:
        if args.command == "address":
            fail(f"this host's addresses or keepalived's state could not be read, or the figures written ({error})")
        fail(f"HAProxy's admin socket {SETTINGS['socket']} does not answer ({error}): is haproxy running? "
             "systemctl status haproxy; recover.yml restarts it.")
    print(json.dumps(result))
    return 0
