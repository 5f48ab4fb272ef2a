"""Which addresses a host's service may reach, decided in Python and tested in seconds
(tests/test_network.py)."""

from __future__ import annotations

import ipaddress

from ansible.errors import AnsibleFilterError


def db_allow(resolved: list, networks: list, db_ipv4: dict | None = None) -> list[str]:
    """What the API's unit may reach beyond localhost (systemd's IPAddressAllow): the
    addresses the database's name resolved to, and the networks its host may move within,
    so that a db host that comes back with another address is reached without a deploy.

    networks: the inventory's task_manager_db_networks (CIDRs); when empty, the db host's
    own network from its facts (default_ipv4's network and prefix), when they are known.
    """
    allowed = [str(ipaddress.ip_address(address)) for address in resolved]
    chosen = list(networks or [])
    if not chosen and db_ipv4 and db_ipv4.get("network") and db_ipv4.get("prefix"):
        chosen = [f"{db_ipv4['network']}/{db_ipv4['prefix']}"]
    for network in chosen:
        try:
            parsed = ipaddress.ip_network(str(network), strict=True)
        except ValueError as error:
            raise AnsibleFilterError(
                f"task_manager_db_networks holds {network!r}, which is not a network ({error}): give CIDRs such as "
                "10.0.0.0/24, or the db host's address/32 to let the API reach that address alone") from error
        if str(parsed) not in allowed:
            allowed.append(str(parsed))
    return allowed


class FilterModule:
    def filters(self):
        return {"task_manager_db_allow": db_allow}
