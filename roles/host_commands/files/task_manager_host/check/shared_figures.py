"""What both kinds of host measure alike: systemd's view of their units, the disks, the
newest backup's age, and sizes in MB."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from task_manager_host import paths


def systemd(units: list[str]) -> dict:
    props = "ActiveState,SubState,UnitFileState,NRestarts,MainPID,MemoryCurrent"
    # S603: a fixed absolute program and an argument list, no shell.
    out = subprocess.run([paths.SYSTEMCTL, "show", *units, "-p", props],  # noqa: S603
                         capture_output=True, text=True, check=False)
    result, blocks = {}, out.stdout.strip().split("\n\n")
    for unit, block in zip(units, blocks, strict=False):
        result[unit] = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
    return result


def unit_states(units: dict) -> dict:
    return {u: {k: v.get(k) for k in ("ActiveState", "UnitFileState", "NRestarts")} for u, v in units.items()}


def newest_backup(backup_dir: Path) -> float | None:
    """The mtime of the newest backup set's manifest; safety copies (taken before a
    restore) are not backups. A link is skipped: the backup command writes plain files."""
    manifests = [p for p in backup_dir.glob("*/backup_*.json") if p.parent.name != "safety" and not p.is_symlink()]
    return max((p.stat().st_mtime for p in manifests), default=None)


def age_hours(mtime: float | None) -> float | None:
    return round((time.time() - mtime) / 3600, 2) if mtime else None


def megabytes(size: int | None, digits: int = 2) -> float | None:
    return None if size is None else round(size / 1048576, digits)


def disk_figures(usage, name: str) -> dict:
    """<name>_percent and <name>_free_mb of a shutil.disk_usage result (None: not measured)."""
    if usage is None:
        return {f"{name}_percent": None, f"{name}_free_mb": None}
    return {f"{name}_percent": round(100 * usage.used / usage.total, 1), f"{name}_free_mb": round(usage.free / 1048576)}
