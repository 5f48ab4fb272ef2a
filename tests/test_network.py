"""plugins/filter/network.py: what the API's unit may reach, for the database's address
as the inventory names it and the network its host may move within."""

from __future__ import annotations

import importlib.util

import pytest
from ansible.errors import AnsibleFilterError

from conftest import ROOT

spec = importlib.util.spec_from_file_location("network", ROOT / "plugins" / "filter" / "network.py")
network = importlib.util.module_from_spec(spec)
spec.loader.exec_module(network)

DB_FACTS = {"address": "10.231.47.10", "network": "10.231.47.0", "prefix": "24", "netmask": "255.255.255.0"}


def test_the_db_hosts_own_network_is_allowed_beside_its_address():
    assert network.db_allow(["10.231.47.10"], [], DB_FACTS) == ["10.231.47.10", "10.231.47.0/24"]
    narrow = {**DB_FACTS, "network": "10.231.47.8", "prefix": "29"}
    assert network.db_allow(["10.231.47.10"], [], narrow) == ["10.231.47.10", "10.231.47.8/29"]


@pytest.mark.parametrize("facts", [
    {**DB_FACTS, "network": "10.231.0.0", "prefix": "16"},  # a site, not a host network
    {**DB_FACTS, "network": "10.0.0.0", "prefix": "8"},
    {**DB_FACTS, "network": "8.8.4.0", "prefix": "24"},  # public: never by default
    None, {},
])
def test_without_a_host_networks_facts_only_the_resolved_addresses_are_allowed(facts):
    assert network.db_allow(["10.231.47.10", "10.231.47.11"], [], facts) == ["10.231.47.10", "10.231.47.11"]


def test_the_inventorys_networks_replace_the_facts():
    assert network.db_allow(["10.231.47.10"], ["10.231.47.10/32"], DB_FACTS) == ["10.231.47.10", "10.231.47.10/32"]
    assert network.db_allow(["192.0.2.7"], ["10.0.0.0/16", "fd00::/64"], DB_FACTS) == [
        "192.0.2.7", "10.0.0.0/16", "fd00::/64"]


@pytest.mark.parametrize(("bad", "why"), [
    ("eth0", "is not a network"),
    ("10.0.0.1/24", "is not a network"),
    ("10.0.0.0/33", "is not a network"),
    ("", "is not a network"),
    ("0.0.0.0/0", "would let the API reach 4,294,967,296 addresses"),
    ("10.0.0.0/8", "would let the API reach 16,777,216 addresses"),
    ("::/0", "would let the API reach"),
    ("fd00::/32", "would let the API reach"),
    ("127.0.0.0/24", "is not a network a db host lives on"),
    ("169.254.169.0/24", "is not a network a db host lives on"),
])
def test_a_network_the_api_should_not_reach_is_refused_saying_what_to_give(bad, why):
    with pytest.raises(AnsibleFilterError, match=rf"task_manager_db_networks holds '{bad}', which {why}.*: give"):
        network.db_allow(["10.231.47.10"], [bad], DB_FACTS)


def test_a_resolved_answer_that_is_not_an_address_is_an_error():
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        network.db_allow(["not-an-address"], [], DB_FACTS)
