"""Which host holds what, decided once in Python and tested in seconds (tests/test_topology.py).

The contract (playbooks/group_vars/all/contract.yml) names each answer; the roles read the
contract's names. Every function takes the inventory's groups (Ansible's `groups`) and
answers from them alone: nothing a host reports about itself decides where a secret or a
certificate authority lives.
"""

from __future__ import annotations

APP_GROUP = "task_manager"


def _members(groups: dict, name: str) -> list[str]:
    return list(groups.get(name) or [])


def database_engine(groups: dict) -> str:
    """postgresql when the inventory has a db group with a host, else sqlite (one app host)."""
    return "postgresql" if _members(groups, "db") else "sqlite"


def backup_takers(groups: dict, app_group: str = APP_GROUP) -> list[str]:
    """The hosts that take the backups: the db host with PostgreSQL, else each app host."""
    return _members(groups, "db") or _members(groups, app_group)


def ca_host(groups: dict, app_group: str = APP_GROUP) -> str:
    """Where the deployment's own CA lives: the first db host, else the monitoring host,
    else the load balancer, else the first app host ('' for an empty inventory). A host
    every multi-host inventory keeps, reached by every deploy."""
    for name in ("db", "monitoring", "lb", app_group):
        if _members(groups, name):
            return _members(groups, name)[0]
    return ""


def backup_account(host: str, groups: dict, service_user: str) -> str:
    """The account backups run as on this host: postgres on the db host (peer authentication
    lets it dump), the service's account elsewhere (it owns the SQLite file)."""
    db = _members(groups, "db")
    return "postgres" if db and host == db[0] else service_user


def metrics_account(host: str, groups: dict, service_user: str, service_group: str,
                    app_group: str = APP_GROUP) -> dict:
    """Who writes the figures in node_exporter's textfile directory on this host (user and
    group), and the directory's mode: the backup's account where the database is, the
    service's on an app host (its group writes there: 0775), root on a host with neither
    (root alone writes there: 0755, as root's host commands require of a directory they
    write in)."""
    db = _members(groups, "db")
    if db and host == db[0]:
        return {"user": "postgres", "group": "postgres", "mode": "0775"}
    if host in _members(groups, app_group):
        return {"user": service_user, "group": service_group, "mode": "0775"}
    return {"user": "root", "group": "root", "mode": "0755"}


def backup_dir_access(host: str, groups: dict, service_group: str, offsite_user: str, offsite_enabled: bool, *,
                      app_group: str = APP_GROUP) -> dict:
    """The backup directory's group and mode: the backup account's alone (0700), or, on a
    host whose sets are copied off it, readable by the off-host account's group (2750:
    setgid, so that each new set keeps that group)."""
    if offsite_enabled and host in backup_takers(groups, app_group):
        return {"group": offsite_user, "mode": "2750"}
    db = _members(groups, "db")
    return {"group": "postgres" if db and host == db[0] else service_group, "mode": "0700"}


# The groups a deployment is made of, in the order their hosts are checked and deployed.
GROUP_ORDER = ("db", "backup", "lb", "monitoring", APP_GROUP)

# What each runbook checks on a host of each group before it changes anything: the roles
# whose `preflight` entry points run there. A host in several groups runs the union, in
# this order, each role once.
APP_HOST_CHECKS = ("base", "backup", "offsite_backup", "app_service", "app_release", "web", "logrotate",
                   "health_gate", "maintenance", "host_report", "recover", "node_exporter", "notify")
PREFLIGHT = {
    "deploy": {
        "db": ("postgresql", "backup", "offsite_backup", "node_exporter", "host_report", "notify"),
        "backup": ("offsite_backup", "node_exporter"),
        "lb": ("haproxy", "keepalived", "node_exporter"),
        "monitoring": ("monitoring", "node_exporter"),
        APP_GROUP: APP_HOST_CHECKS,
    },
    "migrate-to-postgresql": {
        "db": ("postgresql", "backup"),
        APP_GROUP: ("move_to_postgresql", "base", "backup", "app_service", "web", "health_gate"),
    },
}


def deployment_hosts(groups: dict, app_group: str = APP_GROUP) -> list[str]:
    """Every host a deployment is made of (the db, backup, lb, monitoring and app groups'),
    each once, in the order they are checked: a host the inventory holds for anything
    else is never touched."""
    hosts: list[str] = []
    for name in (*GROUP_ORDER[:-1], app_group):
        hosts += [host for host in _members(groups, name) if host not in hosts]
    return hosts


def preflight_order(runbook: str) -> list[str]:
    """Every role the runbook checks anywhere, in the order the checks run on every host: the
    groups' order, then each group's own. One order for the whole play: Ansible runs a
    role's checks on all the hosts that have them before the next role's, so a per-host
    order would let whichever host answered first decide which refusal is seen."""
    return preflight_roles(list(GROUP_ORDER), runbook)


def preflight_roles(group_names: list[str], runbook: str) -> list[str]:
    """The roles whose checks run on a host in these groups before the runbook changes
    anything (the preflight role includes each one's `preflight` tasks)."""
    if runbook not in PREFLIGHT:
        raise ValueError(f"no preflight map for the runbook {runbook!r}: add it to PREFLIGHT in {__name__}")
    roles: list[str] = []
    for name in GROUP_ORDER:
        if name in group_names:
            roles += [role for role in PREFLIGHT[runbook].get(name, ()) if role not in roles]
    return roles


def optimize_hosts(groups: dict, app_group: str = APP_GROUP) -> list[str]:
    """Where the weekly database optimisation runs: every app host on SQLite (each holds its
    own file), the first app host alone for PostgreSQL (one database for all)."""
    apps = _members(groups, app_group)
    return apps[:1] if _members(groups, "db") else apps


def worker_counts(configured: list, most_when_automatic: int) -> list[int]:
    """Each app host's gunicorn workers as the database must count them: the number set in
    the inventory, or, where it is 0 (automatic, from the host's CPUs), the most the
    automatic count can reach."""
    return [int(value or 0) or int(most_when_automatic) for value in configured]


class FilterModule:
    def filters(self):
        return {
            "task_manager_database_engine": database_engine,
            "task_manager_backup_takers": backup_takers,
            "task_manager_ca_host": ca_host,
            "task_manager_backup_account": backup_account,
            "task_manager_metrics_account": metrics_account,
            "task_manager_backup_dir_access": backup_dir_access,
            "task_manager_deployment_hosts": deployment_hosts,
            "task_manager_preflight_roles": preflight_roles,
            "task_manager_preflight_order": preflight_order,
            "task_manager_worker_counts": worker_counts,
            "task_manager_optimize_hosts": optimize_hosts,
        }
