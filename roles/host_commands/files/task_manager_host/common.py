"""What every host command shares: reading settings, checksums, writing a file whole and
never through a link, reading one's own state without following a link, Prometheus'
textfile lines, and the log line. Standard library only: the commands run on Debian's
python3, never a release's venv, so that they work when a release is broken."""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path


class CommandError(Exception):
    """The command failed: exit status 1, and the message says what to fix."""


def read_json(path: Path, error: type[Exception] = CommandError) -> dict:
    """A JSON object from a settings file; a file missing or unreadable is the command's failure."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise error(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise error(f"cannot read {path}: not a JSON object")
    return data


def read_json_or_empty(path: Path) -> dict:
    """A JSON object from a file, or {} when it is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_own_state(path: Path) -> dict:
    """A command's own state file: {} when there is none, or when a link stands at its name
    (never followed; the write that follows replaces it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return {}
        raise
    with os.fdopen(fd, encoding="utf-8") as handle:
        state = json.load(handle)
    return state if isinstance(state, dict) else {}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def root_may_write(directory: Path) -> bool:
    """Whether root may write in the directory: root's own and nobody else's to write in, so
    no other account can swap what root writes or opens there."""
    info = Path(directory).lstat()
    return stat.S_ISDIR(info.st_mode) and info.st_uid == 0 and not info.st_mode & 0o022


def write_whole(path: Path, text: str, mode: int = 0o644) -> None:
    """Whole or not at all (a reader such as node_exporter may read at any moment), and never
    through a link: a new file of its own (O_EXCL, a name nobody could plant) in the
    directory, renamed over the name, which replaces a link there rather than follow it.
    As root, only into a directory no other account can write."""
    path = Path(path)
    if os.geteuid() == 0 and not root_may_write(path.parent):
        raise CommandError(f"not writing {path} as root: another account can write {path.parent} "
                           "(run the command as that account)")
    fd, scratch = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            os.fchmod(handle.fileno(), mode)
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


def gauges(name: str, help_text: str, samples: Iterable[tuple[dict[str, str], float | int | None]]) -> list[str]:
    """One gauge in Prometheus' text format: its HELP and TYPE, then a line per sample with a
    value (a sample whose value is None is left out). A float is printed with %g, six
    significant digits: a figure, never a Unix time (write those as they are)."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    for labels, value in samples:
        if value is None:
            continue
        label_text = ",".join(f'{key}="{text}"' for key, text in labels.items())
        figure = f"{value:g}" if isinstance(value, float) else str(value)
        lines.append(f"{name}{{{label_text}}} {figure}" if label_text else f"{name} {figure}")
    return lines


def local_stamp() -> str:
    """The time as a log line starts with it (local time, to the second)."""
    return dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def utc_now() -> str:
    """The time as the commands record it: UTC, ISO 8601, to the second, with a Z."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def describe(exc: BaseException) -> str:
    """An exception as the operator reads it: a missing file named, else its message."""
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"{exc.filename} is missing ({exc.strerror})"
    return str(exc)
