"""The developer tools the scenarios and the bench share: the recap reader, the fixture
repository builder, the test-host definition's input checks (no podman needed), and the RPO the
off-host benchmark reads from a cron schedule."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from tests.conftest import ROOT, load_script

run_playbook = load_script("run_playbook", ROOT / "scripts" / "run-playbook.py")
fixture_repo = load_script("fixture_repo", ROOT / "scripts" / "fixture-repo.py")
test_host = load_script("test_host", ROOT / "scripts" / "test-host.py")

RECAP = """
TASK [health_gate : Wait for /health] ****
ok: [web-1]

PLAY RECAP *********************************************************************
web-1                      : ok=12   changed=3    unreachable=0    failed=0    skipped=4    rescued=0    ignored=0
db.example                 : ok=5    changed=0    unreachable=1    failed=1    skipped=0    rescued=1    ignored=2
"""


def test_recap_counts_every_host():
    hosts = run_playbook.read_recap(RECAP)
    assert hosts["web-1"] == {"ok": 12, "changed": 3, "unreachable": 0, "failed": 0, "skipped": 4,
                              "rescued": 0, "ignored": 0}
    assert hosts["db.example"]["unreachable"] == 1
    assert hosts["db.example"]["ignored"] == 2


def test_recap_reads_only_the_last_recap():
    earlier = RECAP.replace("changed=3", "changed=9")
    assert run_playbook.read_recap(earlier + RECAP)["web-1"]["changed"] == 3


def test_no_recap_means_no_host_ran():
    assert run_playbook.read_recap("ERROR! the playbook could not be found") == {}


def test_a_failing_playbook_is_answered_in_json(tmp_path):
    (tmp_path / "fails.yml").write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.fail: {msg: on purpose}\n")
    answer = run_playbook.run(["-i", "localhost,", "-c", "local", str(tmp_path / "fails.yml")])
    assert answer["rc"] == 2
    assert answer["hosts"]["localhost"]["failed"] == 1
    assert "on purpose" in answer["stdout"]


def test_fixture_releases_and_next(tmp_path):
    answer = fixture_repo.releases(tmp_path / "repo")
    tags = subprocess.run(["git", "-C", answer["repo"], "tag"], capture_output=True, text=True, check=True)
    assert tags.stdout.split() == ["v1.0.0", "v1.1.0", "v1.2.0"]
    # v1.2.0 carries both fixture migrations on top of the project's newest one.
    versions = subprocess.run(["git", "-C", answer["repo"], "show", "v1.2.0", "--stat", "--format="],
                              capture_output=True, text=True, check=True).stdout
    assert "9002_task_labels.py" in versions
    first = fixture_repo.next_release(tmp_path / "bench")
    second = fixture_repo.next_release(tmp_path / "bench", broken_health=True)
    third = fixture_repo.next_release(tmp_path / "bench")
    assert (first["tag"], second["tag"], third["tag"]) == ("bench-1", "bench-2", "bench-3")

    def health_of(tag):
        return subprocess.run(["git", "-C", first["repo"], "show", f"{tag}:app/task_manager/api/health.py"],
                              capture_output=True, text=True, check=True).stdout

    # only the release asked for is broken; the next one is the project's code again
    assert [("return jsonify(body), 503" in health_of(t)) for t in ("bench-1", "bench-2", "bench-3")] == [
        False, True, False]


def test_fixture_patch_fails_loudly(tmp_path):
    target = tmp_path / "models.py"
    target.write_text("nothing to patch\n")
    with pytest.raises(SystemExit, match="no longer has"):
        fixture_repo.patch(target, "completed_at", "x")


def test_a_new_test_host_replaces_the_keys_at_its_port_and_keeps_the_others():
    existing = ("[127.0.0.1]:18191 ssh-ed25519 OLD\n[127.0.0.1]:18193 ssh-ed25519 APP1\n"
                "[127.0.0.1]:18191,tm-db ssh-rsa OLDRSA\n")
    keys = ["ssh-ed25519 NEW root@tm-db", "ssh-rsa NEWRSA root@tm-db", ""]
    assert test_host.known_hosts_with(existing, {"[127.0.0.1]:18191"}, keys).splitlines() == [
        "[127.0.0.1]:18193 ssh-ed25519 APP1",
        "[127.0.0.1]:18191 ssh-ed25519 NEW",
        "[127.0.0.1]:18191 ssh-rsa NEWRSA",
    ]
    assert test_host.known_hosts_with("", set(), keys) == ""


@pytest.mark.parametrize("value", ["0.0.0.0:80:8080", "8080:8080", "127.0.0.1:x:8080", "192.168.1.2:1:2"])
def test_test_hosts_publish_on_loopback_only(value):
    with pytest.raises(argparse.ArgumentTypeError, match=r"127\.0\.0\.1"):
        test_host._publish(value)




# ---- bench/offsite_copy.py: the RPO a cron schedule gives ----

CRON = """\
#Ansible: task-manager daily backup
30 2 * * * root /usr/local/sbin/task-manager-backup create --kind daily >/dev/null
#Ansible: task-manager weekly backup
0 3 * * 0 root /usr/local/sbin/task-manager-backup create --kind weekly >/dev/null
#Ansible: task-manager monthly backup
0 4 1 * * root /usr/local/sbin/task-manager-backup create --kind monthly >/dev/null
#Ansible: task-manager backup retention
15 5 * * * root /usr/local/sbin/task-manager-backup prune >/dev/null
#Ansible: task-manager offsite copy
50 * * * * root /usr/local/sbin/task-manager-offsite copy >/dev/null
#Ansible: task-manager offsite hourly
45 * * * * root /usr/local/sbin/task-manager-backup create --kind hourly >/dev/null \
&& /usr/local/sbin/task-manager-offsite copy >/dev/null
"""


@pytest.fixture(scope="module")
def offsite_bench():
    # The bench's scripts import benchlib by name, as they do when run from bench/.
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        yield load_script("offsite_copy", ROOT / "bench" / "offsite_copy.py")
    finally:
        sys.path.remove(str(ROOT / "bench"))


def test_the_rpo_of_a_daily_set_copied_hourly_is_a_day_and_the_wait_for_the_copy(offsite_bench):
    lines = [x for x in offsite_bench.cron_lines(CRON) if not x["hourly"]]
    assert len(lines) == 4  # three that make sets, one that copies; prune makes and copies nothing
    assert offsite_bench.worst_rpo_minutes(lines) == 24 * 60 + 20


def test_an_hourly_set_and_its_copy_bring_the_rpo_to_an_hour(offsite_bench):
    assert offsite_bench.worst_rpo_minutes(offsite_bench.cron_lines(CRON)) == 60


def test_a_copy_started_with_a_set_leaves_it_to_the_next_copy(offsite_bench):
    cron = ("30 2 * * * root /usr/local/sbin/task-manager-backup create --kind daily\n"
            "30 2,14 * * * root /usr/local/sbin/task-manager-offsite copy\n")
    # The 02:30 copy cannot hold the set cron starts beside it: the 14:30 one does.
    assert offsite_bench.worst_rpo_minutes(offsite_bench.cron_lines(cron)) == 36 * 60
