"""A snapshot's set back into the backup directory: restored by the off-host account into
its spool and refused unless it holds only plain files and folders that match the
manifest, then copied into place by the backup account, checked again as it is copied."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from task_manager_host import common
from task_manager_host.offsite.restic import in_future, restic, snapshots
from task_manager_host.offsite.sets import DRILL_DIR, FILE_NAME, KIND, set_paths
from task_manager_host.offsite.settings import NothingToFetch, OffsiteError


def choose(found: list[dict], selector: str, kind: str | None) -> dict:
    found = [s for s in found if s["stamp"] and (kind is None or s["kind"] == kind)]
    if selector == "latest":
        # Never one dated in the future: it would stand in front of every real copy.
        at = dt.datetime.now(dt.UTC)
        matches = [s for s in found if not in_future(s, at)][-1:]
    else:
        matches = [s for s in found if selector in (s["stamp"], s["id"], s["short_id"])
                   or (len(selector) >= 8 and s["id"].startswith(selector))]
    if not matches:
        raise NothingToFetch(f"no snapshot of {'this host' if kind is None else kind + ' sets'} matches {selector!r}")
    return matches[-1]


def fetch_to_spool(config: dict, args) -> dict:
    """As the off-host account: the chosen snapshot restored into the spool, every file
    checked against its manifest. The set's entry, its files named by the spool."""
    spool = Path(config["state_dir"]) / "fetch"
    shutil.rmtree(spool, ignore_errors=True)
    spool.mkdir(mode=0o750)
    snap = choose(snapshots(config), args.selector, args.kind)
    restic(config, "restore", snap["id"], "--target", str(spool))
    plain = plain_tree(spool, snap["short_id"])
    manifests = list(spool.rglob("backup_*.json"))
    if len(manifests) != 1:
        raise OffsiteError(f"snapshot {snap['short_id']} holds {len(manifests)} manifests, not one")
    entry = {**common.read_json(manifests[0], error=OffsiteError), "manifest": str(manifests[0]),
             "dir": str(manifests[0].parent)}
    set_paths(entry)
    for path, is_dir in plain:  # the backup account reads them through the group
        set_mode_no_follow(path, 0o750 if is_dir else 0o640)
    return {"snapshot": snap, "entry": entry}


def plain_tree(root: Path, name: str) -> list[tuple[Path, bool]]:
    """Every path under root, each a folder or a regular file: a snapshot that holds a link
    (to this account's password, say) or a device is refused before anything reads it."""
    found = []
    for folder, dirs, files in os.walk(root):
        for entry in [*dirs, *files]:
            path = Path(folder) / entry
            mode = os.lstat(path).st_mode
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise OffsiteError(f"snapshot {name} holds {path.relative_to(root)}, which is no plain file or folder: "
                                   "refused, nothing placed")
            found.append((path, stat.S_ISDIR(mode)))
    return found


def set_mode_no_follow(path: Path, mode: int) -> None:
    """chmod through a descriptor opened without following a link."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def copy_checked(source: Path, target_dir: Path, owner: int, sha: str | None) -> Path:
    """One spool file into the target folder as a new file renamed over its name: opened
    without following a link, a regular file of the spool's owner, hashed as it is copied."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:  # a link (ELOOP), or gone
        raise OffsiteError(f"{source} is not a file the off-host account fetched ({exc.strerror}): "
                           "nothing placed") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != owner:
            raise OffsiteError(f"{source} is not a file the off-host account fetched: nothing placed")
        digest = hashlib.sha256()
        out_fd, scratch = tempfile.mkstemp(prefix=".fetch-", dir=target_dir)
        try:
            with os.fdopen(out_fd, "wb") as out:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
                os.fchmod(out.fileno(), 0o640)
            if sha is not None and digest.hexdigest() != sha:
                raise OffsiteError(f"{source} does not match its manifest: nothing placed")
            os.replace(scratch, target_dir / source.name)
            return target_dir / source.name
        except BaseException:
            Path(scratch).unlink(missing_ok=True)
            raise


def place(config: dict, fetched: dict, drill: bool) -> dict:
    """As the backup account: the spool's set copied into backups/<kind>/ (or drill/<kind>/,
    never beside the live sets), files first and the manifest last, each checked again as
    it is copied; a set that does not check leaves nothing behind."""
    entry, backup_dir = fetched["entry"], Path(config["backup_dir"])
    kind, files = str(entry.get("kind")), entry.get("files") or {}
    names = [*files, Path(entry["manifest"]).name]
    if not KIND.fullmatch(kind) or kind in ("safety", DRILL_DIR) or not all(FILE_NAME.fullmatch(n) for n in names):
        raise OffsiteError(f"the fetched set names a kind or a file that is not a set's ({kind!r}): nothing placed")
    spool_dir = Path(entry["dir"])
    owner = os.lstat(Path(config["state_dir"]) / "fetch").st_uid
    if drill:
        shutil.rmtree(backup_dir / DRILL_DIR, ignore_errors=True)
        (backup_dir / DRILL_DIR).mkdir(mode=0o750)
    target = backup_dir / (DRILL_DIR if drill else "") / kind
    target.mkdir(mode=0o750, exist_ok=True)
    manifest = target / names[-1]
    changed = not manifest.exists()
    placed: list[Path] = []
    if changed:
        try:
            for name in names:
                sha = (files.get(name) or {}).get("sha256") if name in files else None
                placed.append(copy_checked(spool_dir / name, target, owner, sha))
        except BaseException:
            for path in placed:
                path.unlink(missing_ok=True)
            raise
    return {"changed": changed, "manifest": str(manifest)}


def clear_spool(config: dict) -> dict:
    shutil.rmtree(Path(config["state_dir"]) / "fetch", ignore_errors=True)
    return {}
