"""restic, run with the settings' repository and password: its environment, its runs, this
host's snapshots in the repository, and which of them a retention lets go."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path

from task_manager_host import paths
from task_manager_host.offsite.settings import OffsiteError

TAG = "task-manager"
# restic prints its progress and errors on stderr; a message keeps the last lines.
MESSAGE_LINES = 6


def restic_env(config: dict) -> dict:
    """restic's environment: nothing inherited but what it needs, and the backend's
    credentials (an S3 key, a REST server's password) from the settings' env file."""
    home = config.get("state_dir") or "/nonexistent"
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "LC_ALL": "C.UTF-8", "RESTIC_CACHE_DIR": str(Path(home) / "cache")}
    env_file = config.get("env_file")
    if env_file and Path(env_file).is_file():
        for line in Path(env_file).read_text(encoding="utf-8").splitlines():
            name, sep, value = line.partition("=")
            if sep and name.strip() and not name.lstrip().startswith("#"):
                env[name.strip()] = value.strip()
    return env


def restic(config: dict, *args: str, timeout: float = 3600, stdin: str | None = None,
           password: str | None = None) -> str:
    """restic with the settings' repository and password file (or a password given, in its
    environment: never a command line or a file); its stdout, or an error naming what
    restic said."""
    program = paths.RESTIC  # absolute: root starts this command, PATH decides nothing
    if not os.access(program, os.X_OK):
        raise OffsiteError(f"{program} is missing: off-host copies need restic (apt install restic)")
    env = restic_env(config)
    argv = [program, "--repo", config["repository"], "--quiet"]
    if password is not None:
        env["RESTIC_PASSWORD"] = password
    elif Path(config["password_file"]).is_file():
        argv[3:3] = ["--password-file", config["password_file"]]
    else:
        raise OffsiteError(f"the repository's password file {config['password_file']} is missing")
    if config.get("rclone_program"):
        # The backup host's forced command decides what runs there (rclone serve restic
        # --append-only on this host's repository): what is sent is for the log only.
        argv += ["--option", f"rclone.program={config['rclone_program']}",
                 "--option", "rclone.args=serve restic --stdio --append-only"]
    if config.get("keeper"):
        argv.append("--no-cache")
    try:
        # S603: a fixed absolute program and an argument list, no shell.
        done = subprocess.run([*argv, *args], capture_output=True, text=True, env=env,  # noqa: S603
                              timeout=timeout, check=False, input=stdin)
    except subprocess.TimeoutExpired:
        raise OffsiteError(f"restic {args[0]} did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        said = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        raise OffsiteError(f"restic {args[0]} failed (exit {done.returncode}) on {config['repository']}: "
                           + " / ".join(said[-MESSAGE_LINES:]))
    return done.stdout


def snapshots(config: dict) -> list[dict]:
    """This host's snapshots, oldest first: id, time, kind and stamp."""
    found = []
    for snap in json.loads(restic(config, "snapshots", "--json", "--host", config["host"], "--tag", TAG) or "[]"):
        tags = dict(tag.split(":", 1) for tag in snap.get("tags", []) if ":" in tag)
        found.append({"id": snap["id"], "short_id": snap.get("short_id", snap["id"][:8]), "time": snap["time"],
                      "kind": tags.get("kind"), "stamp": tags.get("stamp")})
    return sorted(found, key=lambda s: s["time"])


# A snapshot dated more than this far ahead of this host's clock is not trusted: whoever
# holds a source could date snapshots years ahead to make restic's own --keep-within
# (which counts back from the newest snapshot) forget every real one.
CLOCK_SKEW = dt.timedelta(hours=1)


def snapshot_time(snap: dict) -> dt.datetime:
    return dt.datetime.fromisoformat(snap["time"])  # restic's nanoseconds: Python 3.11 truncates them


def in_future(snap: dict, at: dt.datetime) -> bool:
    return snapshot_time(snap) > at + CLOCK_SKEW


def to_forget(found: list[dict], days: dict, keep_min: int, at: dt.datetime) -> tuple[list[dict], list[dict]]:
    """By this host's clock, for each kind: keep what was taken within the kind's days and
    the newest keep_min; the rest goes. Snapshots dated in the future are neither kept in
    anyone's place nor removed: they are named (a wrong clock, or someone's forgery)."""
    future = [s for s in found if in_future(s, at)]
    going = []
    for kind in sorted({s["kind"] or "" for s in found}):
        dated = sorted((s for s in found if (s["kind"] or "") == kind and s not in future), key=snapshot_time)
        cutoff = at - dt.timedelta(days=int(days.get(kind, days.get("default", 30))))
        newest = dated[-keep_min:] if keep_min > 0 else []
        going += [s for s in dated if snapshot_time(s) < cutoff and s not in newest]
    return going, future
