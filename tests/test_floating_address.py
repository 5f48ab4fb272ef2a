"""plugins/filter/floating_address.py: where keepalived puts the users' address among the lb
hosts, from the facts Ansible gathers there, and every inventory it refuses."""

from __future__ import annotations

import importlib.util

import pytest
from ansible.errors import AnsibleFilterError

from conftest import ROOT

spec = importlib.util.spec_from_file_location("floating_address", ROOT / "plugins" / "filter" / "floating_address.py")
floating = importlib.util.module_from_spec(spec)
spec.loader.exec_module(floating)

VIP = "10.231.47.100"


def facts(address: str, prefix: int = 24, *, secondaries: tuple = (), interface: str = "eth0") -> dict:
    """A host's facts as Ansible gathers them (gather_subset network), for one interface."""
    netmask = str(__import__("ipaddress").IPv4Network(f"0.0.0.0/{prefix}").netmask)
    network = str(__import__("ipaddress").IPv4Interface(f"{address}/{prefix}").network.network_address)
    return {
        "interfaces": ["lo", interface],
        "lo": {"ipv4": {"address": "127.0.0.1", "netmask": "255.0.0.0", "network": "127.0.0.0", "prefix": "8"}},
        interface.replace("-", "_"): {
            "ipv4": {"address": address, "netmask": netmask, "network": network, "prefix": str(prefix)},
            "ipv4_secondaries": [{"address": extra, "netmask": netmask, "network": network, "prefix": str(prefix)}
                                 for extra in secondaries],
        },
    }


LBS = ["tm-lb", "tm-lb2"]
FACTS = {"tm-lb": facts("10.231.47.11"), "tm-lb2": facts("10.231.47.12")}


def test_each_lb_host_gets_its_interface_address_peers_and_a_falling_priority():
    plan = floating.plan(VIP, LBS, FACTS)
    assert plan["tm-lb"] == {"interface": "eth0", "address": "10.231.47.11", "prefix": 24, "network": "10.231.47.0/24",
                             "holds": False, "priority": 200, "peers": ["10.231.47.12"]}
    assert plan["tm-lb2"]["peers"] == ["10.231.47.11"] and plan["tm-lb2"]["priority"] == 199


def test_the_host_that_holds_the_address_now_is_named_and_keeps_its_own_address_as_source():
    held = {**FACTS, "tm-lb2": facts("10.231.47.12", secondaries=(VIP,))}
    plan = floating.plan(VIP, LBS, held)
    assert plan["tm-lb2"]["holds"] and not plan["tm-lb"]["holds"]
    assert plan["tm-lb2"]["address"] == "10.231.47.12"


def test_an_interface_with_a_dash_in_its_name_is_found():
    plan = floating.plan(VIP, LBS, {**FACTS, "tm-lb": facts("10.231.47.11", interface="br-lan")})
    assert plan["tm-lb"]["interface"] == "br-lan"


def test_three_lb_hosts_each_have_two_peers():
    hosts = [*LBS, "tm-lb3"]
    plan = floating.plan(VIP, hosts, {**FACTS, "tm-lb3": facts("10.231.47.13")})
    assert plan["tm-lb3"]["peers"] == ["10.231.47.11", "10.231.47.12"] and plan["tm-lb3"]["priority"] == 198


def test_one_lb_host_needs_no_address_and_may_not_have_one():
    assert floating.plan("", ["tm-lb"], FACTS) == {}
    assert floating.plan("", [], {}) == {}
    with pytest.raises(AnsibleFilterError, match="the lb group has 1 host"):
        floating.plan(VIP, ["tm-lb"], FACTS)


@pytest.mark.parametrize(("address", "hosts", "lb_facts", "says"), [
    ("", LBS, FACTS, "task_manager_lb_address is empty"),
    ("tasks.example.org", LBS, FACTS, "not an IPv4 address"),
    ("10.231.47.100/24", LBS, FACTS, "not an IPv4 address"),
    ("fd00::10", LBS, FACTS, "not an IPv4 address"),
    ("127.0.0.10", LBS, FACTS, "loopback"),
    ("224.0.0.18", LBS, FACTS, "multicast"),
    ("10.231.48.100", LBS, FACTS, "not on any network of tm-lb (10.231.47.0/24)"),
    (VIP, LBS, {"tm-lb": FACTS["tm-lb"]}, "not on any network of tm-lb2 (none known"),
    (VIP, LBS, {**FACTS, "tm-lb2": facts("10.231.47.130", 25)}, "not on any network of tm-lb2 (10.231.47.128/25)"),
    ("10.231.47.0", LBS, FACTS, "network or broadcast"),
    ("10.231.47.255", LBS, FACTS, "network or broadcast"),
    ("10.231.47.11", LBS, {**FACTS, "tm-lb": {"interfaces": ["eth0"], "eth0": {"ipv4": {
        "address": "10.231.47.11", "prefix": "24"}}}}, "tm-lb's only address"),
    (VIP, LBS, {**FACTS, "tm-lb2": facts("10.231.47.12", 16)}, "different networks"),
])
def test_bad_inventories_are_refused_with_what_to_fix(address, hosts, lb_facts, says):
    with pytest.raises(AnsibleFilterError, match=None) as refused:
        floating.plan(address, hosts, lb_facts)
    assert says in str(refused.value)
    assert floating.problem(address, hosts, lb_facts) == str(refused.value)


def test_a_good_address_is_no_problem():
    assert floating.problem(VIP, LBS, FACTS) == ""


def test_facts_of_reads_each_hosts_facts_and_tolerates_a_missing_one():
    hostvars = {"tm-lb": {"ansible_facts": FACTS["tm-lb"]}, "tm-lb2": {}}
    assert floating.facts_of(LBS, hostvars) == {"tm-lb": FACTS["tm-lb"], "tm-lb2": {}}
