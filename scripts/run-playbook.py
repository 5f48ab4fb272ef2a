#!/usr/bin/env python3
"""Run one playbook as an operator types it and answer in JSON: the one recap reader
that the Molecule scenarios and the bench share.

    run-playbook.py [ansible-playbook arguments...]

prints {"rc", "seconds", "changed", "hosts": {HOST: {"ok", "changed", "unreachable",
"failed", "skipped", "rescued", "ignored"}}, "stdout", "stderr"}; the exit status is 0
whenever the playbook ran, whatever it ended with (the caller judges "rc").
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COUNTS = ("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored")
RECAP_LINE = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$")


def read_recap(stdout: str) -> dict[str, dict[str, int]]:
    """Each host's counts from the PLAY RECAP of ansible-playbook's default output."""
    if "PLAY RECAP" not in stdout:
        return {}
    hosts = {}
    for line in stdout.rsplit("PLAY RECAP", 1)[1].splitlines():
        match = RECAP_LINE.match(line.strip())
        if match:
            counts = dict(pair.split("=") for pair in match.group("counts").split())
            hosts[match.group("host")] = {key: int(counts.get(key, 0)) for key in COUNTS}
    return hosts


def ansible_playbook() -> str:
    beside = Path(sys.executable).parent / "ansible-playbook"
    return str(beside) if beside.exists() else (shutil.which("ansible-playbook") or "ansible-playbook")


def run(args: list[str], cwd: Path = ROOT) -> dict:
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    # The project's settings, as from the repository root; never those of the caller
    # (Molecule points ANSIBLE_CONFIG at a file of its own).
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    started = time.perf_counter()
    proc = subprocess.run([ansible_playbook(), *args], cwd=cwd, env=env, text=True, capture_output=True,
                          check=False)
    hosts = read_recap(proc.stdout)
    return {
        "rc": proc.returncode,
        "seconds": round(time.perf_counter() - started, 1),
        "changed": sum(h["changed"] for h in hosts.values()),
        "hosts": hosts,
        "stdout": proc.stdout,
        "stderr": proc.stderr,
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    print(json.dumps(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
