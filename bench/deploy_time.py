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


# The baseline: the same run on Ansible's stock linear strategy instead of ansible.cfg's
# (linear through Mitogen), in the same bench run on the same host.
STOCK = {"ANSIBLE_STRATEGY": "linear"}
CONFIGURED = "ansible.cfg's: linear through Mitogen"
BASELINE = "Ansible's stock linear (baseline)"


def main() -> int:
    args = b.arguments(__doc__)
    b.log(f"making a bare host {b.HOST_NAME}")
    b.create_host()
    first, second = b.new_release(), b.new_release()
    third = second if args.smoke else b.new_release()
    # The runs that change nothing are left out of a smoke run: the scenarios prove them; and
    # so is the update, which the update benchmark's smoke run makes under load right after.
    steps = [
        ("first deploy of a bare host", "deploy.yml", first, f"< {GOAL_FIRST_DEPLOY_S} s", True, None),
        ("deploy.yml again (nothing to do)", "deploy.yml", first, "changed=0", not args.smoke, None),
        ("deploy.yml again (nothing to do), the baseline", "deploy.yml", first, "changed=0", not args.smoke, STOCK),
        ("update.yml to a new release", "update.yml", second, "", not args.smoke, None),
        ("update.yml to a new release, the baseline", "update.yml", third, "", not args.smoke, STOCK),
        ("update.yml to the same release (nothing to do)", "update.yml", third, "changed=0", not args.smoke, None),
    ]
    rows = []
    for step, name, version, goal, wanted, env in steps:
        if not wanted:
            continue
        run = b.playbook(name, "-e", f"version={version}", env=env)
        met = run.seconds < GOAL_FIRST_DEPLOY_S if goal.startswith("<") else (run.changed == 0 if goal else None)
        rows.append({"step": step, "strategy": BASELINE if env else CONFIGURED, "playbook": run.playbook,
                     "seconds": run.seconds, "changed": run.changed,
                     "goal": goal, "verdict": "" if met is None else b.verdict(met)})
    for row in rows:
        base = next((r for r in rows if r["step"] == f"{row['step']}, the baseline"), None)
        row["x baseline"] = round(row["seconds"] / base["seconds"], 2) if base else ""
    b.install_helper()
    b.emit("deploy_time", "Deploy time", [
        {"title": "Each run timed as the operator waits for it", "columns": list(rows[0]), "rows": rows,
         "note": ("The first deploy installs nginx and the other Debian packages from the mirror, builds the "
                  "release (wheel and wheelhouse) on this machine and installs it with pip --no-index.")},
    ], smoke=args.smoke, method={"host": "a new bare test-host container each run", "connection": b.CONNECTION,
                                 "releases": "three builds of the project's committed code (bench-N tags)",
                                 "strategy": CONFIGURED + "; each baseline row: " + BASELINE})
    return 0 if all(r["verdict"] != "NOT met" or r["goal"].startswith("<") for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
