#!/usr/bin/env python3
"""Deploy time: the first deploy of a bare host, a second run that changes nothing, an update.

Starts from a new bare bench host (any old one is removed). Each step is one
ansible-playbook run, timed from start to end as an operator waits for it, including
building the release on this machine (its wheels come from pip's cache after the
first build).
  python bench/deploy_time.py [--smoke]
"""

import benchlib as b

GOAL_FIRST_DEPLOY_S = 600


def main() -> int:
    args = b.arguments(__doc__)
    b.log(f"making a bare host {b.HOST_NAME}")
    b.create_host()
    first, second = b.new_release(), b.new_release()
    runs = [
        ("first deploy of a bare host", b.playbook("deploy.yml", "-e", f"version={first}")),
        ("deploy.yml again (nothing to do)", b.playbook("deploy.yml", "-e", f"version={first}")),
        ("update.yml to a new release", b.playbook("update.yml", "-e", f"version={second}")),
        ("update.yml to the same release (nothing to do)", b.playbook("update.yml", "-e", f"version={second}")),
    ]
    b.install_helper()
    goals = {0: f"< {GOAL_FIRST_DEPLOY_S} s", 1: "changed=0", 3: "changed=0"}
    rows = []
    for index, (step, run) in enumerate(runs):
        met = {0: run.seconds < GOAL_FIRST_DEPLOY_S, 1: run.changed == 0, 3: run.changed == 0}.get(index)
        rows.append({"step": step, "playbook": run.playbook, "seconds": run.seconds, "changed": run.changed,
                     "goal": goals.get(index, ""), "verdict": "" if met is None else b.verdict(met)})
    b.emit("deploy_time", "Deploy time", [
        {"title": "Each run timed as the operator waits for it", "columns": list(rows[0]), "rows": rows,
         "note": ("The first deploy installs nginx and the other Debian packages from the mirror, builds the "
                  "release (wheel and wheelhouse) on this machine and installs it with pip --no-index.")},
    ], smoke=args.smoke, method={"host": "a new bare test-host container each run",
                                 "releases": "two builds of the project's committed code (bench-N tags)"})
    return 0 if rows[1]["changed"] == 0 and rows[3]["changed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
