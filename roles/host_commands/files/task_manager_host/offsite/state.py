"""What the command keeps in the off-host account's directory (state_dir): the lock that
lets one copy, forget or fetch run at a time, the state file with the last copy and check
(which check.yml reads), and their figures for Prometheus."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import pwd
from pathlib import Path

from task_manager_host import common
from task_manager_host.offsite.accounts import in_child
from task_manager_host.offsite.settings import OffsiteError, log


@contextlib.contextmanager
def locked(config: dict):
    if config.get("keeper"):  # restic's own lock in the repository is enough there
        yield
        return
    backup_dir, lock = Path(config["backup_dir"]), Path(config["state_dir"]) / "lock"
    if not backup_dir.is_dir():
        raise OffsiteError(f"the backup directory {backup_dir} is missing")
    if os.geteuid() == 0:
        # Root (a fetch) creates nothing in the off-host account's directory: the account
        # makes the lock, and root opens that file of the account's, never through a link.
        in_child(config["offsite_user"], make_lock, lock)
        fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW)
        if os.fstat(fd).st_uid != pwd.getpwnam(config["offsite_user"]).pw_uid:
            os.close(fd)
            raise OffsiteError(f"{lock} is not the off-host account's: not used")
    else:
        fd = make_lock(lock, keep=True)
    with os.fdopen(fd, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # one copy, forget or fetch at a time
        yield


def make_lock(lock: Path, keep: bool = False):
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    if keep:
        return fd
    os.close(fd)
    return {}


def state_file(config: dict) -> Path:
    return Path(config["state_dir"]) / "state.json"


def read_state(config: dict) -> dict:
    with contextlib.suppress(OSError, ValueError):
        return json.loads(state_file(config).read_text(encoding="utf-8"))
    return {}


def record(config: dict, what: str, outcome: dict) -> None:
    """The outcome of a copy or a check, and when each last succeeded."""
    state = read_state(config)
    state[what] = outcome
    if outcome["ok"]:
        state[f"{what}_ok_at"] = outcome["at"]
    common.write_whole(state_file(config), json.dumps(state, indent=2) + "\n", 0o644)
    write_metrics(config, state)


def unix_time(stamp: str | None) -> float | None:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else None


# For Prometheus: the last copy and check, from the state, in the settings' metrics_file in
# the state directory (none: not written). The figures' unit, which writes node_exporter's
# textfile directory, relays these lines: this account writes nowhere but its own directory.
OFFSITE_METRICS = (
    ("last_run_failed", "1: the last copy or check failed", lambda s, w: int(not s[w]["ok"])),
    ("last_success_timestamp_seconds", "When the copy or check last succeeded (Unix time)",
     lambda s, w: unix_time(s.get(f"{w}_ok_at"))),
    ("last_added_bytes", "What the last copy added to the repository, before compression",
     lambda s, w: sum(c.get("bytes_added") or 0 for c in s[w].get("copied", [])) if w == "copy" else None),
)


def write_metrics(config: dict, state: dict) -> None:
    path = config.get("offsite_metrics_file")
    if not path or not Path(path).parent.is_dir():
        return
    # Not common.gauges: it prints a float with :g (a Unix time as 1.7e+09), and these lines
    # keep Python's own repr of each figure, as the figures' readers have always had them.
    lines = []
    for name, text, value in OFFSITE_METRICS:
        lines += [f"# HELP task_manager_offsite_{name} {text}", f"# TYPE task_manager_offsite_{name} gauge"]
        for what in ("copy", "check"):
            figure = value(state, what) if what in state else None
            if figure is not None:
                lines.append(f'task_manager_offsite_{name}{{what="{what}"}} {figure}')
    try:
        common.write_whole(Path(path), "\n".join(lines) + "\n", 0o644)
    except OSError as exc:
        log(config, f"metrics not written to {path}: {exc}")
