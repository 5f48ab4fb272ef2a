"""task_manager_host.offsite (task-manager-offsite) against a real restic repository on
this machine (restic's local backend): sets made by the real backup command are copied,
caught up after an outage, kept by kind, checked, damaged and found out, fetched back and
restored by the backup command."""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import add_tasks, current_account, make_database, task_count
from task_manager_host import common, paths
from task_manager_host.backup import cli as backup_cli
from task_manager_host.backup import sets as backup_sets
from task_manager_host.offsite import cli, fetch, restic, sets, settings

pytestmark = pytest.mark.skipif(not os.access(paths.RESTIC, os.X_OK),
                                reason=f"{paths.RESTIC} is missing (apt install restic)")


class Host:
    """A host's layout under tmp_path, with the backup and offsite settings pointing at it."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch):
        self.root = root
        self.database = root / "instance" / "task_manager.db"
        self.backup_dir = root / "backups"
        self.repository = root / "repository"
        self.backup_dir.mkdir(mode=0o700)
        (root / "logs").mkdir()
        (root / "password").write_text("a repository password for the tests\n", encoding="utf-8")
        user, group = current_account()
        self.backup_config = {
            "database": str(self.database), "backup_dir": str(self.backup_dir), "log_dir": str(root / "logs"),
            "current_link": str(root / "current"), "user": user, "group": group, "service": "task-manager",
            "keep_min": 2, "retention_days": {"default": 30, "monthly": 365}, "config_paths": [],
            "encrypt": False, "encryption_key_file": str(root / "backup.key"),
        }
        self.state_dir = root / "offsite-state"
        self.state_dir.mkdir(mode=0o750)
        self.offsite_config = {"repository": str(self.repository), "password_file": str(root / "password"),
                               "host": "tm-app1", "check_read_data_subset": "100%",
                               "state_dir": str(self.state_dir), "offsite_user": user}
        self.write()
        monkeypatch.setenv("TASK_MANAGER_LAYOUT", str(root / "backup.json"))
        monkeypatch.setenv("TASK_MANAGER_BACKUP_CONFIG", str(root / "backup.json"))
        monkeypatch.setenv("TASK_MANAGER_OFFSITE_CONFIG", str(root / "offsite.json"))
        monkeypatch.setenv("HOME", str(root))
        monkeypatch.setattr(os, "setgroups", lambda groups: None)
        monkeypatch.setattr(os, "initgroups", lambda user, gid: None)
        monkeypatch.setattr(paths, "SYSTEMCTL", str(root / "no-systemctl"))

    def write(self, **offsite_changes) -> None:
        self.offsite_config.update(offsite_changes)
        (self.root / "backup.json").write_text(json.dumps(self.backup_config), encoding="utf-8")
        (self.root / "offsite.json").write_text(json.dumps(self.offsite_config), encoding="utf-8")


@pytest.fixture
def host(tmp_path, monkeypatch):
    return Host(tmp_path, monkeypatch)


def run(capsys, *argv: str) -> tuple[int, object, str]:
    try:
        status = cli.main(list(argv))
    except SystemExit as exc:  # argparse
        status = exc.code
    out, err = capsys.readouterr()
    return status, (json.loads(out) if out.strip() else None), err


def take(capsys, *argv: str) -> dict:
    assert backup_cli.main(["create", *argv]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def empty_repository(tmp_path_factory):
    """One repository made by init, copied for each test: restic's key derivation makes
    every command cost a moment, init included."""
    root = tmp_path_factory.mktemp("offsite")
    with pytest.MonkeyPatch.context() as patch:
        made = Host(root, patch)
        status = cli.main(["init"])
    assert status == 0
    return made.repository


@pytest.fixture
def repo(host, empty_repository, capsys):
    make_database(host.database)
    shutil.copytree(empty_repository, host.repository)
    return host


def test_init_creates_the_repository_once(host, capsys):
    status, answer, err = run(capsys, "init")
    assert (status, answer["changed"]) == (0, True), err
    assert (host.repository / "config").is_file()
    status, answer, _ = run(capsys, "init")
    assert (status, answer["changed"]) == (0, False)


def test_copy_sends_each_verified_set_once_and_tags_it(repo, capsys):
    daily = take(capsys, "--kind", "daily")
    status, answer, err = run(capsys, "copy")
    assert status == 0, err
    assert [c["stamp"] for c in answer["copied"]] == [daily["stamp"]] and answer["changed"]
    status, answer, _ = run(capsys, "copy")
    assert (status, answer["changed"], answer["copied"]) == (0, False, [])
    _, snaps, _ = run(capsys, "list")
    assert [(s["kind"], s["stamp"]) for s in snaps] == [("daily", daily["stamp"])]
    state = json.loads((repo.state_dir / "state.json").read_text(encoding="utf-8"))
    assert state["copy"]["ok"] and state["copy_ok_at"] == state["copy"]["at"]


def offsite_figures(path: Path) -> dict:
    """The file as Prometheus reads it: (name, what) -> value; a malformed line raises."""
    return {(s.name, s.labels["what"]): s.value
            for family in text_string_to_metric_families(path.read_text(encoding="utf-8")) for s in family.samples}


def test_an_unreachable_repository_fails_the_copy_and_the_next_one_catches_up(repo, capsys):
    metrics = repo.root / "task_manager_offsite.prom"
    repo.write(offsite_metrics_file=str(metrics))
    first = take(capsys, "--kind", "daily")
    status, first_copy, _ = run(capsys, "copy")
    assert status == 0
    figures = offsite_figures(metrics)
    assert figures[("task_manager_offsite_last_run_failed", "copy")] == 0
    assert figures[("task_manager_offsite_last_added_bytes", "copy")] == first_copy["copied"][0]["bytes_added"] > 0
    moved = repo.root / "repository-away"
    repo.repository.rename(moved)
    add_tasks(repo.database, 2)
    second = take(capsys, "--kind", "daily")
    files_before = sorted(p.name for p in repo.backup_dir.rglob("*") if p.is_file())
    status, _, err = run(capsys, "copy")
    assert status == 1 and f"restic snapshots failed (exit 1) on {repo.repository}" in err
    state = json.loads((repo.state_dir / "state.json").read_text(encoding="utf-8"))
    assert state["copy"]["ok"] is False and "restic snapshots failed" in state["copy"]["error"]
    assert state["copy_ok_at"] == first_copy["at"]  # when it last worked, for check.yml's age
    failed = offsite_figures(metrics)
    assert failed[("task_manager_offsite_last_run_failed", "copy")] == 1
    assert (failed[("task_manager_offsite_last_success_timestamp_seconds", "copy")]
            == figures[("task_manager_offsite_last_success_timestamp_seconds", "copy")])
    # The local sets are untouched, and status says the repository cannot be reached.
    assert sorted(p.name for p in repo.backup_dir.rglob("*") if p.is_file()) == files_before
    status, answer, _ = run(capsys, "status")
    assert status == 0 and answer["reachable"] is False and answer["copy"]["ok"] is False
    moved.rename(repo.repository)
    status, answer, err = run(capsys, "copy")
    assert status == 0, err
    assert [c["stamp"] for c in answer["copied"]] == [second["stamp"]]
    assert first["stamp"] != second["stamp"]
    assert offsite_figures(metrics)[("task_manager_offsite_last_run_failed", "copy")] == 0


def test_the_set_of_an_empty_database_is_not_copied(repo, capsys):
    conn = sqlite3.connect(repo.database)
    conn.executescript("DELETE FROM tasks; DELETE FROM users;")
    conn.commit()
    conn.close()
    take(capsys, "--kind", "pre-update")  # what a rebuilt host's first deploy takes
    status, answer, err = run(capsys, "copy")
    assert (status, answer["copied"], answer["changed"]) == (0, [], False), err
    status, answer, _ = run(capsys, "status")
    assert answer["local_sets"] == 0


def test_a_damaged_local_set_is_not_copied_and_the_copy_says_so(repo, capsys):
    good = take(capsys, "--kind", "daily")
    bad = take(capsys, "--kind", "manual")
    copy = Path(bad["dir"]) / f"task_manager_{bad['stamp']}.db"
    copy.write_bytes(copy.read_bytes()[:-10])
    status, _, err = run(capsys, "copy")
    assert status == 1 and f"set {bad['stamp']} not copied" in err
    _, snaps, _ = run(capsys, "list")
    assert [s["stamp"] for s in snaps] == [good["stamp"]]


def test_forget_keeps_each_kind_for_its_retention_and_the_newest_few(repo, capsys):
    stamps = []
    for _ in range(4):
        stamps.append(take(capsys, "--kind", "manual")["stamp"])
        assert run(capsys, "copy")[0] == 0
    status, answer, _ = run(capsys, "forget")
    assert (status, answer["changed"]) == (0, False)  # all within 30 days
    repo.backup_config["retention_days"] = {"default": 0, "monthly": 365}
    repo.write()
    status, answer, err = run(capsys, "forget")
    assert status == 0, err
    assert answer["changed"] and len(answer["removed"]) == 2
    _, snaps, _ = run(capsys, "list")
    assert [s["stamp"] for s in snaps] == stamps[-2:]  # keep_min: the newest two


def test_check_passes_then_finds_a_damaged_pack_and_says_so(repo, capsys):
    take(capsys, "--kind", "daily")
    assert run(capsys, "copy")[0] == 0
    status, first_check, err = run(capsys, "check")
    assert status == 0, err
    assert first_check["ok"] and first_check["read_data_subset"] == "100%"
    pack = max((p for p in (repo.repository / "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    pack.chmod(0o600)
    # Bytes overwritten in the middle, the length kept: a short read would only make
    # restic retry the backend for a while before it reports the same failure.
    data = bytearray(pack.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)
    pack.write_bytes(bytes(data))
    local_before = sorted(p for p in repo.backup_dir.rglob("*") if p.is_file())
    status, _, err = run(capsys, "check")
    assert status == 1 and "restic check failed" in err
    state = json.loads((repo.state_dir / "state.json").read_text(encoding="utf-8"))
    assert state["check"]["ok"] is False and state["check_ok_at"] == first_check["at"]
    assert sorted(p for p in repo.backup_dir.rglob("*") if p.is_file()) == local_before


def test_a_new_host_fetches_the_newest_set_and_the_backup_command_restores_it(repo, capsys):
    add_tasks(repo.database, 3)
    older = take(capsys, "--kind", "daily")
    add_tasks(repo.database, 1)
    newest = take(capsys, "--kind", "manual")
    assert run(capsys, "copy")[0] == 0
    # The host is lost: its database and every local set. A bare one takes its name.
    shutil.rmtree(repo.backup_dir)
    repo.backup_dir.mkdir(mode=0o700)
    repo.database.unlink()
    status, _, err = run(capsys, "fetch", "nothing-like-this")
    assert status == 3 and "no snapshot of this host matches" in err
    status, answer, err = run(capsys, "fetch", "latest")
    assert status == 0, err
    assert (answer["stamp"], answer["kind"], answer["tasks"], answer["changed"]) == (newest["stamp"], "manual", 9, True)
    status, again, _ = run(capsys, "fetch", "latest")
    assert (status, again["changed"]) == (0, False)
    status, by_kind, _ = run(capsys, "fetch", "latest", "--kind", "daily")
    assert (status, by_kind["stamp"]) == (0, older["stamp"])
    assert backup_cli.main(["restore", newest["stamp"]]) == 0
    assert json.loads(capsys.readouterr().out)["tasks"] == 9 == task_count(repo.database)
    assert not list(repo.backup_dir.glob(".offsite-fetch-*"))


def test_a_restore_drill_verifies_the_newest_copy_apart_from_the_live_sets(repo, capsys):
    add_tasks(repo.database, 2)
    newest = take(capsys, "--kind", "daily")
    assert run(capsys, "copy")[0] == 0
    add_tasks(repo.database, 1)  # written after the copy: the live database moves on
    live_sets = sorted(p for p in repo.backup_dir.rglob("*") if p.is_file())
    status, fetched, err = run(capsys, "fetch", "latest", "--drill")
    assert status == 0, err
    assert (fetched["stamp"], fetched["changed"]) == (newest["stamp"], True)
    assert fetched["manifest"].startswith(str(repo.backup_dir / "drill" / "daily"))
    assert [m["stamp"] for m in backup_sets.manifests(repo.backup_config)] == [newest["stamp"]]  # not listed twice
    assert backup_cli.main(["verify", "latest", "--drill"]) == 0
    verified = json.loads(capsys.readouterr().out)
    assert (verified["drill"], verified["stamp"], verified["tasks"]) == (True, newest["stamp"], newest["tasks"])
    assert not (repo.backup_dir / "drill").exists()
    assert sorted(p for p in repo.backup_dir.rglob("*") if p.is_file()) == live_sets
    assert task_count(repo.database) == newest["tasks"] + 1
    # Nothing fetched, nothing to drill on: said, exit status 3.
    assert backup_cli.main(["verify", "latest", "--drill"]) == 3
    assert "holds no set" in capsys.readouterr().err
    assert run(capsys, "list", "--drill")[0] == 2


def test_status_reports_the_newest_snapshot_and_its_age(repo, capsys):
    status, answer, _ = run(capsys, "status")
    assert status == 0 and answer["reachable"] and answer["newest"] is None and answer["local_sets"] == 0
    daily = take(capsys, "--kind", "daily")
    status, answer, _ = run(capsys, "status")
    assert (answer["waiting"], 0 <= answer["oldest_waiting_hours"] < 1) == (1, True)
    run(capsys, "copy")
    status, answer, _ = run(capsys, "status")
    assert (answer["waiting"], answer["oldest_waiting_hours"]) == (0, None)
    assert answer["newest"]["stamp"] == daily["stamp"] and 0 <= answer["newest"]["age_hours"] < 1
    assert answer["copy"]["ok"] and answer["snapshots"] == 1 and answer["local_sets"] == 1


def test_a_missing_password_file_or_restic_is_named(repo, capsys, monkeypatch):
    repo.write(password_file=str(repo.root / "not-there"))
    status, _, err = run(capsys, "list")
    assert status == 1 and f"password file {repo.root / 'not-there'} is missing" in err
    monkeypatch.setattr(paths, "RESTIC", str(repo.root / "no-restic"))
    status, _, err = run(capsys, "list")
    assert status == 1 and f"{repo.root / 'no-restic'} is missing" in err
    assert run(capsys, "fetch")[0] == 2


def test_the_backup_host_keeps_the_retention_with_a_key_of_its_own(repo, capsys, monkeypatch):
    """add-key gives the backup host's keeper a key (its password on stdin, once); the
    keeper forgets by each kind's retention on the repository's directory, and does
    nothing a source does."""
    daily = take(capsys, "--kind", "daily")
    assert run(capsys, "copy")[0] == 0
    keeper_password = "the backup host's own password"
    monkeypatch.setattr("sys.stdin", io.StringIO(keeper_password + "\n"))
    status, added, err = run(capsys, "add-key")
    assert (status, added) == (0, {"changed": True}), err
    monkeypatch.setattr("sys.stdin", io.StringIO(keeper_password + "\n"))
    assert run(capsys, "add-key")[1] == {"changed": False}
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    status, _, err = run(capsys, "add-key")
    assert status == 1 and "16 characters or more" in err
    (repo.root / "keeper-password").write_text(keeper_password + "\n", encoding="utf-8")
    keeper = {"keeper": True, "repository": str(repo.repository), "password_file": str(repo.root / "keeper-password"),
              "host": "tm-app1", "run_as_user": current_account()[0], "keep_min": 1,
              "retention_days": {"default": 30, "hourly": 0}}
    (repo.root / "keeper.json").write_text(json.dumps(keeper), encoding="utf-8")
    monkeypatch.setenv("TASK_MANAGER_OFFSITE_CONFIG", str(repo.root / "keeper.json"))
    status, _, err = run(capsys, "copy")
    assert status == 1 and "copy is not for the backup host" in err
    status, listed, err = run(capsys, "list")
    assert status == 0 and [s["stamp"] for s in listed] == [daily["stamp"]], err
    assert run(capsys, "forget")[1] == {"changed": False, "removed": [], "future": []}


def test_the_backup_account_shares_its_older_sets_with_the_offsite_account_without_following_links(repo, capsys):
    """Sets made before the off-host account existed (0600, the backup account's group) get
    the backup directory's group and 0640; the safety sets and a planted link do not."""
    daily = take(capsys, "--kind", "daily")
    nogroup = 65534
    os.chown(repo.backup_dir, -1, nogroup)
    outside = repo.root / "not-a-set"
    outside.write_text("someone else's\n", encoding="utf-8")
    outside.chmod(0o600)
    (repo.backup_dir / "daily" / "planted").symlink_to(outside)
    (repo.backup_dir / "safety").mkdir(mode=0o700)
    (repo.backup_dir / "safety" / "kept.db").write_bytes(b"x")
    status, shared, err = run(capsys, "share")
    assert status == 0 and shared["changed"], err
    for path in [repo.backup_dir / "daily", *(repo.backup_dir / "daily").glob(f"*{daily['stamp']}*")]:
        info = path.stat()
        assert (info.st_gid, oct(info.st_mode & 0o7777)) == (nogroup, "0o2750" if path.is_dir() else "0o640"), path
    assert (outside.stat().st_gid, oct(outside.stat().st_mode & 0o777)) == (0, "0o600")
    assert (repo.backup_dir / "safety").stat().st_gid != nogroup
    assert run(capsys, "share")[1] == {"changed": False, "shared": 0, "paths": []}
    # The backup command's own files (a lock, a scratch file) are no set: left as they are,
    # so that a deploy after a backup changes nothing.
    for hidden in (repo.backup_dir / ".lock", repo.backup_dir / "daily" / ".scratch"):
        hidden.write_text("", encoding="utf-8")
        hidden.chmod(0o600)
    assert run(capsys, "share")[1] == {"changed": False, "shared": 0, "paths": []}


@pytest.mark.skipif(not Path("/usr/bin/rclone").exists(), reason="/usr/bin/rclone is missing (apt install rclone)")
def test_copies_go_through_rclone_serving_the_repository_append_only(repo, capsys):
    """What the backup host's forced command runs, started here instead of over SSH: the
    sets go in and come back, and a snapshot cannot be removed through it."""
    served = repo.root / "served"
    shutil.copytree(repo.repository, served)
    program = repo.root / "serve"
    serve = f"/usr/bin/rclone serve restic --stdio --append-only --config /dev/null {served}"
    program.write_text(f"#!/bin/sh\nexec {serve}\n", encoding="utf-8")
    program.chmod(0o755)
    repo.write(repository="rclone:repo", rclone_program=str(program))
    daily = take(capsys, "--kind", "daily")
    status, copied, err = run(capsys, "copy")
    assert status == 0 and [c["stamp"] for c in copied["copied"]] == [daily["stamp"]], err
    assert len(list((served / "snapshots").iterdir())) == 1
    shutil.rmtree(repo.backup_dir / "daily")
    status, fetched, err = run(capsys, "fetch", "latest")
    assert status == 0 and fetched["stamp"] == daily["stamp"] and Path(fetched["manifest"]).is_file(), err


def test_sets_are_readable_by_the_backup_directorys_group_only_where_deploy_shared_it(repo, capsys):
    first = take(capsys, "--kind", "daily")
    assert {oct(p.stat().st_mode & 0o7777) for p in (repo.backup_dir / "daily").iterdir()} == {"0o600"}
    assert oct((repo.backup_dir / "daily").stat().st_mode & 0o7777) == "0o700"
    repo.backup_dir.chmod(0o2750)  # what deploy.yml sets where copies leave the host
    second = take(capsys, "--kind", "daily")
    modes = {p.name: oct(p.stat().st_mode & 0o7777) for p in (repo.backup_dir / "daily").iterdir()}
    assert {m for n, m in modes.items() if second["stamp"] in n} == {"0o640"}
    assert {m for n, m in modes.items() if first["stamp"] in n} == {"0o600"}  # share's work, not the command's
    assert oct((repo.backup_dir / "daily").stat().st_mode & 0o7777) == "0o2750"


def test_a_snapshot_dated_in_the_future_neither_pushes_the_real_ones_out_nor_is_fetched_as_the_latest(repo, capsys):
    """Whoever holds a source can add snapshots dated years ahead: restic's --keep-within
    would then forget every real one. Retention counts by this host's clock instead, and
    fetch latest never picks such a snapshot."""
    stamps = []
    for _ in range(3):
        stamps.append(take(capsys, "--kind", "manual")["stamp"])
        assert run(capsys, "copy")[0] == 0
    forged = repo.root / "forged"
    forged.mkdir()
    (forged / "backup_forged.json").write_text("{}", encoding="utf-8")
    config = settings.load_config()
    for _ in range(3):
        restic.restic(config, "backup", "--host", "tm-app1", "--tag", restic.TAG, "--tag", "kind:manual",
                      "--tag", "stamp:29990101-000000", "--time", "2999-01-01 00:00:00", str(forged))
    repo.backup_config["retention_days"] = {"default": 0}
    repo.backup_config["keep_min"] = 1
    repo.write()
    status, answer, err = run(capsys, "forget")
    assert status == 0, err
    assert len(answer["removed"]) == 2 and len(answer["future"]) == 3
    _, snaps, _ = run(capsys, "list")
    real = [s["stamp"] for s in snaps if not s["stamp"].startswith("2999")]
    assert real == stamps[-1:]  # the newest real one kept (keep_min), not pushed out by the forgeries
    shutil.rmtree(repo.backup_dir / "manual")
    status, fetched, err = run(capsys, "fetch", "latest")
    assert status == 0 and fetched["stamp"] == stamps[-1], err


def test_a_fetched_set_is_placed_only_as_plain_files_of_its_own_kind(repo):
    """What a snapshot holds was written by whoever held the source: a kind that climbs out
    of the backup directory, or a link in the spool, places nothing."""
    spool = repo.state_dir / "fetch"
    spool.mkdir()
    secret = repo.root / "secret.env"
    secret.write_text("KEY=value\n", encoding="utf-8")
    (spool / "data_1.db").symlink_to(secret)
    (spool / "backup_1.json").write_text("{}", encoding="utf-8")
    entry = {"kind": "daily", "files": {"data_1.db": {"sha256": common.sha256(secret)}},
             "manifest": str(spool / "backup_1.json"), "dir": str(spool)}
    config = settings.load_config()
    with pytest.raises(settings.OffsiteError, match="not a file the off-host account fetched"):
        fetch.place(config, {"entry": entry}, drill=False)
    assert list((repo.backup_dir / "daily").iterdir()) == []
    for kind in ("../instance", "safety", "drill"):
        with pytest.raises(settings.OffsiteError, match="nothing placed"):
            fetch.place(config, {"entry": {**entry, "kind": kind}}, drill=False)
    with pytest.raises(settings.OffsiteError, match="nothing placed"):
        fetch.place(config, {"entry": {**entry, "files": {"../../x": {}}}}, drill=False)
    assert not (repo.root / "instance" / "backup_1.json").exists()


def test_a_snapshot_holding_a_link_is_refused_before_any_mode_changes(repo, capsys):
    """Whoever writes snapshots (a source once compromised, the backup host's key) could
    restore a link to the off-host account's own password: the fetch refuses the snapshot
    and never changes a mode through it."""
    secret = repo.root / "password"
    secret.chmod(0o400)
    forged = repo.root / "forged"
    forged.mkdir()
    stamp = "20261201_000000_000000"
    (forged / f"backup_{stamp}.json").write_text(json.dumps({"kind": "daily", "stamp": stamp, "files": {
        f"task_manager_{stamp}.db": {"sha256": common.sha256(secret)}}}), encoding="utf-8")
    (forged / f"task_manager_{stamp}.db").symlink_to(secret)
    restic.restic(settings.load_config(), "backup", "--host", "tm-app1", "--tag", restic.TAG, "--tag", "kind:daily",
                  "--tag", f"stamp:{stamp}", str(forged))
    status, _, err = run(capsys, "fetch", stamp)
    assert status != 0 and "which is no plain file or folder" in err, err
    assert oct(secret.stat().st_mode & 0o777) == "0o400"
    assert list((repo.backup_dir).glob("daily/*")) == []


def test_a_set_whose_manifest_names_a_path_outside_its_folder_is_not_copied(repo, capsys):
    daily = take(capsys, "--kind", "daily")
    entry = {**daily, "dir": str(repo.backup_dir / "daily"), "files": {"../../password": {"sha256": "x"}}}
    with pytest.raises(settings.OffsiteError, match="does not match its manifest"):
        sets.set_paths(entry)
    link = repo.backup_dir / "daily" / "linked.db"
    link.symlink_to(repo.root / "password")
    entry["files"] = {"linked.db": {"sha256": common.sha256(repo.root / "password")}}
    with pytest.raises(settings.OffsiteError, match="does not match its manifest"):
        sets.set_paths(entry)
