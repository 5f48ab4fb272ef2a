"""Where the users' floating address lives among the lb hosts, decided in Python and tested in
seconds (tests/test_floating_address.py).

keepalived (roles/keepalived) moves one IPv4 address between the lb hosts over unicast VRRP.
Each lb host needs, from its facts: the interface whose network holds the address, its own
address there (the VRRP source its peers accept), and its peers' addresses on that network.
Every refusal says what to change in the inventory.
"""

from __future__ import annotations

import ipaddress

from ansible.errors import AnsibleFilterError

# The first lb host in the inventory wins the first election; with nopreempt (the template),
# a host that comes back never takes the address back from the one holding it.
FIRST_PRIORITY = 200


def _interfaces(facts: dict) -> list[tuple[str, list[ipaddress.IPv4Interface]]]:
    """Each interface's IPv4 addresses (primary first) from a host's gathered facts."""
    found = []
    for name in facts.get("interfaces") or []:
        details = facts.get(name.replace("-", "_")) or facts.get(name) or {}
        entries = [details.get("ipv4")] if isinstance(details.get("ipv4"), dict) else []
        entries += [entry for entry in details.get("ipv4_secondaries") or [] if isinstance(entry, dict)]
        addresses = []
        for entry in entries:
            prefix = entry.get("prefix") or entry.get("netmask")
            if entry.get("address") and prefix:
                addresses.append(ipaddress.IPv4Interface(f"{entry['address']}/{prefix}"))
        if addresses:
            found.append((name, addresses))
    return found


def problem(address: str, hosts: list, facts_by_host: dict) -> str:
    """'' when the floating address can live on these lb hosts, else what to fix."""
    try:
        plan(address, hosts, facts_by_host)
    except AnsibleFilterError as error:
        return str(error)
    return ""


def plan(address: str, hosts: list, facts_by_host: dict) -> dict:
    """Per lb host: the interface, its own address and prefix there, its peers' addresses,
    its VRRP priority, and whether it holds the floating address now."""
    hosts = list(hosts or [])
    if not address:
        if len(hosts) > 1:
            raise AnsibleFilterError(
                f"The lb group has {len(hosts)} hosts ({', '.join(hosts)}) and task_manager_lb_address is empty: users "
                "would reach one of them by its own address, which stops with it. Set task_manager_lb_address to an "
                "unused IPv4 address on the lb hosts' network, which keepalived moves to whichever lb host serves.")
        return {}
    if len(hosts) < 2:
        raise AnsibleFilterError(
            f"task_manager_lb_address is {address} but the lb group has {len(hosts)} host(s): a floating address moves "
            "between two lb hosts or more (alone, keepalived would speak VRRP to the whole network). Add a second lb "
            "host, or leave task_manager_lb_address empty and point users at the lb host's own address.")
    try:
        floating = ipaddress.IPv4Address(str(address))
    except ValueError as error:
        raise AnsibleFilterError(
            f"task_manager_lb_address is {address!r}, not an IPv4 address ({error}): give an unused address on the "
            "lb hosts' network, such as 192.0.2.10.") from error
    if floating.is_loopback or floating.is_multicast or floating.is_link_local or floating.is_unspecified \
            or floating.is_reserved:
        raise AnsibleFilterError(
            f"task_manager_lb_address is {floating}, which no network carries to the lb hosts (loopback, link-local, "
            "multicast, reserved): give an unused address on the lb hosts' network.")
    placed: dict[str, dict] = {}
    for host in hosts:
        facts = facts_by_host.get(host) or {}
        matches = [(name, addresses) for name, addresses in _interfaces(facts)
                   if any(floating in iface.network for iface in addresses)]
        if not matches:
            networks = ", ".join(str(iface.network) for _, addresses in _interfaces(facts) for iface in addresses
                                 if not iface.ip.is_loopback) or "none known (facts not gathered?)"
            raise AnsibleFilterError(
                f"task_manager_lb_address {floating} is not on any network of {host} ({networks}): keepalived can only "
                "move an address within the network the lb hosts share. Give an unused address on it.")
        name, addresses = matches[0]
        own = [iface for iface in addresses if floating in iface.network and iface.ip != floating]
        if not own:
            raise AnsibleFilterError(
                f"task_manager_lb_address {floating} is {host}'s only address on {name}: the floating address must be "
                "one no host has as its own. Give an unused address on the lb hosts' network.")
        network = own[0].network
        if network.prefixlen < 31 and floating in (network.network_address, network.broadcast_address):
            raise AnsibleFilterError(
                f"task_manager_lb_address {floating} is {network}'s network or broadcast address: give an unused host "
                "address on that network.")
        placed[host] = {"interface": name, "address": str(own[0].ip), "prefix": network.prefixlen,
                        "network": str(network), "holds": any(iface.ip == floating for iface in addresses)}
    networks = {entry["network"] for entry in placed.values()}
    if len(networks) > 1:
        raise AnsibleFilterError(
            f"The lb hosts are on different networks ({', '.join(sorted(networks))}): VRRP moves an address within one "
            "network. Put the lb hosts on one network, or keep one lb host.")
    for index, host in enumerate(hosts):
        placed[host]["priority"] = FIRST_PRIORITY - index
        placed[host]["peers"] = [placed[peer]["address"] for peer in hosts if peer != host]
    return placed


def facts_of(hosts: list, hostvars) -> dict:
    """The lb hosts' gathered facts, by host ({} for a host whose facts are missing)."""
    return {host: dict(hostvars[host].get("ansible_facts") or {}) for host in hosts or []}


class FilterModule:
    def filters(self):
        return {
            "task_manager_floating_address_plan": plan,
            "task_manager_floating_address_problem": problem,
            "task_manager_facts_of": facts_of,
        }
