"""plugins/filter/topology.py: which host holds what, for each shape of inventory the
project supports (one host, one host with monitoring, the cluster, a cluster with its
monitoring and backup hosts)."""

from __future__ import annotations

import importlib.util

import pytest

from conftest import ROOT

spec = importlib.util.spec_from_file_location("topology", ROOT / "plugins" / "filter" / "topology.py")
topology = importlib.util.module_from_spec(spec)
spec.loader.exec_module(topology)

ONE_HOST = {"all": ["app1"], "task_manager": ["app1"], "ungrouped": []}
MONITORED = {"all": ["app1", "mon"], "task_manager": ["app1"], "monitoring": ["mon"]}
CLUSTER = {"all": ["db", "lb", "app1", "app2", "backup", "mon"], "task_manager": ["app1", "app2"], "db": ["db"],
           "lb": ["lb"], "backup": ["backup"], "monitoring": ["mon"]}
LB_ONLY = {"all": ["lb", "app1"], "task_manager": ["app1"], "lb": ["lb"], "db": []}


@pytest.mark.parametrize(("groups", "engine", "takers", "ca"), [
    (ONE_HOST, "sqlite", ["app1"], "app1"),
    (MONITORED, "sqlite", ["app1"], "mon"),
    (CLUSTER, "postgresql", ["db"], "db"),
    (LB_ONLY, "sqlite", ["app1"], "lb"),
    ({"all": []}, "sqlite", [], ""),
])
def test_the_database_the_backups_and_the_ca_follow_the_inventorys_groups(groups, engine, takers, ca):
    assert topology.database_engine(groups) == engine
    assert topology.backup_takers(groups) == takers
    assert topology.ca_host(groups) == ca


@pytest.mark.parametrize(("host", "groups", "account", "metrics"), [
    ("app1", ONE_HOST, "task-manager", ("task-manager", "task-manager", "0775")),
    ("mon", MONITORED, "task-manager", ("root", "root", "0755")),
    ("db", CLUSTER, "postgres", ("postgres", "postgres", "0775")),
    ("app2", CLUSTER, "task-manager", ("task-manager", "task-manager", "0775")),
    ("lb", CLUSTER, "task-manager", ("root", "root", "0755")),
])
def test_each_host_backs_up_and_writes_its_figures_as_the_account_that_owns_the_data(host, groups, account, metrics):
    assert topology.backup_account(host, groups, "task-manager") == account
    got = topology.metrics_account(host, groups, "task-manager", "task-manager")
    assert (got["user"], got["group"], got["mode"]) == metrics


@pytest.mark.parametrize(("host", "groups", "offsite", "access"), [
    ("app1", ONE_HOST, False, {"group": "task-manager", "mode": "0700"}),
    ("app1", ONE_HOST, True, {"group": "task-manager-offsite", "mode": "2750"}),
    ("db", CLUSTER, True, {"group": "task-manager-offsite", "mode": "2750"}),
    ("db", CLUSTER, False, {"group": "postgres", "mode": "0700"}),
    # An app host of the cluster takes no backups: its sets (none) stay its own.
    ("app1", CLUSTER, True, {"group": "task-manager", "mode": "0700"}),
])
def test_the_backup_directory_is_shared_only_where_its_sets_leave_the_host(host, groups, offsite, access):
    assert topology.backup_dir_access(host, groups, "task-manager", "task-manager-offsite", offsite) == access


def test_ansible_finds_every_filter_by_its_contract_name():
    names = topology.FilterModule().filters()
    assert all(name.startswith("task_manager_") for name in names)
    assert {"task_manager_backup_takers", "task_manager_ca_host"} <= set(names)


@pytest.mark.parametrize(("groups", "hosts"), [
    (ONE_HOST, ["app1"]),
    (MONITORED, ["mon", "app1"]),
    (CLUSTER, ["db", "backup", "lb", "mon", "app1", "app2"]),
    # A host the inventory holds for something else is never part of a deployment.
    ({**CLUSTER, "all": [*CLUSTER["all"], "mail"], "ungrouped": ["mail"]},
     ["db", "backup", "lb", "mon", "app1", "app2"]),
    ({"all": ["both"], "task_manager": ["both"], "monitoring": ["both"]}, ["both"]),
])
def test_a_deployment_is_its_groups_hosts_each_once_in_the_order_they_are_checked(groups, hosts):
    assert topology.deployment_hosts(groups) == hosts


def test_each_host_runs_the_checks_of_each_of_its_groups_once_in_order():
    assert topology.preflight_roles(["db"], "deploy") == [
        "postgresql", "backup", "offsite_backup", "node_exporter", "host_report", "notify"]
    assert topology.preflight_roles(["lb"], "deploy") == ["haproxy", "keepalived", "node_exporter"]
    # An app host that also holds the monitoring: both groups' checks, node_exporter's once.
    both = topology.preflight_roles(["monitoring", "task_manager"], "deploy")
    assert both[:2] == ["monitoring", "node_exporter"] and both.count("node_exporter") == 1
    assert set(both) == {"monitoring", *topology.APP_HOST_CHECKS}
    assert topology.preflight_roles(["backup"], "migrate-to-postgresql") == []
    assert topology.preflight_roles(["task_manager"], "migrate-to-postgresql")[0] == "move_to_postgresql"
    with pytest.raises(ValueError, match="no preflight map for the runbook 'deplyo'"):
        topology.preflight_roles(["db"], "deplyo")


def test_every_role_the_preflight_map_names_has_checks():
    for runbook in topology.PREFLIGHT.values():
        for roles in runbook.values():
            for role in roles:
                assert (ROOT / "roles" / role / "tasks" / "preflight.yml").is_file(), role


def test_automatic_workers_count_as_the_most_they_can_reach():
    assert topology.worker_counts([0, 3, "0", "5", None], 4) == [4, 3, 4, 5, 4]
    assert topology.worker_counts([], 4) == []


@pytest.mark.parametrize(("groups", "hosts"), [
    (ONE_HOST, ["app1"]),
    (CLUSTER, ["app1"]),  # one database: one host optimises it
    ({"all": ["a", "b"], "task_manager": ["a", "b"]}, ["a", "b"]),  # each its own SQLite file
    ({"all": []}, []),
])
def test_the_weekly_optimisation_runs_once_per_database(groups, hosts):
    assert topology.optimize_hosts(groups) == hosts


def test_one_order_of_checks_for_the_whole_play_the_database_first():
    order = topology.preflight_order("deploy")
    assert order[:3] == ["postgresql", "backup", "offsite_backup"]
    assert len(order) == len(set(order))
    # Every host's checks are in it: the play loops over it and runs a host's own.
    for groups in (["db"], ["backup"], ["lb"], ["monitoring"], ["task_manager"], ["db", "task_manager"]):
        assert set(topology.preflight_roles(groups, "deploy")) <= set(order), groups
    assert set(topology.preflight_order("migrate-to-postgresql")) == {
        "postgresql", "backup", "move_to_postgresql", "base", "app_service", "web", "health_gate"}
