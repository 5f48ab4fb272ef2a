"""The release's supply chain on the control node, without a host or Molecule.

app/requirements.txt pins every dependency with sha256 hashes, and a release whose
dependencies pip-audit knows a vulnerability in is refused before it is built, unless
the advisory is allowed by id; an audit that could not happen refuses it too. The
vulnerability database is the repository's test OSV database (one advisory, for every
flask before 99.0), served by scripts/osv-mirror.py on 127.0.0.1, so this runs offline.
  make test-release
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
AUDIT = ROOT / "roles" / "app_release" / "files" / "audit-release.py"
OSV_DB = ROOT / "molecule" / "operations" / "files" / "osv-db"
PIP_AUDIT = str(Path(sys.executable).parent / "pip-audit")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def serve_osv():
    """Start scripts/osv-mirror.py over a database; returns its query URL."""
    started = []

    def serve(database: Path) -> str:
        port = free_port()
        proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "osv-mirror.py"), str(database),
                                 "--port", str(port), "--seconds", "600"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        started.append(proc)
        for _ in range(100):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return f"http://127.0.0.1:{port}/v1/query"
            time.sleep(0.1)
        raise RuntimeError(f"osv-mirror did not listen: {proc.stderr.read() if proc.poll() is not None else ''}")

    yield serve
    for proc in started:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def osv_url(serve_osv) -> str:
    return serve_osv(OSV_DB)


@pytest.fixture(scope="module")
def release_repo(tmp_path_factory) -> Path:
    """A scratch repository whose one commit holds the working tree's app/requirements.txt."""
    repo = tmp_path_factory.mktemp("release-repo")
    (repo / "app").mkdir()
    shutil.copy(ROOT / "app" / "requirements.txt", repo / "app" / "requirements.txt")
    git = ["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "release"], check=True)
    subprocess.run([*git, "tag", "v9.9.9"], check=True)
    return repo


def audit(repo: Path, *args: str, pip_audit: str = PIP_AUDIT) -> tuple[int, dict]:
    proc = subprocess.run([sys.executable, str(AUDIT), str(repo), "HEAD", "--release", "v9.9.9",
                           "--pip-audit", pip_audit, "--timeout", "5", *args],
                          capture_output=True, text=True, check=False, timeout=300)
    return proc.returncode, json.loads(proc.stdout)


# ---------------------------------------------------------------------------- the hashes


def test_every_pin_has_hashes():
    text = (ROOT / "app" / "requirements.txt").read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", "\n".join(line for line in text.splitlines()
                                                      if not line.lstrip().startswith("#")).strip())
    assert len(entries) >= 15
    for entry in entries:
        assert re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[0-9][^ ]* \\$", entry.splitlines()[0]), entry
        assert re.findall(r"--hash=sha256:[0-9a-f]{64}", entry), f"no sha256 for {entry.splitlines()[0]}"
    assert "make lock" in text.split("\n\n")[0], "the header says how to regenerate the hashes"


def test_the_monthly_check_still_audits_the_hashed_file(osv_url):
    """roles/host_report/tasks/monthly.yml feeds a release's requirements.txt to pip-audit this way."""
    proc = subprocess.run([PIP_AUDIT, "--requirement", "/dev/stdin", "--no-deps", "--disable-pip", "--format", "json",
                           "--progress-spinner", "off", "--timeout", "5", "--vulnerability-service", "osv",
                           "--osv-url", osv_url],
                          input=(ROOT / "app" / "requirements.txt").read_text(), capture_output=True, text=True,
                          check=False, timeout=120)
    deps = json.loads(proc.stdout)["dependencies"]
    assert len(deps) >= 15
    assert not [d for d in deps if "skip_reason" in d]
    assert [d["name"] for d in deps if d["vulns"]] == ["flask"]


# ---------------------------------------------------------------------------- the build


BUILD = ROOT / "roles" / "app_release" / "files" / "build-release.sh"
TARGET = (f"{sys.version_info.major}.{sys.version_info.minor}", "x86_64")


@pytest.fixture(scope="module")
def source_repo(tmp_path_factory) -> Path:
    """A scratch repository holding the committed app and frontend, as a release is built from."""
    repo = tmp_path_factory.mktemp("source-repo")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD", "app", "frontend"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(repo)], input=archive, check=True)
    git = ["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "release"], check=True)
    return repo


def build(repo: Path, out: Path, release: str, **env: str) -> subprocess.CompletedProcess:
    revision = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    return subprocess.run([str(BUILD), str(repo), revision, release, release, str(out / revision), sys.executable,
                           *TARGET], capture_output=True, text=True, check=False, timeout=600,
                          env={**os.environ, **env})


def wheels_in(tarball: Path) -> list[str]:
    names = subprocess.run(["tar", "-tzf", str(tarball)], capture_output=True, text=True, check=True).stdout.split()
    return sorted(name for name in names if name.endswith(".whl"))


def test_a_release_with_the_same_pins_takes_the_wheelhouse_checked_for_the_last_one(source_repo, tmp_path):
    first = build(source_repo, tmp_path, "r1")
    assert first.returncode == 0, first.stderr[-3000:]
    kept = list((tmp_path / "wheelhouses").iterdir())
    assert len(kept) == 1 and not kept[0].name.startswith(".")
    # No index at all: only the kept wheelhouse can give the second build its dependencies.
    second = build(source_repo, tmp_path, "r2", PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_FIND_LINKS="")
    assert second.returncode == 0, second.stderr[-3000:]
    revision_dir = Path(first.stdout.strip()).parent
    assert wheels_in(revision_dir / "r1.tar.gz") == wheels_in(revision_dir / "r2.tar.gz")
    assert len(wheels_in(revision_dir / "r2.tar.gz")) > 10
    # Each release's sha256 beside it, checked as roles/app_release checks a cached one.
    recorded = (revision_dir / "r2.tar.gz.sha256").read_text().split()
    assert recorded == [hashlib.sha256((revision_dir / "r2.tar.gz").read_bytes()).hexdigest(), "r2.tar.gz"]
    check = ["sha256sum", "--check", "--strict", "r2.tar.gz.sha256"]
    assert subprocess.run(check, cwd=revision_dir, capture_output=True, check=False).returncode == 0
    with (revision_dir / "r2.tar.gz").open("ab") as tarball:
        tarball.write(b"\0")  # the cached file changed after it was built
    refused = subprocess.run(check, cwd=revision_dir, capture_output=True, text=True, check=False)
    assert refused.returncode == 1 and "FAILED" in refused.stdout


def test_pins_whose_hashes_match_no_file_are_refused_and_nothing_is_kept(source_repo, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(source_repo, repo)
    requirements = repo / "app" / "requirements.txt"
    text = requirements.read_text()
    start = text.index("\nblinker==")
    end = text.index("# via", start)
    requirements.write_text(text[:start] + re.sub(r"[0-9a-f]{64}", "1" * 64, text[start:end]) + text[end:])
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@example.invalid",
                    "commit", "-qam", "a wheel that is not the locked one"], check=True)
    run = build(repo, tmp_path / "out", "bad")
    assert run.returncode == 1
    assert "refused: the wheelhouse for Python" in run.stderr and "is not the file that was locked" in \
        re.sub(r"\s+", " ", run.stderr)
    assert list((tmp_path / "out" / "wheelhouses").iterdir()) == []  # no wheelhouse, whole or half
    assert not list((tmp_path / "out").glob("*/*.tar.gz"))


# ---------------------------------------------------------------------------- the audit


def test_a_known_vulnerability_refuses_the_release(release_repo, osv_url):
    rc, result = audit(release_repo, "--service", "osv", "--osv-url", osv_url)
    assert rc == 1
    assert result["verdict"] == "vulnerable"
    assert [(v["package"], v["id"]) for v in result["vulnerabilities"]] == [("flask", "PYSEC-TEST-0001")]
    assert "Release v9.9.9 is refused" in result["message"]
    assert "flask 3.1.3: PYSEC-TEST-0001 (fixed in 99.0)" in result["message"]
    assert '"app_release_audit_allow": ["PYSEC-TEST-0001"]' in result["message"]


def test_an_advisory_allowed_by_id_lets_it_through_and_says_so(release_repo, osv_url):
    rc, result = audit(release_repo, "--service", "osv", "--osv-url", osv_url,
                       "--allow", "pysec-test-0001", "--allow", "GHSA-0000-0000-0000")
    assert rc == 0
    assert result["verdict"] == "allowed"
    assert "ALLOWED by app_release_audit_allow: flask 3.1.3: PYSEC-TEST-0001" in result["summary"]
    assert result["unused_allow"] == ["GHSA-0000-0000-0000"]
    assert "remove from app_release_audit_allow" in result["summary"]


def test_another_advisory_still_refuses(release_repo, osv_url):
    rc, result = audit(release_repo, "--service", "osv", "--osv-url", osv_url, "--allow", "PYSEC-OTHER-1")
    assert rc == 1
    assert result["verdict"] == "vulnerable"


def test_no_known_vulnerability_passes(release_repo, serve_osv, tmp_path):
    rc, result = audit(release_repo, "--service", "osv", "--osv-url", serve_osv(tmp_path))
    assert rc == 0
    assert result["verdict"] == "clean"
    assert result["audited"] == result["packages"] >= 15


def test_an_unreachable_service_refuses_and_says_how_to_proceed(release_repo):
    rc, result = audit(release_repo, "--service", "osv", "--osv-url", f"http://127.0.0.1:{free_port()}/v1/query")
    assert rc == 1
    assert result["verdict"] == "not_audited"
    assert result["summary"].startswith("NOT AUDITED")
    assert "scripts/osv-mirror.py" in result["message"]
    assert "-e app_release_audit=false" in result["message"]


def test_packages_the_service_did_not_answer_for_are_not_clean(release_repo, tmp_path):
    """pip-audit says "No known vulnerabilities found" (rc 0) when PyPI cannot be reached: never clean."""
    fake = tmp_path / "pip-audit"
    answer = {"dependencies": [{"name": "flask", "skip_reason": "Dependency not found on PyPI"}]}
    fake.write_text(f"#!/bin/sh\necho '{json.dumps(answer)}'\necho 'No known vulnerabilities found' >&2\n")
    fake.chmod(0o755)
    rc, result = audit(release_repo, "--service", "pypi", pip_audit=str(fake))
    assert rc == 1
    assert result["verdict"] == "not_audited"
    assert "flask: Dependency not found on PyPI" in result["summary"]
    assert {p["package"] for p in result["not_audited"]} >= {"flask", "werkzeug"}


# ---------------------------------------------------------------------------- in the role


PLAYBOOK = """\
- name: Resolve, audit and (in --check) announce the build of a release, as deploy.yml's preflight does
  hosts: all
  gather_facts: true
  vars_files:
    - {contract}
  tasks:
    - name: Run the release's preflight
      ansible.builtin.include_role:
        name: app_release
        tasks_from: preflight
"""


def run_role(repo: Path, tmp_path: Path, extra: dict) -> subprocess.CompletedProcess:
    playbook = tmp_path / "release.yml"
    playbook.write_text(PLAYBOOK.format(contract=ROOT / "playbooks" / "group_vars" / "all" / "contract.yml"))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    vars_ = {"ansible_python_interpreter": sys.executable,
             "app_release_source_repo": str(repo), "app_release_version": "v9.9.9",
             "app_release_build_dir": str(tmp_path / "releases"),
             "task_manager_releases_dir": "/nonexistent/releases", **extra}
    return subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", "--check", str(playbook),
                           "-e", json.dumps(vars_)],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=300)


def test_the_role_refuses_the_release_before_building_it(release_repo, osv_url, tmp_path):
    run = run_role(release_repo, tmp_path, {"app_release_audit_service": "osv", "app_release_osv_url": osv_url})
    output = re.sub(r"\s+", " ", run.stdout + run.stderr)
    assert run.returncode != 0, output[-3000:]
    assert "Refuse a release with a known vulnerability" in output
    assert "Release v9.9.9 is refused" in output and "PYSEC-TEST-0001" in output, output[-3000:]
    assert "would build release" not in output
    assert not (tmp_path / "releases").exists()


def test_the_role_builds_an_allowed_release_and_says_what_it_allowed(release_repo, osv_url, tmp_path):
    run = run_role(release_repo, tmp_path, {"app_release_audit_service": "osv", "app_release_osv_url": osv_url,
                                            "app_release_audit_allow": ["PYSEC-TEST-0001"]})
    output = re.sub(r"\s+", " ", run.stdout + run.stderr)
    assert run.returncode == 0, output[-3000:]
    assert "ALLOWED by app_release_audit_allow: flask 3.1.3: PYSEC-TEST-0001" in output
    assert "would build release v9.9.9" in output


def test_the_role_says_not_audited_when_the_audit_is_off(release_repo, tmp_path):
    run = run_role(release_repo, tmp_path, {"app_release_audit": False,
                                            "app_release_osv_url": "http://127.0.0.1:9/v1/query"})
    output = re.sub(r"\s+", " ", run.stdout + run.stderr)
    assert run.returncode == 0, output[-3000:]
    assert "NOT AUDITED: the pinned dependencies of release v9.9.9 were not checked" in output
    assert "would build release v9.9.9" in output


def test_the_role_refuses_when_the_service_cannot_be_reached(release_repo, tmp_path):
    run = run_role(release_repo, tmp_path, {"app_release_audit_service": "osv",
                                            "app_release_osv_url": f"http://127.0.0.1:{free_port()}/v1/query"})
    output = re.sub(r"\s+", " ", run.stdout + run.stderr)
    assert run.returncode != 0, output[-3000:]
    assert "could not be audited" in output and "-e app_release_audit=false" in output
