"""The runbooks' strategy: Ansible's linear strategy, run through Mitogen where it is installed.

A runbook is a long list of small checks, and stock Ansible pays for each one by starting
Python on the host and compiling its module code again (about 0.2 s each, most of a no-op
deploy's time). Mitogen (the `mitogen` package, requirements-dev.txt) keeps one interpreter
per host and user for the whole run and sends each module's code once; the tasks, their
order, `serial`, handlers, check mode and diffs are linear's own.

Where the package is missing (an Ansible installed without it), the runbooks run on the
stock linear strategy, with a warning that says how to get the speed back.
"""

from __future__ import annotations

DOCUMENTATION = """
name: task_manager
short_description: linear, through Mitogen when the mitogen package is installed
description:
  - Runs each play as Ansible's linear strategy does.
  - Uses Mitogen's connection and module runtime when C(ansible_mitogen) can be imported;
    otherwise warns once and runs the stock linear strategy.
author: task-manager-ops
"""

try:
    import ansible_mitogen.loaders
    import ansible_mitogen.strategy
except ImportError as missing:  # the runbooks still run, at stock speed
    from ansible.plugins.strategy.linear import StrategyModule as _Linear
    from ansible.utils.display import Display

    _WHY = str(missing)
    _told: list[bool] = []  # once per run, not once per play

    class StrategyModule(_Linear):
        def run(self, iterator, play_context):
            if not _told:
                _told.append(True)
                Display().warning(
                    f"Mitogen is not importable ({_WHY}): the runbooks run on Ansible's stock linear "
                    "strategy, a long runbook about twice as slow. Install the pinned `mitogen` from "
                    "requirements-dev.txt beside ansible-core (make venv does).")
            return super().run(iterator, play_context)
else:
    class StrategyModule(ansible_mitogen.strategy.StrategyMixin,
                         ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)):
        pass
