"""Each kind's last run, for Prometheus: node_exporter's textfile collector reads the .prom
file (the settings' metrics_file); the runs are kept as JSON beside it, since one run knows
only its own kind."""

from __future__ import annotations

import json
import time
from pathlib import Path

from task_manager_host import common
from task_manager_host.backup import settings

BACKUP_METRICS = (
    ("last_success_timestamp_seconds", "When the kind's last verified set was made (Unix time)"),
    ("last_duration_seconds", "How long the kind's last run took, failed or not"),
    ("last_size_bytes", "The size of the kind's last verified set, every file"),
    ("last_verified", "1: the kind's last set passed every check before it was kept"),
    ("last_run_failed", "1: the kind's last run failed (no set was kept)"),
)


def record_run(config: dict, kind: str, started: float, manifest: dict | None) -> None:
    path = config.get("metrics_file")
    # An app host of a PostgreSQL deployment refuses every backup: none of its own to count.
    if not path or not Path(path).parent.is_dir() or not config.get("database_on_this_host", True):
        return
    state_path = Path(path).with_suffix(".json")
    try:
        state = common.read_own_state(state_path)
        run = state.setdefault(kind, {})
        run.update(last_duration_seconds=round(time.time() - started, 3), last_run_failed=int(manifest is None))
        if manifest is not None:
            run.update(last_success_timestamp_seconds=round(time.time(), 3), last_verified=1,
                       last_size_bytes=sum(f["bytes"] for f in manifest["files"].values()))
        common.write_whole(state_path, json.dumps(state, sort_keys=True) + "\n", 0o644)
        # Not common.gauges: it writes a float with :g (six digits), which would round the
        # timestamps to the nearest 1000 s; the values go out as the state holds them.
        lines = []
        for name, text in BACKUP_METRICS:
            lines += [f"# HELP task_manager_backup_{name} {text}", f"# TYPE task_manager_backup_{name} gauge"]
            lines += [f'task_manager_backup_{name}{{kind="{kind}"}} {run[name]}'
                      for kind, run in sorted(state.items()) if name in run]
        common.write_whole(Path(path), "\n".join(lines) + "\n", 0o644)
    except (OSError, ValueError, KeyError) as exc:
        # The figures never fail a backup; the log says they are stale.
        settings.log(config, f"metrics not written to {path}: {exc}")
