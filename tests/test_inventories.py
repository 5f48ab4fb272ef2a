"""The example inventories: what they set reaches the hosts.

Ansible ranks the playbooks' own group_vars/all (the contract) above an inventory's
group_vars/all, so a contract variable set there would be silently ignored: the
examples set such variables in the group_vars of a group, and this keeps them so."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = set(yaml.safe_load((ROOT / "playbooks" / "group_vars" / "all" / "contract.yml").read_text()))
INVENTORY_ALL_FILES = sorted(p for p in ROOT.glob("inventories/*/group_vars/all/*.yml*") if p.is_file())
INVENTORY_HOSTS = sorted(ROOT.glob("inventories/*/hosts.yml"))


@pytest.mark.parametrize("path", INVENTORY_ALL_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_contract_variable_is_set_where_the_contract_outranks_it(path):
    ignored = CONTRACT & set(yaml.safe_load(path.read_text()) or {})
    assert not ignored, f"{path.relative_to(ROOT)} sets {sorted(ignored)}, which the contract overrides"


@pytest.mark.parametrize("path", INVENTORY_HOSTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_inventory_files_set_no_contract_variable_in_a_group_either(path):
    # A group's vars in the inventory file rank below playbook group_vars/all too.
    def group_vars(node: dict) -> set:
        names = set((node or {}).get("vars") or {})
        for child in ((node or {}).get("children") or {}).values():
            names |= group_vars(child)
        return names

    assert not CONTRACT & group_vars(yaml.safe_load(path.read_text())["all"])
