"""task-manager-backup (task_manager_host.backup) on a temporary SQLite file, in seconds:
create, verify, prune (the newest-3 rule), restore, damaged sets, a full disk, encryption,
and the exit statuses the runbooks rely on (0 done, 1 failed, 2 bad usage, 3 nothing there)."""

from __future__ import annotations

import collections
import gzip
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import add_tasks, current_account, install_command, make_database, task_count
from task_manager_host import common, paths
from task_manager_host.backup import cli as backup_cli
from task_manager_host.backup import sets as backup_sets
from task_manager_host.backup import sqlite as backup_sqlite
from task_manager_host.backup.errors import BackupError

GPG_PRESENT = os.access(paths.GPG, os.X_OK)
needs_gpg = pytest.mark.skipif(not GPG_PRESENT, reason=f"{paths.GPG} is missing (apt install gnupg)")


class Host:
    """A host's layout under tmp_path, the command's settings file pointing at it."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        self.root = tmp_path
        self.database = tmp_path / "instance" / "task_manager.db"
        self.backup_dir = tmp_path / "backups"
        self.log_dir = tmp_path / "logs"
        self.key_file = tmp_path / "backup.key"
        self.config_file = tmp_path / "backup.json"
        self.backup_dir.mkdir(mode=0o700)
        self.log_dir.mkdir()
        (self.log_dir / "task_manager.log").write_text("a log line\n", encoding="utf-8")
        release = tmp_path / "releases" / "20250101-abc"
        release.mkdir(parents=True)
        (release / "RELEASE.json").write_text(json.dumps({"revision": "abc123"}), encoding="utf-8")
        (tmp_path / "current").symlink_to(release)
        app_env = tmp_path / "config" / "app.env"
        app_env.parent.mkdir()
        app_env.write_text("SETTING=1\n", encoding="utf-8")
        user, group = current_account()
        self.config = {
            "database": str(self.database), "backup_dir": str(self.backup_dir), "log_dir": str(self.log_dir),
            "current_link": str(tmp_path / "current"), "user": user, "group": group, "service": "task-manager",
            "keep_min": 3, "retention_days": {"default": 30, "monthly": 365},
            "config_paths": [str(app_env), str(tmp_path / "config" / "not-there")],
            "encrypt": False, "encryption_key_file": str(self.key_file),
        }
        self.write_config()
        monkeypatch.setenv("TASK_MANAGER_BACKUP_CONFIG", str(self.config_file))
        # The layout and the settings in one file here: the command merges the two.
        monkeypatch.setenv("TASK_MANAGER_LAYOUT", str(self.config_file))
        # Running as root, the command drops to the configured account (this one) and sets
        # HOME: monkeypatch puts HOME back, and initgroups must not change the test run's groups.
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.setattr(os, "setgroups", lambda groups: None)
        # No systemd in a test: the service is not running unless a test says so.
        monkeypatch.setattr(paths, "SYSTEMCTL", str(tmp_path / "no-systemctl"))

    def write_config(self, **changes) -> None:
        self.config.update(changes)
        self.config_file.write_text(json.dumps(self.config), encoding="utf-8")

    def sets(self, kind: str | None = None) -> list[dict]:
        return backup_sets.manifests(self.config, kind)

    def files(self) -> list[Path]:
        return sorted(p for p in self.backup_dir.rglob("*") if p.is_file() and p.name != ".lock")


@pytest.fixture
def host(tmp_path, monkeypatch):
    return Host(tmp_path, monkeypatch)


@pytest.fixture
def short_host(monkeypatch):
    """A host under a short path: gpg-agent's sockets live in GNUPGHOME, beside the set's
    scratch files, and a Unix socket path must stay under 108 bytes (pytest's tmp_path is long)."""
    root = Path(tempfile.mkdtemp(prefix="tmb-"))
    yield Host(root, monkeypatch)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def db(host):
    return make_database(host.database)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """main() with these arguments: its exit status, stdout and stderr."""
    try:
        status = backup_cli.main(list(argv))
    except SystemExit as exc:  # argparse
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def create(capsys, *argv: str) -> dict:
    status, out, err = run(capsys, "create", *argv)
    assert status == 0, err
    return json.loads(out)


def fingerprint(path: Path) -> str:
    return common.sha256(path)


# --- create and verify -------------------------------------------------------------------


def test_a_daily_set_is_a_verified_copy_and_dump_with_a_manifest(host, db, capsys):
    made = create(capsys, "--kind", "daily", "--label", "nightly")
    directory = host.backup_dir / "daily"
    stamp = made["stamp"]
    names = {f"task_manager_{stamp}.db", f"dump_{stamp}.sql.gz"}
    assert set(made["files"]) == names
    assert made["manifest"] == str(directory / f"backup_{stamp}.json")
    assert (made["kind"], made["label"], made["integrity"], made["encrypted"]) == ("daily", "nightly", "ok", False)
    assert (made["users"], made["tasks"], made["schema_revision"]) == (2, 5, "0003")
    assert (made["release"], made["revision"]) == ("20250101-abc", "abc123")
    # The manifest on disk is what was printed, and every sha256 in it is the file's.
    on_disk = json.loads((directory / f"backup_{stamp}.json").read_text(encoding="utf-8"))
    assert on_disk["files"] == made["files"]
    for name, meta in on_disk["files"].items():
        assert fingerprint(directory / name) == meta["sha256"]
        assert (directory / name).stat().st_size == meta["bytes"]
        assert (directory / name).stat().st_mode & 0o777 == 0o600
    assert backup_sqlite.integrity(directory / f"task_manager_{stamp}.db") == "ok"
    assert backup_sqlite.counts(directory / f"task_manager_{stamp}.db") == {
        "users": 2, "tasks": 5, "schema_revision": "0003"}
    # The dump loads back into the same rows.
    with gzip.open(directory / f"dump_{stamp}.sql.gz", "rt", encoding="utf-8") as handle:
        assert "CREATE TABLE users" in handle.read()
    assert host.backup_dir.stat().st_mode & 0o777 == 0o700
    assert not list(host.backup_dir.glob(".tmp-*"))  # the scratch directory is gone
    assert "daily backup ok: tasks=5" in (host.log_dir / "backup.log").read_text(encoding="utf-8")


def test_a_manual_set_is_the_default_and_a_weekly_one_is_full(host, db, capsys):
    manual = create(capsys)
    assert manual["kind"] == "manual" and manual["dir"] == str(host.backup_dir / "manual")
    weekly = create(capsys, "--kind", "weekly")
    prefixes = sorted(name.split("_", 1)[0] for name in weekly["files"])
    assert prefixes == ["config", "dump", "logs", "task"]
    with gzip.open(Path(weekly["dir"]) / f"config_{weekly['stamp']}.tar.gz") as handle:
        assert b"SETTING=1" in handle.read()


def test_the_dump_is_made_without_the_sqlite3_program_too(host, db, capsys, monkeypatch):
    monkeypatch.setattr(paths, "SQLITE3", str(host.root / "no-sqlite3"))
    made = create(capsys, "--kind", "daily")
    assert made["tasks"] == 5
    status, out, _ = run(capsys, "restore", "latest", "--from", "dump")
    assert status == 0 and json.loads(out)["tasks"] == 5


def test_a_dump_that_does_not_load_back_the_same_rows_is_refused(host, db, tmp_path):
    dump_file = tmp_path / "dump.sql.gz"
    backup_sqlite.dump(db, dump_file)
    with pytest.raises(BackupError, match="the SQL dump holds"):
        backup_sqlite.verify_dump(dump_file, {"users": 2, "tasks": 6, "schema_revision": "0003"}, tmp_path / "v.db")


def test_the_dump_loaded_while_it_is_written_must_hold_the_copys_rows(host, db, tmp_path):
    with pytest.raises(BackupError, match="the SQL dump holds"):
        backup_sqlite.dump_and_verify(db, tmp_path / "dump.sql.gz", {"users": 2, "tasks": 6, "schema_revision": "0003"},
                                      tmp_path / "v.db")
    expected = backup_sqlite.counts(db)
    backup_sqlite.dump_and_verify(db, tmp_path / "dump.sql.gz", expected, tmp_path / "v2.db")
    assert backup_sqlite.counts(tmp_path / "v2.db") == expected
    # the file written is the dump that loaded: loading it again gives the same rows
    backup_sqlite.verify_dump(tmp_path / "dump.sql.gz", expected, tmp_path / "v3.db")


def test_a_dump_that_cannot_be_loaded_is_refused_with_sqlites_reason(host, db, tmp_path):
    with pytest.raises(BackupError, match=r"the SQL dump does not load into a database: .*unable to open"):
        backup_sqlite.dump_and_verify(db, tmp_path / "dump.sql.gz", backup_sqlite.counts(db),
                                      tmp_path / "no-such-dir" / "v.db")


def lose_an_index_row(path: Path) -> None:
    """Damage a database the way integrity_check finds (and not the way opening it does):
    a user added to the table while its unique index keeps the page it had before."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode = DELETE")
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_users_1'").fetchone()[0]
        old_index = path.read_bytes()[(root - 1) * page: root * page]
        conn.execute("INSERT INTO users (username, password_hash) VALUES ('late', 'x')")
        conn.commit()
    finally:
        conn.close()
    data = bytearray(path.read_bytes())
    data[(root - 1) * page: root * page] = old_index
    path.write_bytes(bytes(data))


def test_a_database_that_fails_integrity_check_leaves_no_set(host, db, capsys):
    lose_an_index_row(db)
    status, _, err = run(capsys, "create", "--kind", "daily")
    assert status == 1
    assert f"the copy of {db} fails PRAGMA integrity_check: " in err
    assert "missing from index" in err
    assert host.files() == []
    assert "FAILED" in (host.log_dir / "backup.log").read_text(encoding="utf-8")


def test_list_shows_the_sets(host, db, capsys):
    first = create(capsys, "--kind", "daily")
    second = create(capsys, "--kind", "manual", "--label", "x")
    status, out, _ = run(capsys, "list", "--json")
    assert status == 0
    assert [m["stamp"] for m in json.loads(out)] == [first["stamp"], second["stamp"]]
    status, out, _ = run(capsys, "list", "--kind", "manual")
    assert status == 0
    assert out.splitlines() == [f"{second['stamp']}  manual     tasks=5 release=20250101-abc  {second['manifest']}"]


# --- missing things: 3 only for a database file not made yet -----------------------------


def test_no_database_file_yet_is_exit_3(host, capsys):
    host.database.parent.mkdir()
    status, out, err = run(capsys, "create", "--kind", "daily")
    assert (status, out) == (3, "")
    assert f"no database at {host.database}: nothing to back up yet" in err
    assert host.files() == []


def test_an_app_host_of_a_postgresql_deployment_is_refused_by_name_not_taken_for_empty(host, db, capsys):
    host.write_config(database_engine="postgresql", db_host="db-01", database_on_this_host=False)
    status, out, err = run(capsys, "create", "--kind", "daily")
    assert (status, out) == (1, "")
    assert "the database is postgresql on db-01: its backups are taken and restored there" in err
    assert host.files() == []


def test_a_missing_instance_directory_is_a_failure_that_names_it(host, capsys):
    for argv in (["create", "--kind", "daily"], ["restore", "latest"]):
        status, _, err = run(capsys, *argv)
        assert status == 1, argv
        assert f"FAILED: the instance directory {host.database.parent} is missing" in err
    assert host.files() == []


def test_a_missing_backup_directory_is_a_failure_not_made_anew(host, db, capsys):
    shutil.rmtree(host.backup_dir)
    for argv in (["create", "--kind", "daily"], ["prune"], ["restore", "latest"]):
        status, _, err = run(capsys, *argv)
        assert status == 1, argv
        assert f"the backup directory {host.backup_dir} is missing" in err
    assert not host.backup_dir.exists()


def test_a_missing_gpg_is_a_failure_that_names_it(host, db, capsys, monkeypatch):
    host.key_file.write_text("secret\n", encoding="utf-8")
    host.write_config(encrypt=True)
    monkeypatch.setattr(paths, "GPG", str(host.root / "bin" / "gpg"))
    status, _, err = run(capsys, "create", "--kind", "daily")
    assert status == 1
    assert f"{host.root / 'bin' / 'gpg'} is missing" in err
    assert host.files() == []


def test_a_missing_key_file_is_a_failure_that_names_it(host, db, capsys):
    host.write_config(encrypt=True)
    status, _, err = run(capsys, "create", "--kind", "daily")
    assert status == 1
    assert f"the key file {host.key_file} is missing" in err
    assert host.files() == []


def test_any_other_missing_file_is_exit_1_and_named(host, db, capsys, monkeypatch):
    def vanished(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", "/somewhere/else")

    monkeypatch.setattr(backup_sqlite, "online_copy", vanished)
    status, _, err = run(capsys, "create")
    assert status == 1
    assert "FAILED: /somewhere/else is missing (No such file or directory)" in err


def test_an_unreadable_config_is_exit_1(host, capsys, monkeypatch):
    monkeypatch.setenv("TASK_MANAGER_BACKUP_CONFIG", str(host.root / "nothing.json"))
    status, _, err = run(capsys, "list")
    assert status == 1
    assert f"cannot read {host.root / 'nothing.json'}" in err


def test_bad_usage_is_exit_2(host, capsys):
    assert run(capsys, "restore")[0] == 2
    assert run(capsys, "create", "latest")[0] == 2
    assert run(capsys, "create", "--kind", "yearly")[0] == 2


# --- a full disk -------------------------------------------------------------------------


def test_a_full_disk_is_refused_before_anything_is_written(host, db, capsys, monkeypatch):
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(100 << 20, 95 << 20, 5 << 20))
    status, _, err = run(capsys, "create", "--kind", "daily")
    assert status == 1
    assert f"not enough space in {host.backup_dir}: 5 MB free" in err
    assert "needs about 16 MB" in err
    assert host.files() == []
    assert sorted(p.name for p in host.backup_dir.iterdir()) == [".lock"]  # not even the kind's folder


# --- prune: retention, and the newest three of each kind always stay ---------------------


def age(entry: dict, days: float) -> None:
    when = time.time() - days * 86400
    os.utime(entry["manifest"], (when, when))


def test_prune_keeps_the_newest_three_of_each_kind_whatever_their_age(host, db, capsys):
    daily = [create(capsys, "--kind", "daily") for _ in range(5)]
    monthly = [create(capsys, "--kind", "monthly") for _ in range(4)]
    for entry in daily:
        age(entry, 40)  # all past the 30 days
    for entry in monthly[:2]:
        age(entry, 40)  # within the monthly 365 days
    status, out, _ = run(capsys, "prune", "--dry-run")
    assert status == 0
    would = [line.removeprefix("would remove ") for line in out.splitlines()]
    assert sorted(would) == sorted(str(Path(entry["dir"]) / name)
                                   for entry in daily[:2] for name in [*entry["files"], Path(entry["manifest"]).name])
    assert len(host.sets("daily")) == 5  # a dry run removes nothing
    status, out, _ = run(capsys, "prune")
    assert status == 0 and len(out.splitlines()) == 6
    assert [m["stamp"] for m in host.sets("daily")] == [entry["stamp"] for entry in daily[2:]]
    assert len(host.sets("monthly")) == 4
    assert "prune: removed 6 files" in (host.log_dir / "backup.log").read_text(encoding="utf-8")
    # Again: nothing left past retention beyond the newest three, and an idle prune logs nothing.
    before = (host.log_dir / "backup.log").read_text(encoding="utf-8")
    assert run(capsys, "prune") == (0, "", "")
    assert (host.log_dir / "backup.log").read_text(encoding="utf-8") == before


def test_prune_removes_only_sets_past_retention(host, db, capsys):
    daily = [create(capsys, "--kind", "daily") for _ in range(5)]
    age(daily[0], 40)
    age(daily[1], 10)
    run(capsys, "prune")
    assert [m["stamp"] for m in host.sets("daily")] == [entry["stamp"] for entry in daily[1:]]


def test_prune_with_keep_min_0_follows_retention_alone(host, db, capsys):
    host.write_config(keep_min=0)
    entry = create(capsys, "--kind", "daily")
    age(entry, 31)
    run(capsys, "prune")
    assert host.sets("daily") == []


# --- restore -----------------------------------------------------------------------------


def test_restore_latest_puts_the_newest_set_back_and_keeps_a_safety_copy(host, db, capsys):
    create(capsys, "--kind", "daily")
    add_tasks(db, 3)
    newest = create(capsys, "--kind", "manual")
    add_tasks(db, 10)  # written after the newest backup: the restore loses them
    Path(f"{db}-wal").write_bytes(b"stale")  # must not be replayed into the restored file
    before = fingerprint(db)
    status, out, err = run(capsys, "restore", "latest")
    assert status == 0, err
    result = json.loads(out)
    assert (result["stamp"], result["kind"], result["source"], result["tasks"]) == (newest["stamp"], "manual", "db", 8)
    assert result["skipped"] == []
    assert task_count(db) == 8 and backup_sqlite.integrity(db) == "ok"
    assert not Path(f"{db}-wal").exists() and not Path(f"{db}-shm").exists()
    assert db.stat().st_mode & 0o777 == 0o600
    safety = json.loads(Path(result["safety_copy"]).read_text(encoding="utf-8"))
    assert safety["kind"] == "safety" and newest["stamp"] in safety["label"]
    kept = Path(result["safety_copy"]).parent / f"task_manager_{safety['stamp']}.db"
    assert result["safety_database"] == str(kept)  # what the reports name: the damaged database's copy
    assert fingerprint(kept) == before == safety["files"][kept.name]["sha256"]
    assert (Path(result["safety_copy"]).parent / f"task_manager_{safety['stamp']}.db-wal").read_bytes() == b"stale"
    # A safety copy is never itself the "latest" set.
    assert all(m["kind"] != "safety" for m in backup_sets.select_sets(host.config, "latest", None))
    assert not list(db.parent.glob(".restore-*"))


def test_verify_checks_the_set_restore_would_use_and_touches_nothing(host, db, capsys):
    older = create(capsys, "--kind", "daily")
    add_tasks(db, 2)
    newer = create(capsys, "--kind", "daily")
    add_tasks(db, 1)
    before, files_before = fingerprint(db), host.files()
    for source in ("db", "dump"):
        status, out, err = run(capsys, "verify", "latest", "--from", source)
        assert status == 0, err
        done = json.loads(out)
        assert (done["stamp"], done["source"], done["tasks"], done["skipped"]) == (newer["stamp"], source, 7, [])
    copy = Path(newer["dir"]) / f"task_manager_{newer['stamp']}.db"
    copy.write_bytes(copy.read_bytes()[:-10])
    status, _, err = run(capsys, "verify", "latest")
    assert status == 1 and "does not match its manifest" in err
    status, out, err = run(capsys, "verify", "latest-good")
    assert status == 0, err
    assert (json.loads(out)["stamp"], json.loads(out)["tasks"]) == (older["stamp"], 5)
    assert fingerprint(db) == before
    assert host.files() == files_before
    assert not list(db.parent.glob(".verify-*"))
    assert run(capsys, "verify")[0] == 2  # a selector is required


def test_restore_a_named_set_from_its_dump(host, db, capsys):
    old = create(capsys, "--kind", "daily")
    add_tasks(db, 4)
    create(capsys, "--kind", "daily")
    for selector in (old["stamp"], old["manifest"], Path(old["manifest"]).name):
        status, out, err = run(capsys, "restore", selector, "--from", "dump")
        assert status == 0, err
        assert (json.loads(out)["stamp"], json.loads(out)["source"]) == (old["stamp"], "dump")
        assert task_count(db) == 5


def test_restore_into_an_instance_without_a_database(host, db, capsys):
    create(capsys)
    db.unlink()
    status, out, _ = run(capsys, "restore", "latest")
    assert status == 0
    assert (json.loads(out)["safety_copy"], json.loads(out)["safety_database"]) == (None, None)
    assert task_count(db) == 5


def test_restore_with_nothing_to_restore_is_exit_3(host, db, capsys):
    status, _, err = run(capsys, "restore", "latest")
    assert status == 3 and "no backup set matches 'latest'" in err
    create(capsys)
    status, _, err = run(capsys, "restore", "20000101_000000_000000")
    assert status == 3 and "no backup set matches" in err


def test_restore_is_refused_under_a_running_service(host, db, capsys, monkeypatch):
    create(capsys)
    systemctl = host.root / "systemctl"
    systemctl.write_text("#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/asked\"\nexit 0\n", encoding="utf-8")
    systemctl.chmod(0o755)
    monkeypatch.setattr(paths, "SYSTEMCTL", str(systemctl))
    before = fingerprint(db)
    status, _, err = run(capsys, "restore", "latest")
    assert status == 1 and "never restore under a running service" in err
    assert (host.root / "asked").read_text().split() == [
        "is-active", "--quiet", "task-manager.service", "task-manager.socket"]
    assert fingerprint(db) == before
    systemctl.write_text("#!/bin/sh\nexit 3\n", encoding="utf-8")  # inactive
    assert run(capsys, "restore", "latest")[0] == 0


# --- damaged sets ------------------------------------------------------------------------


def damage_truncate(entry: dict) -> Path:
    path = Path(entry["dir"]) / f"task_manager_{entry['stamp']}.db"
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2)
    return path


def test_a_truncated_set_is_refused_and_nothing_is_touched(host, db, capsys):
    create(capsys, "--kind", "daily")
    newest = create(capsys, "--kind", "daily")
    truncated = damage_truncate(newest)
    before = fingerprint(db)
    status, _, err = run(capsys, "restore", "latest")
    assert status == 1
    assert f"{truncated} is missing or does not match its manifest" in err
    assert fingerprint(db) == before
    assert not (host.backup_dir / "safety").exists()


def test_a_wrong_checksum_is_refused(host, db, capsys):
    entry = create(capsys)
    manifest = json.loads(Path(entry["manifest"]).read_text(encoding="utf-8"))
    name = f"dump_{entry['stamp']}.sql.gz"
    manifest["files"][name]["sha256"] = "0" * 64
    Path(entry["manifest"]).write_text(json.dumps(manifest), encoding="utf-8")
    status, _, err = run(capsys, "restore", entry["stamp"], "--from", "dump")
    assert status == 1 and "does not match its manifest" in err


def test_a_missing_file_or_a_set_without_the_source_is_refused(host, db, capsys):
    entry = create(capsys)
    (Path(entry["dir"]) / f"dump_{entry['stamp']}.sql.gz").unlink()
    assert run(capsys, "restore", "latest", "--from", "dump")[0] == 1
    manifest = json.loads(Path(entry["manifest"]).read_text(encoding="utf-8"))
    del manifest["files"][f"dump_{entry['stamp']}.sql.gz"]
    Path(entry["manifest"]).write_text(json.dumps(manifest), encoding="utf-8")
    status, _, err = run(capsys, "restore", "latest", "--from", "dump")
    assert status == 1 and f"set {entry['stamp']} has no dump file" in err


def test_a_set_whose_copy_fails_integrity_check_is_refused(host, db, capsys):
    entry = create(capsys)
    copy = Path(entry["dir"]) / f"task_manager_{entry['stamp']}.db"
    lose_an_index_row(copy)
    manifest = json.loads(Path(entry["manifest"]).read_text(encoding="utf-8"))
    manifest["files"][copy.name]["sha256"] = fingerprint(copy)  # damaged before it was checksummed
    Path(entry["manifest"]).write_text(json.dumps(manifest), encoding="utf-8")
    before = fingerprint(db)
    status, _, err = run(capsys, "restore", "latest")
    assert status == 1
    assert f"set {entry['stamp']} (db) fails PRAGMA integrity_check: " in err
    assert "missing from index sqlite_autoindex_users_1" in err
    assert fingerprint(db) == before


def test_latest_good_skips_damaged_sets(host, db, capsys):
    good = create(capsys, "--kind", "daily")
    add_tasks(db, 2)
    damaged = create(capsys, "--kind", "daily")
    damage_truncate(damaged)
    Path(f"{db}").write_bytes(b"this database is broken")
    status, out, err = run(capsys, "restore", "latest-good")
    assert status == 0, err
    result = json.loads(out)
    assert result["stamp"] == good["stamp"]
    assert len(result["skipped"]) == 1 and damaged["stamp"] in result["skipped"][0]
    assert task_count(db) == 5


def test_latest_good_with_every_set_damaged_is_exit_3_and_touches_nothing(host, db, capsys):
    for _ in range(2):
        damage_truncate(create(capsys))
    before = fingerprint(db)
    status, _, err = run(capsys, "restore", "latest-good")
    assert status == 3 and "no backup set passes its checks" in err
    assert fingerprint(db) == before


def test_a_restored_file_that_fails_its_last_check_is_a_failure(host, db, capsys, monkeypatch):
    create(capsys)
    checked = []

    def integrity(path):
        checked.append(Path(path))
        return "ok" if Path(path) != db else "row 1 missing from index"

    monkeypatch.setattr(backup_sqlite, "integrity", integrity)
    status, _, err = run(capsys, "restore", "latest")
    assert status == 1 and "the restored database fails PRAGMA integrity_check" in err
    assert checked[-1] == db


# --- encryption --------------------------------------------------------------------------


def gpg_agents_under(root: Path) -> list[str]:
    """The command lines of the gpg-agents running for a home under root."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:  # a process may end while it is read
            line = b" ".join(cmdline.read_bytes().split(b"\0")).decode(errors="replace")
            zombie = ") Z " in cmdline.with_name("stat").read_text(errors="replace")
        except OSError:
            continue
        if "gpg-agent" in line and str(root) in line and not zombie:
            found.append(line)
    return found


@needs_gpg
def test_encrypted_sets_restore_and_a_wrong_passphrase_is_refused(short_host, capsys):
    host = short_host
    db = make_database(host.database)
    host.key_file.write_text("correct horse battery staple\n", encoding="utf-8")
    host.write_config(encrypt=True)
    first = create(capsys, "--kind", "weekly")
    assert first["encrypted"] is True
    # No gpg-agent outlives the command (the backup unit would wait for it, then fail).
    assert gpg_agents_under(host.root) == []
    assert all(name.endswith(".gpg") for name in first["files"])
    copy = Path(first["dir"]) / f"task_manager_{first['stamp']}.db.gpg"
    assert b"SQLite format 3" not in copy.read_bytes()
    add_tasks(db, 1)
    create(capsys, "--kind", "daily")
    add_tasks(db, 1)
    for source, tasks in (("db", 6), ("dump", 6)):
        status, out, err = run(capsys, "restore", "latest", "--from", source)
        assert status == 0, err
        assert json.loads(out)["tasks"] == tasks == task_count(db)

    # The wrong passphrase: refused, and the database and the backups are as they were.
    host.key_file.write_text("a wrong passphrase\n", encoding="utf-8")
    add_tasks(db, 1)
    before, files_before = fingerprint(db), host.files()
    status, _, err = run(capsys, "verify", "latest")
    assert status == 1 and f"cannot be decrypted with the passphrase in {host.key_file}: a wrong passphrase" in err
    status, _, err = run(capsys, "restore", "latest")
    assert status == 1 and f"cannot be decrypted with the passphrase in {host.key_file}: a wrong passphrase" in err
    status, _, err = run(capsys, "restore", "latest-good")
    assert status == 3 and "no backup set passes its checks" in err
    assert fingerprint(db) == before
    assert host.files() == files_before
    assert not list(db.parent.glob(".restore-*"))


@needs_gpg
def test_restoring_an_encrypted_set_without_gpg_names_gpg_and_tries_no_older_set(short_host, capsys, monkeypatch):
    host = short_host
    db = make_database(host.database)
    create(capsys)  # a plain set an unthinking latest-good would fall back to
    host.key_file.write_text("secret\n", encoding="utf-8")
    host.write_config(encrypt=True)
    create(capsys)
    monkeypatch.setattr(paths, "GPG", str(host.root / "no-gpg"))
    before = fingerprint(db)
    status, _, err = run(capsys, "restore", "latest-good")
    assert status == 1 and f"{host.root / 'no-gpg'} is missing" in err
    assert fingerprint(db) == before


# --- privileges and the script as cron runs it -------------------------------------------


def test_drop_privileges_switches_to_the_configured_account(host, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(os, "setgroups", lambda groups: calls.append(("setgroups", groups)))
    monkeypatch.setattr(os, "setgid", lambda gid: calls.append(("setgid", gid)))
    monkeypatch.setattr(os, "setuid", lambda uid: calls.append(("setuid", uid)))
    backup_cli.drop_privileges(host.config)
    # Its group and the backup directory's (the off-host account's, on a host that copies
    # off-host), so that a root run keeps a kind's folder setgid as cron's run does.
    shared = host.backup_dir.stat().st_gid
    assert calls == [("setgroups", sorted({os.getgid(), shared})), ("setgid", os.getgid()), ("setuid", os.getuid())]
    assert os.environ["HOME"] == str(host.backup_dir)
    with pytest.raises(BackupError, match="does not exist"):
        backup_cli.drop_privileges({**host.config, "user": "no-such-user-here"})
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    calls.clear()
    backup_cli.drop_privileges(host.config)
    assert calls == []


@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="no /usr/bin/python3")
def test_the_script_runs_on_the_system_python_alone(host, db):
    """The command as cron runs it: Debian's python3, no venv, isolated from site packages."""
    env = {"PATH": "/usr/bin:/bin", "TASK_MANAGER_BACKUP_CONFIG": str(host.config_file),
           "TASK_MANAGER_LAYOUT": str(host.config_file), "HOME": str(host.root)}
    # The command as the host_commands role installs it: `#!/usr/bin/python3 -IB`, which ignores
    # PYTHONPATH and the working directory and writes no bytecode, on the package in this checkout.
    command = install_command("backup", host.root)
    proc = subprocess.run([str(command), "create", "--kind", "daily"],
                          capture_output=True, text=True, env=env, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tasks"] == 5
    assert command.read_text(encoding="utf-8").startswith("#!/usr/bin/python3 -IB\n")


def test_sqlite_errors_are_failures(host, db, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise sqlite3.DatabaseError("file is not a database")

    monkeypatch.setattr(backup_sqlite, "online_copy", broken)
    status, _, err = run(capsys, "create")
    assert status == 1 and "file is not a database" in err


# --- each kind's last run, for Prometheus (node_exporter's textfile collector) -------------


def backup_figures(path: Path) -> dict:
    """The file as Prometheus reads it: (name, kind) -> value; a malformed line raises."""
    return {(s.name, s.labels["kind"]): s.value
            for family in text_string_to_metric_families(path.read_text(encoding="utf-8")) for s in family.samples}


def test_each_kinds_last_run_is_kept_for_prometheus_failed_or_not(host, db, capsys):
    metrics = host.root / "metrics" / "task_manager_backup.prom"
    metrics.parent.mkdir()
    host.write_config(metrics_file=str(metrics))
    before = time.time()
    daily = create(capsys, "--kind", "daily")
    weekly = create(capsys, "--kind", "weekly")
    figures = backup_figures(metrics)
    assert figures[("task_manager_backup_last_size_bytes", "daily")] == sum(f["bytes"] for f in daily["files"].values())
    weekly_bytes = sum(f["bytes"] for f in weekly["files"].values())
    assert figures[("task_manager_backup_last_size_bytes", "weekly")] == weekly_bytes
    assert before <= figures[("task_manager_backup_last_success_timestamp_seconds", "daily")] <= time.time()
    assert figures[("task_manager_backup_last_verified", "daily")] == 1
    assert figures[("task_manager_backup_last_run_failed", "daily")] == 0
    assert figures[("task_manager_backup_last_duration_seconds", "daily")] > 0

    # A failed daily run: the daily kind says so and keeps its last good set's time; weekly is untouched.
    host.write_config(encrypt=True)  # the key file is missing
    status, _, err = run(capsys, "create", "--kind", "daily")
    assert status == 1, err
    after = backup_figures(metrics)
    assert after[("task_manager_backup_last_run_failed", "daily")] == 1
    assert (after[("task_manager_backup_last_success_timestamp_seconds", "daily")]
            == figures[("task_manager_backup_last_success_timestamp_seconds", "daily")])
    assert after[("task_manager_backup_last_run_failed", "weekly")] == 0
    assert oct(metrics.stat().st_mode & 0o777) == "0o644"

    # The next good run clears it.
    host.write_config(encrypt=False)
    create(capsys, "--kind", "daily")
    assert backup_figures(metrics)[("task_manager_backup_last_run_failed", "daily")] == 0


def test_nothing_to_back_up_is_not_a_failed_run(host, capsys):
    metrics = host.root / "task_manager_backup.prom"
    host.write_config(metrics_file=str(metrics))
    host.database.parent.mkdir(parents=True, exist_ok=True)  # the instance folder, without a database yet
    status, _, err = run(capsys, "create", "--kind", "daily")
    assert status == 3, err
    assert not metrics.exists()


def test_a_host_that_does_not_hold_the_database_counts_no_run(host, capsys):
    metrics = host.root / "task_manager_backup.prom"
    host.write_config(metrics_file=str(metrics), database_on_this_host=False, database_engine="postgresql",
                      db_host="tm-db")
    status, _, err = run(capsys, "create", "--kind", "manual")
    assert status == 1 and "its backups are taken and restored there" in err
    assert not metrics.exists()


def test_figures_that_cannot_be_written_never_fail_a_backup(host, db, capsys):
    host.write_config(metrics_file=str(host.root / "task_manager_backup.prom"))
    (host.root / "task_manager_backup.json").write_text("{not json", encoding="utf-8")
    made = create(capsys, "--kind", "daily")
    assert made["kind"] == "daily"
    assert "metrics not written" in (host.log_dir / "backup.log").read_text(encoding="utf-8")


def test_links_planted_at_the_figures_names_are_replaced_never_followed(host, db, capsys):
    """Whoever may write the figures' directory plants links at every name the command writes
    there: the command's figures come out whole, and the links' target stays as it was."""
    metrics = host.root / "metrics" / "task_manager_backup.prom"
    metrics.parent.mkdir()
    host.write_config(metrics_file=str(metrics))
    target = host.root / "someone-elses"
    target.write_text("untouched\n", encoding="utf-8")
    for name in ("task_manager_backup.prom", "task_manager_backup.json", ".task_manager_backup.prom.tmp"):
        (metrics.parent / name).symlink_to(target)
    create(capsys, "--kind", "daily")
    assert target.read_text(encoding="utf-8") == "untouched\n"
    assert not metrics.is_symlink() and not metrics.with_suffix(".json").is_symlink()
    assert backup_figures(metrics)[("task_manager_backup_last_run_failed", "daily")] == 0
