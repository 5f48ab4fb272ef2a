#!/usr/bin/env python3
"""Print what each host lane of `make test-hosts` ended with, the failed task of a failed one.

CI keeps only the tail of its output, and three lanes interleave before it: this summary is
printed last so that the tail says which lane failed, where, and how long each one took.
"""

import json
import re
import sys
from pathlib import Path

TASK = re.compile(r"^TASK \[(.+?)(?:\] \*+|$)")
FATAL = re.compile(r"^(fatal|failed): \[")
FIRST_ERROR = re.compile(r"^\[ERROR\]: Task failed|^(fatal|failed): \[")
FAILED = re.compile(r"^ERROR  |FAILED|Traceback|^E  ")
WIDTH = 160
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
BOX = re.compile(r"^\s*[│┃|]\s?")


def failure_lines(log: Path, limit: int = 8) -> list[str]:
    """The first task that failed in a lane's log, where it is written, and what it said."""
    # Molecule draws its output in boxes, in colour: the lines as Ansible printed them.
    lines = [BOX.sub("", ANSI.sub("", x)) for x in log.read_text(errors="replace").splitlines()]
    start = next((i for i, x in enumerate(lines) if FIRST_ERROR.match(x)), None)
    if start is None:
        tail = [x for x in lines if FAILED.search(x)] or lines
        return [x[:WIDTH] for x in tail[-limit:]]
    task = next((m.group(1) for x in reversed(lines[: start + 1]) if (m := TASK.match(x))), "?")
    origin = next((x.strip() for x in lines[start : start + 400] if x.startswith("Origin: ")), "")
    fatal = next((i for i in range(start, len(lines)) if FATAL.match(lines[i])), start)
    body = [x.strip()[:WIDTH] for x in lines[fatal : fatal + 40] if x.strip()][:limit]
    return [f"task: {task}", *([origin] if origin else []), *body]


def main(folder: str) -> int:
    results = []
    for status in sorted(Path(folder).glob("*.json")):
        lane = status.stem
        st = json.loads(status.read_text())
        results.append((lane, st["rc"], st["seconds"]))
        if st["rc"]:
            print(f"\n== {lane} failed (exit {st['rc']}); its whole log: {folder}/{lane}.log")
            print("\n".join(failure_lines(status.with_suffix(".log"))))
    print(f"\n{'host lane':<28} {'result':<11} minutes")
    for lane, rc, seconds in results:
        print(f"{lane:<28} {'ok' if rc == 0 else f'FAILED ({rc})':<11} {seconds / 60:5.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
