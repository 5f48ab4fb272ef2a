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


def test_the_inventorys_networks_replace_the_facts():
    assert network.db_allow(["10.231.47.10"], ["10.231.47.10/32"], DB_FACTS) == ["10.231.47.10", "10.231.47.10/32"]
    assert network.db_allow(["192.0.2.7"], ["10.0.0.0/16", "fd00::/64"], DB_FACTS) == [
        "192.0.2.7", "10.0.0.0/16", "fd00::/64"]


def test_without_facts_only_the_resolved_addresses_are_allowed():
    assert network.db_allow(["10.231.47.10", "10.231.47.11"], [], None) == ["10.231.47.10", "10.231.47.11"]
    assert network.db_allow(["10.231.47.10"], [], {}) == ["10.231.47.10"]


@pytest.mark.parametrize("bad", ["eth0", "10.0.0.1/24", "10.0.0.0/33", ""])
def test_a_network_that_is_not_one_is_refused_saying_what_to_give(bad):
    with pytest.raises(AnsibleFilterError, match=r"task_manager_db_networks holds .* give CIDRs"):
        network.db_allow(["10.231.47.10"], [bad], DB_FACTS)


def test_a_resolved_answer_that_is_not_an_address_is_an_error():
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        network.db_allow(["not-an-address"], [], DB_FACTS)
