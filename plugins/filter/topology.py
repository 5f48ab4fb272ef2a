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
    group): the backup's account where the database is, the service's on an app host, root
    on a host with neither (its figures' unit has nothing else to run as)."""
    db = _members(groups, "db")
    if db and host == db[0]:
        return {"user": "postgres", "group": "postgres"}
    if host in _members(groups, app_group):
        return {"user": service_user, "group": service_group}
    return {"user": "root", "group": "root"}


def backup_dir_access(host: str, groups: dict, service_group: str, offsite_user: str, offsite_enabled: bool, *,
                      app_group: str = APP_GROUP) -> dict:
    """The backup directory's group and mode: the backup account's alone (0700), or, on a
    host whose sets are copied off it, readable by the off-host account's group (2750:
    setgid, so that each new set keeps that group)."""
    if offsite_enabled and host in backup_takers(groups, app_group):
        return {"group": offsite_user, "mode": "2750"}
    db = _members(groups, "db")
    return {"group": "postgres" if db and host == db[0] else service_group, "mode": "0700"}


class FilterModule:
    def filters(self):
        return {
            "task_manager_database_engine": database_engine,
            "task_manager_backup_takers": backup_takers,
            "task_manager_ca_host": ca_host,
            "task_manager_backup_account": backup_account,
            "task_manager_metrics_account": metrics_account,
            "task_manager_backup_dir_access": backup_dir_access,
        }
