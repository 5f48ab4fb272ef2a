"""Which account runs what, and how root becomes it: the off-host account for restic, the
backup account for the sets, each in a child of its own when root starts the command."""

from __future__ import annotations

import grp
import json
import os
import pwd

from task_manager_host.offsite.settings import NothingToFetch, OffsiteError


def backup_account(config: dict) -> str:
    return config.get("run_as_user") or config["user"]


def become(user: str) -> None:
    """This process, from root, to the account: its own groups (the backup directory's for
    the off-host account), nothing else. As any other account: already where it runs."""
    if os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam(user)
        grp.getgrgid(entry.pw_gid)
    except KeyError:
        raise OffsiteError(f"the account {user} does not exist: deploy.yml makes it") from None
    os.initgroups(user, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)


def in_child(user: str, work, *args):
    """work(*args) in a child running as the account; its JSON answer, or its failure raised
    here. The parent, root, stays root only to start the next child."""
    if os.geteuid() != 0:
        return work(*args)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the parent's code
        os.close(read_end)
        try:
            become(user)
            answer = {"ok": work(*args)}
        except NothingToFetch as exc:
            answer = {"nothing": str(exc)}
        except (OffsiteError, OSError, ValueError) as exc:
            answer = {"error": str(exc)}
        except BaseException as exc:  # whatever it was, the parent says it
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        with os.fdopen(write_end, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(answer))
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, encoding="utf-8") as handle:
        said = handle.read()
    os.waitpid(pid, 0)
    answer = json.loads(said) if said else {"error": f"the child running as {user} died"}
    if "nothing" in answer:
        raise NothingToFetch(answer["nothing"])
    if "error" in answer:
        raise OffsiteError(answer["error"])
    return answer["ok"]


def run_as(config: dict, command: str) -> str:
    """Who runs the command: the backup account shares its sets; a fetch starts as root and
    runs each part as its account; everything else runs as the off-host account (on the
    backup host: the source's account)."""
    if config.get("keeper"):
        return config["run_as_user"]
    return {"share": backup_account(config), "fetch": "root"}.get(command, config["offsite_user"])
