"""Render a role's template for one host of an example inventory, as a run would.

The variables are ranked as Ansible ranks them for a play that runs the roles: the roles'
defaults lowest, then the inventory's group_vars and host_vars, the playbooks' own
group_vars (the contract) and what the caller passes last (paths that must exist on this
machine for a validator, in place of the host's). Facts are not gathered: a template that
needs one gets it from ``extra``."""

from __future__ import annotations

import shutil
from functools import cache
from pathlib import Path

import yaml
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from ansible.vars.hostvars import HostVars
from ansible.vars.manager import VariableManager

ROOT = Path(__file__).resolve().parent.parent


@cache
def role_defaults(role: str) -> dict:
    path = ROOT / "roles" / role / "defaults" / "main.yml"
    return yaml.safe_load(path.read_text()) or {} if path.exists() else {}


def copy_inventory(name: str, into: Path, add_hosts: dict[str, list[str]] | None = None) -> Path:
    """An example inventory copied beside the test, with hosts added to groups (a
    monitoring host for the cluster example, which leaves it to the operator)."""
    target = into / name
    shutil.copytree(ROOT / "inventories" / name, target)
    hosts_file = target / "hosts.yml"
    tree = yaml.safe_load(hosts_file.read_text())
    for group, hosts in (add_hosts or {}).items():
        tree["all"].setdefault("children", {}).setdefault(group, {}).setdefault("hosts", {}).update(
            {host: None for host in hosts})
    hosts_file.write_text(yaml.safe_dump(tree))
    return target


class Inventory:
    """One inventory, read once; render() templates any role's file for any of its hosts."""

    def __init__(self, source: Path):
        self.loader = DataLoader()
        # The playbooks' folder: its group_vars (the contract) apply as in a run of a runbook.
        self.loader.set_basedir(str(ROOT / "playbooks"))
        self.inventory = InventoryManager(loader=self.loader, sources=[str(source)])
        self.variables = VariableManager(loader=self.loader, inventory=self.inventory)
        self.variables._hostvars = HostVars(inventory=self.inventory, variable_manager=self.variables,
                                            loader=self.loader)

    def hosts(self, group: str) -> list[str]:
        return list(self.inventory.get_groups_dict().get(group, []))

    def render(self, host: str, role: str, template: str, roles: tuple[str, ...] = (),
               extra: dict | None = None) -> str:
        text = (ROOT / "roles" / role / "templates" / template).read_text()
        return self.render_text(host, (*roles, role), text, extra)

    def render_text(self, host: str, roles: tuple[str, ...], text: str, extra: dict | None = None) -> str:
        defaults: dict = {}
        for name in roles:
            defaults.update(role_defaults(name))
        found = self.inventory.get_host(host)
        assert found is not None, f"{host} is not in the inventory"
        variables = {**defaults, **self.variables.get_vars(host=found),
                     "ansible_managed": "Managed by Ansible (rendered by the tests)", **(extra or {})}
        return Templar(loader=self.loader, variables=variables).template(trust_as_template(text))
