"""Which addresses a host's service may reach, decided in Python and tested in seconds
(tests/test_network.py)."""

from __future__ import annotations

import ipaddress

from ansible.errors import AnsibleFilterError

# The widest network the API may be allowed to reach the db host in: a network names every
# host and port in it, so the inventory may not hand the API a whole site (/8, /0). The
# db host's own network is taken by default only when it is a host network's usual size.
WIDEST_CONFIGURED = {4: 16, 6: 48}
WIDEST_DEFAULT = {4: 24, 6: 64}


def _refusal(network: str, why: str) -> AnsibleFilterError:
    return AnsibleFilterError(
        f"task_manager_db_networks holds {network!r}, which {why}: give the private networks the db host's "
        f"address may move within (CIDRs such as 10.0.0.0/24, at most /{WIDEST_CONFIGURED[4]} for IPv4 and "
        f"/{WIDEST_CONFIGURED[6]} for IPv6), or the db host's address/32 to let the API reach that address alone")


def checked_network(value: str) -> str:
    """One of the inventory's networks, refused when it is not a network, is too wide, or
    is not one a db host can move within (loopback, link-local, multicast, unspecified)."""
    try:
        network = ipaddress.ip_network(str(value), strict=True)
    except ValueError as error:
        raise _refusal(value, f"is not a network ({error})") from error
    if network.prefixlen < WIDEST_CONFIGURED[network.version]:
        raise _refusal(value, f"would let the API reach {network.num_addresses:,} addresses")
    if network.is_loopback or network.is_link_local or network.is_multicast or network.is_unspecified:
        raise _refusal(value, "is not a network a db host lives on")
    return str(network)


def db_allow(resolved: list, networks: list, db_ipv4: dict | None = None) -> list[str]:
    """What the API's unit may reach beyond localhost (systemd's IPAddressAllow): the
    addresses the database's name resolved to, and the networks its host may move within,
    so that a db host that comes back with another address is reached without a deploy.

    networks: the inventory's task_manager_db_networks; when empty, the db host's own
    network from its facts (default_ipv4's network and prefix), when that is /24 or
    narrower (else the addresses alone: a deploy follows a change of address).
    """
    allowed = [str(ipaddress.ip_address(address)) for address in resolved]
    chosen = [checked_network(network) for network in networks or []]
    if not networks and db_ipv4 and db_ipv4.get("network") and db_ipv4.get("prefix"):
        own = ipaddress.ip_network(f"{db_ipv4['network']}/{db_ipv4['prefix']}", strict=False)
        if own.prefixlen >= WIDEST_DEFAULT[own.version] and own.is_private and not own.is_loopback:
            chosen = [str(own)]
    allowed += [network for network in chosen if network not in allowed]
    return allowed


class FilterModule:
    def filters(self):
        return {"task_manager_db_allow": db_allow}
