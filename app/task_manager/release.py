"""What is running: the installed package's version and the release record beside its venv,
for /health and the metrics. A module of its own, so that neither imports the other, nor
the package (whose factory imports them)."""

from __future__ import annotations

import json
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

try:
    __version__ = metadata.version("task-manager")
except metadata.PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0+unknown"


@cache
def release_info(path: str | None) -> dict:
    """The release record: release, revision and built_at, or {} without one."""
    # A deployed release lives in releases/<version>/ with its venv inside it, so
    # the release record sits beside the venv unless the config names another file.
    candidate = Path(path) if path else Path(sys.prefix).parent / "RELEASE.json"
    try:
        data = json.loads(candidate.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: data[k] for k in ("release", "revision", "built_at") if k in data}
