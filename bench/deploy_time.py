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
    # The runs that change nothing are left out of a smoke run: the scenarios prove them; and
    # so is the update, which the update benchmark's smoke run makes under load right after.
    steps = [
        ("first deploy of a bare host", "deploy.yml", first, f"< {GOAL_FIRST_DEPLOY_S} s", True),
        ("deploy.yml again (nothing to do)", "deploy.yml", first, "changed=0", not args.smoke),
        ("update.yml to a new release", "update.yml", second, "", not args.smoke),
        ("update.yml to the same release (nothing to do)", "update.yml", second, "changed=0", not args.smoke),
    ]
    rows = []
    for step, name, version, goal, wanted in steps:
        if not wanted:
            continue
        run = b.playbook(name, "-e", f"version={version}")
        met = run.seconds < GOAL_FIRST_DEPLOY_S if goal.startswith("<") else (run.changed == 0 if goal else None)
        rows.append({"step": step, "playbook": run.playbook, "seconds": run.seconds, "changed": run.changed,
                     "goal": goal, "verdict": "" if met is None else b.verdict(met)})
    b.install_helper()
    b.emit("deploy_time", "Deploy time", [
        {"title": "Each run timed as the operator waits for it", "columns": list(rows[0]), "rows": rows,
         "note": ("The first deploy installs nginx and the other Debian packages from the mirror, builds the "
                  "release (wheel and wheelhouse) on this machine and installs it with pip --no-index.")},
    ], smoke=args.smoke, method={"host": "a new bare test-host container each run", "connection": b.CONNECTION,
                                 "releases": "two builds of the project's committed code (bench-N tags)"})
    return 0 if all(r["verdict"] != "NOT met" or r["goal"].startswith("<") for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
