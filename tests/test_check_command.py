"""task-manager-check (task_manager_host.check) in seconds: the log parsers on whole lines
(forged lines do not count), measuring (measure) apart from judging (judge), and the one
JSON document the check role reads, on temporary files with stand-ins for systemctl and
the two /health endpoints."""

from __future__ import annotations

import argparse
import collections
import http.server
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import HOST_LIB, current_account, install_command, make_database, write_backup_manifest
from task_manager_host import paths
from task_manager_host.check import cli, limits, logs, outputs, schedule
from task_manager_host.check import figures as app_host  # "figures" names the measured dicts here

# The keys the check role reads from the document, in the order they are printed.
REPORT_KEYS = [
    "checked_at", "kind", "since", "since_by", "units", "health", "requests", "request_ms_p95", "request_ms_p95_judged",
    "errors", "failed_logins",
    "database_mb", "memory_mb", "cpu_percent", "disk_percent", "disk_free_mb", "backup_disk_percent",
    "backup_disk_free_mb", "newest_backup_age_hours", "database_checked_on", "release", "version", "history",
    "limits", "breaches", "daily_report",
]

ACCESS = '2025-01-31 12:00:0{s},123 203.0.113.9 "{method} {path}" {status} {ms}ms 1234\n'
APP = "2025-01-31 12:00:0{s},123 {level} [4242] {logger}: {message}\n"


def access(path: str, ms: str = "3.1", s: int = 0, status: int = 200, method: str = "GET") -> str:
    return ACCESS.format(s=s, method=method, path=path, status=status, ms=ms)


def app(message: str, level: str = "WARNING", logger: str = "task_manager", s: int = 0) -> str:
    return APP.format(s=s, level=level, logger=logger, message=message)


# --- the parsers, on whole lines -----------------------------------------------------------


def test_request_durations_reads_whole_access_lines_only():
    lines = [
        access("/api/tasks", "3.1"),
        access("/api/tasks?page=2&q=a b", "12.5"),  # a query string may hold spaces
        access("/api/tasks/7", "40.0", status=404, method="DELETE"),
        access("/api/auth/login", "150.0", method="POST"),  # scrypt on purpose: left out
        access("/api/auth/register?x=1", "180.0", method="POST"),
        access("/api/auth/password", "170.0", method="PUT"),
        # Forged: the text of a line inside another line, or extra fields after it.
        access("/api/x", "1.0").rstrip("\n") + ' "GET /y" 200 99999.9ms 1\n',
        "garbage " + access("/api/tasks", "88888.8"),
        access("/api/tasks", "77777"),  # no decimal: not the app's format
        '2025-01-31 12:00:00,123 evil-host "GET /api/tasks" 200 66666.6ms 1\n',  # not an address
        "2025-01-31 12:00:00,123 - \"GET /health\" 200 0.4ms -\n",  # no client, no size: valid
    ]
    assert logs.request_durations(lines) == [3.1, 12.5, 40.0, 0.4]


def test_failed_logins_counts_only_the_apps_own_warning():
    lines = [
        app("認証失敗: username='alice' from 203.0.113.9"),
        app("認証失敗 (slowed down)"),
        app("認証失敗", level="INFO"),  # not the warning
        app("認証失敗", logger="task_manager.api"),  # another logger
        app("HTTP 401 POST /api/auth/login 認証失敗"),  # the word inside someone else's message
        app("HTTP 404 GET /api/認証失敗"),
        "認証失敗 " + app("x"),  # not at the start of a line
        "2025-01-31 12:00:00 WARNING [1] task_manager: 認証失敗\n",  # not the app's timestamp
    ]
    assert logs.failed_logins(lines) == 2


def test_error_lines_counts_error_and_critical_lines():
    lines = [app("boom", level="ERROR"), app("worse", level="CRITICAL"), app("fine", level="WARNING"),
             "Traceback (most recent call last):\n", "x ERROR y\n"]
    assert logs.error_lines(lines) == 2


def test_since_lines_reads_the_newest_rotated_file_and_skips_older_lines(tmp_path):
    log = tmp_path / "access.log"
    # logrotate's dateext names, with delaycompress: only the newest rotated file is still plain.
    (tmp_path / "access.log-20250128-1738022400").write_text(access("/older-file", s=9), encoding="utf-8")
    (tmp_path / "access.log-20250129-1738108800.gz").write_bytes(b"\x1f\x8b not read")
    (tmp_path / "access.log-20250130-1738195200").write_text(access("/a", s=2) + access("/b", s=3), encoding="utf-8")
    log.write_text(access("/c", s=4) + "a continuation line\n" + access("/d", s=5), encoding="utf-8")
    found = list(logs.since_lines(log, "2025-01-31 12:00:03"))
    assert [line.split('"')[1] for line in found] == ["GET /b", "GET /c", "GET /d"]
    assert list(logs.since_lines(tmp_path / "missing.log", logs.NEVER)) == []


# --- judging: a measurement and the limits in, the breaches out --------------------------


def report(**changes) -> dict:
    figures = {
        "units": {name: {"ActiveState": "active", "UnitFileState": "enabled", "NRestarts": "0"}
                  for name in ("task-manager.service", "task-manager.socket", "nginx.service", "cron.service")},
        "health": [{"url": "http://127.0.0.1:5000/health", "status": 200, "ok": True, "ms": 4.0},
                   {"url": "http://127.0.0.1:8080/health", "status": 200, "ok": True, "ms": 5.0}],
        "request_ms_p95": 20.0, "request_ms_p95_judged": True, "errors": 0, "failed_logins": 1, "database_mb": 1.5,
        "memory_mb": 80.0,
        "cpu_percent": 2.0, "disk_percent": 40.0, "backup_disk_percent": 30.0, "newest_backup_age_hours": 3.0,
    }
    figures.update(changes)
    return figures


LIMITS = {"response_ms": 200.0, "database_mb": 100.0, "memory_mb": 512.0, "cpu_percent": 50.0,
          "disk_percent": 80.0, "backup_age_hours": 26.0, "errors": 0, "failed_logins": None}


def test_judge_finds_nothing_in_a_healthy_report():
    assert limits.judge(report(), LIMITS) == []


def test_judge_names_every_breach():
    broken = report(
        units={"task-manager.service": {"ActiveState": "failed"}, "cron.service": {"ActiveState": "active"}},
        health=[{"url": "http://api/health", "status": 503, "ok": False, "ms": 3.0},
                {"url": "http://web/health", "status": 200, "ok": True, "ms": 250.0}],
        request_ms_p95=300.5, database_mb=120.25, memory_mb=600.0, cpu_percent=75.0, disk_percent=91.2,
        backup_disk_percent=85.0, errors=3, failed_logins=1000, newest_backup_age_hours=30.5,
    )
    assert limits.judge(broken, LIMITS) == [
        "task-manager.service is failed",
        "http://api/health answered 503",
        "http://web/health took 250.0 ms (limit 200)",
        "p95 request time since the last check 300.5 ms (limit 200)",
        "database is 120.25 MB (limit 100)",
        "service memory is 600.0 MB (limit 512)",
        "service CPU is 75.0 % (limit 50)",
        "disk is 91.2 % used (limit 80)",
        "backup disk is 85.0 % used (limit 80)",
        "3 errors in errors.log since the last check (limit 0)",
        "newest backup is 30.5 h old (limit 26)",
    ]  # failed_logins has no limit (None): 1000 of them break nothing


def test_judge_at_the_limit_is_kept_and_unmeasured_figures_break_nothing():
    at_limit = report(request_ms_p95=200.0, database_mb=100.0, errors=0, newest_backup_age_hours=26.0)
    assert limits.judge(at_limit, LIMITS) == []
    unmeasured = report(request_ms_p95=None, cpu_percent=None)
    assert limits.judge(unmeasured, {**LIMITS, "failed_logins": 0}) == [
        "1 failed logins since the last check (limit 0)"]


def test_a_p95_of_too_few_requests_is_reported_not_judged():
    """Two requests since the last check, one of them a worker's first: the slowest is no p95."""
    assert limits.judge(report(request_ms_p95=289.8, request_ms_p95_judged=False), LIMITS) == []
    assert limits.judge(report(request_ms_p95=289.8), LIMITS) == [
        "p95 request time since the last check 289.8 ms (limit 200)"]


def test_judge_without_any_backup():
    assert limits.judge(report(newest_backup_age_hours=None), LIMITS) == ["there is no backup"]


def test_judge_leaves_the_backups_to_the_db_host_that_keeps_them():
    elsewhere = report(newest_backup_age_hours=None, database_mb=None, backup_disk_percent=None,
                       database_checked_on="tm-db")
    assert limits.judge(elsewhere, LIMITS) == []


def test_p95():
    assert app_host.p95([]) is None
    assert app_host.p95([7.5]) == 7.5
    assert app_host.p95([float(i) for i in range(1, 101)]) == 96.0


# --- measuring ----------------------------------------------------------------------------


ANSWERS = {  # path: (status, body) of the stand-in /health server
    "/health": (200, {"status": "OK", "release": "20250101-abc", "version": "1.4.0"}),
    "/down": (503, {"status": "DEGRADED"}),
    "/list": (200, ["not", "an", "object"]),
    "/text": (200, "plain text"),
}


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        status, body = ANSWERS.get(self.path, (404, {"error": "not found"}))
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_health_asks_three_times_and_reads_the_answer(server):
    good = app_host.health(server + "/health")
    assert (good["status"], good["ok"], good["release"], good["version"]) == (200, True, "20250101-abc", "1.4.0")
    assert good["ms"] >= 0
    assert app_host.health(server + "/down")["status"] == 503
    assert app_host.health(server + "/down")["ok"] is False
    listed = app_host.health(server + "/list")
    assert (listed["status"], listed["ok"], listed["release"]) == (200, False, None)
    text = app_host.health(server + "/text")  # not JSON: no answer worth a status
    assert (text["status"], text["ok"]) == (None, False)
    closed = app_host.health("http://127.0.0.1:9/health")
    assert (closed["status"], closed["ok"]) == (None, False)


USAGE = collections.namedtuple("usage", "total used free")
SYSTEMCTL_SHOW = """#!/bin/sh
echo "$@" > "$(dirname "$0")/asked"
for unit in task-manager.service task-manager.socket nginx.service cron.service; do
  state=active; [ "$unit" = nginx.service ] && state=${NGINX_STATE:-active}
  echo "ActiveState=$state"; echo "SubState=running"; echo "UnitFileState=enabled"; echo "NRestarts=0"
  [ "$unit" = task-manager.service ] && echo "MainPID=${MAIN_PID:-0}" && echo "MemoryCurrent=${MEMORY:-[not set]}"
  echo
done
"""


def half_full(path):
    os.stat(path)  # a missing folder fails as it would
    return USAGE(1000 << 20, 500 << 20, 500 << 20)


DEFAULT_SCHEDULE = """#Ansible: task-manager daily backup
30 2 * * * root /usr/bin/systemctl start task-manager-backup@daily.service
#Ansible: task-manager weekly backup
0 3 * * 0 root /usr/bin/systemctl start task-manager-backup@weekly.service
#Ansible: task-manager monthly backup
0 4 1 * * root /usr/bin/systemctl start task-manager-backup@monthly.service
#Ansible: task-manager backup retention
15 5 * * * root /usr/local/sbin/task-manager-backup prune >/dev/null
"""


class Host:
    """The service's files under tmp_path and the settings, state and facts files naming them."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: str):
        self.root = tmp_path
        self.logs = tmp_path / "logs"
        self.backups = tmp_path / "backups"
        self.database = make_database(tmp_path / "instance" / "task_manager.db")
        self.state = tmp_path / "state" / "check-state.json"
        self.reports = tmp_path / "state" / "check-reports"
        self.logs.mkdir()
        self.backups.mkdir()
        user, group = current_account()
        self.config = {"database": str(self.database), "backup_dir": str(self.backups), "log_dir": str(self.logs),
                       "service": "task-manager", "user": user, "group": group}
        (tmp_path / "backup.json").write_text(json.dumps(self.config), encoding="utf-8")
        facts = {"current": "20250101-abc", "version": "1.4.0",
                 "history": [{"release": f"r{i}"} for i in range(7)]}
        (tmp_path / "facts.json").write_text(json.dumps(facts), encoding="utf-8")
        monkeypatch.setenv("TASK_MANAGER_LAYOUT", str(tmp_path / "backup.json"))
        monkeypatch.setenv("TASK_MANAGER_CHECK_STATE", str(self.state))
        monkeypatch.setenv("TASK_MANAGER_CHECK_REPORTS", str(self.reports))
        monkeypatch.setenv("TASK_MANAGER_CHECK_FACTS", str(tmp_path / "facts.json"))
        # The backup role's default schedule, as it writes it: daily, weekly, monthly.
        self.cron = tmp_path / "cron.d"
        self.cron.mkdir()
        self.schedule(DEFAULT_SCHEDULE)
        monkeypatch.setenv("TASK_MANAGER_CRON_DIR", str(self.cron))
        systemctl = tmp_path / "bin" / "systemctl"
        systemctl.parent.mkdir()
        systemctl.write_text(SYSTEMCTL_SHOW, encoding="utf-8")
        systemctl.chmod(0o755)
        monkeypatch.setattr(paths, "SYSTEMCTL", str(systemctl))
        # Disks half full, whatever this machine's are.
        monkeypatch.setattr(shutil, "disk_usage", half_full)
        self.urls = ["--api-url", server + "/health", "--web-url", server + "/health"]

    def schedule(self, lines: str) -> None:
        (self.cron / "task-manager-backup").write_text(lines, encoding="utf-8")

    def backup_set(self, kind: str, hours_old: float) -> None:
        write_backup_manifest(self.backups, kind, hours_old)


@pytest.fixture
def host(tmp_path, monkeypatch, server):
    return Host(tmp_path, monkeypatch, server)


def run(capsys, host: Host, *argv: str) -> tuple[int, dict | None, str]:
    status = cli.main([*host.urls, *argv])
    out, err = capsys.readouterr()
    return status, (json.loads(out) if out else None), err


def test_the_document_has_every_key_the_role_reads(host, capsys):
    lines = [access("/api/tasks", "10.0"), access("/api/tasks", "30.0"), access("/api/auth/login", "900.0")]
    (host.logs / "access.log").write_text("".join(lines), encoding="utf-8")
    (host.logs / "task_manager.log").write_text(app("認証失敗") + app("認証失敗", logger="x"), encoding="utf-8")
    (host.logs / "errors.log").write_text(app("boom", level="ERROR"), encoding="utf-8")
    host.backup_set("daily", 2)
    host.backup_set("safety", 0)  # a safety copy is not a backup
    status, doc, err = run(capsys, host, "--max-errors", "0", "--max-failed-logins", "5")
    assert status == 0, err
    assert list(doc) == REPORT_KEYS
    assert doc["kind"] == "app" and doc["database_checked_on"] is None
    assert doc["since"] is None  # the first check counts everything
    assert list(doc["units"]) == ["task-manager.service", "task-manager.socket", "nginx.service", "cron.service"]
    assert doc["units"]["task-manager.service"] == {
        "ActiveState": "active", "UnitFileState": "enabled", "NRestarts": "0"}
    assert [h["ok"] for h in doc["health"]] == [True, True]
    assert (doc["requests"], doc["errors"], doc["failed_logins"]) == (2, 1, 1)
    assert doc["request_ms_p95"] == app_host.p95([10.0, 30.0])
    assert doc["request_ms_p95_judged"] is False  # two requests: reported, not judged
    assert doc["database_mb"] > 0
    assert doc["cpu_percent"] is None  # no main PID
    assert 1.9 < doc["newest_backup_age_hours"] < 2.1
    assert (doc["release"], doc["version"]) == ("20250101-abc", "1.4.0")
    assert [h["release"] for h in doc["history"]] == ["r0", "r1", "r2", "r3", "r4"]
    assert doc["limits"] == {"response_ms": 200, "database_mb": 100, "memory_mb": 512, "cpu_percent": 50,
                             "disk_percent": 80, "backup_age_hours": 26, "errors": 0, "failed_logins": 5,
                             "failed_logins_5m": 20}
    assert doc["breaches"] == ["1 errors in errors.log since the last check (limit 0)"]
    assert doc["since_by"] is None and doc["daily_report"] is None  # no check before, no timer's report
    assert json.loads(host.state.read_text(encoding="utf-8")) == {"last_check": doc["checked_at"], "by": cli.BY_HAND}


def test_the_next_check_counts_from_the_previous_one(host, capsys):
    host.state.parent.mkdir()
    host.state.write_text(json.dumps({"last_check": "2025-01-31 12:00:03"}), encoding="utf-8")
    (host.logs / "access.log").write_text(access("/a", s=1) + access("/b", s=4), encoding="utf-8")
    status, doc, _ = run(capsys, host, "--no-record")
    assert status == 0
    assert (doc["since"], doc["requests"]) == ("2025-01-31 12:00:03", 1)
    assert doc["since_by"] is None  # a state file of the previous version says no more
    assert json.loads(host.state.read_text(encoding="utf-8")) == {"last_check": "2025-01-31 12:00:03"}
    assert "there is no backup" in doc["breaches"]


def test_the_daily_timers_report_is_kept_and_the_next_check_says_where_its_counts_start(host, capsys):
    """The timer's run (--keep-report) keeps its whole report; a check by hand later counts
    from the timer's run, says so, and carries what the timer found."""
    (host.logs / "errors.log").write_text(app("boom", level="ERROR", s=1), encoding="utf-8")
    host.backup_set("daily", 1)
    status, night, err = run(capsys, host, "--keep-report", "--max-errors", "0")
    assert status == 0, err
    kept = sorted(host.reports.iterdir())
    assert [path.name for path in kept] == [night["checked_at"].replace(" ", "T").replace(":", "") + ".json"]
    assert json.loads(kept[0].read_text(encoding="utf-8"))["breaches"] == night["breaches"] != []
    assert oct(kept[0].stat().st_mode & 0o777) == "0o644"
    assert json.loads(host.state.read_text(encoding="utf-8"))["by"] == cli.DAILY
    status, later, _ = run(capsys, host, "--max-errors", "0")
    assert status == 0
    assert (later["since"], later["since_by"]) == (night["checked_at"], cli.DAILY)
    assert later["errors"] == 0  # counted from the timer's run: the night's error is in its report
    assert later["daily_report"] == {
        "checked_at": night["checked_at"], "since": None, "requests": 0, "errors": 1, "failed_logins": 0,
        "breaches": night["breaches"], "file": str(kept[0])}


def test_the_oldest_daily_reports_go_beyond_the_kept_number(host, capsys, monkeypatch):
    host.reports.mkdir(parents=True)
    for day in range(1, 5):
        (host.reports / f"2025-01-0{day}T063000.json").write_text(json.dumps({"checked_at": f"d{day}"}))
    (host.reports / "notes.txt").write_text("a person's own file stays")
    monkeypatch.setattr(outputs, "KEPT_REPORTS", 3)
    assert run(capsys, host, "--keep-report")[0] == 0
    names = sorted(path.name for path in host.reports.iterdir())
    assert names[:2] == ["2025-01-03T063000.json", "2025-01-04T063000.json"] and names[-1] == "notes.txt"
    assert len(names) == 4


def test_an_app_host_of_a_postgresql_deployment_leaves_the_database_to_the_db_host(host, capsys):
    layout = {**host.config, "database_engine": "postgresql", "database_on_this_host": False, "db_host": "tm-db"}
    (host.root / "backup.json").write_text(json.dumps(layout), encoding="utf-8")
    host.backup_set("daily", 100)  # whatever lies here is not the deployment's backup
    status, doc, err = run(capsys, host)
    assert status == 0, err
    assert list(doc) == REPORT_KEYS
    assert doc["kind"] == "app"  # the API's own checks all run
    assert [h["ok"] for h in doc["health"]] == [True, True]
    assert (doc["database_mb"], doc["newest_backup_age_hours"], doc["database_checked_on"]) == (None, None, "tm-db")
    assert (doc["backup_disk_percent"], doc["backup_disk_free_mb"]) == (None, None)
    assert doc["disk_percent"] == 50.0
    assert doc["breaches"] == []


def test_measure_reads_systemd_and_the_process_tree(host, monkeypatch):
    monkeypatch.setenv("MAIN_PID", str(os.getpid()))
    monkeypatch.setenv("MEMORY", str(300 * 1048576))
    monkeypatch.setenv("NGINX_STATE", "inactive")
    sampled = []
    monkeypatch.setattr(app_host, "cpu_percent", lambda pids: sampled.append(pids) or 12.5)
    args = argparse.Namespace(api_url=host.urls[1], web_url=host.urls[3] + "-not-there")
    figures = app_host.measure(host.config, args)
    assert "limits" not in figures and "breaches" not in figures  # measuring judges nothing
    assert (host.root / "bin" / "asked").read_text().split() == [
        "show", "task-manager.service", "task-manager.socket", "nginx.service", "cron.service",
        "-p", "ActiveState,SubState,UnitFileState,NRestarts,MainPID,MemoryCurrent"]
    assert figures["units"]["nginx.service"]["ActiveState"] == "inactive"
    assert figures["memory_mb"] == 300.0 and figures["cpu_percent"] == 12.5
    assert sampled[0][0] == os.getpid()
    assert figures["health"][1]["ok"] is False
    breaches = limits.judge(figures, {**LIMITS, "errors": None})
    assert breaches == ["nginx.service is inactive", f"{host.urls[3]}-not-there answered 404",
                        "there is no backup"]


def test_memory_falls_back_to_the_process_tree_when_systemd_has_no_figure(host, monkeypatch):
    monkeypatch.setenv("MAIN_PID", str(os.getpid()))
    _, pids, memory = app_host.service_state(host.config)
    assert pids[0] == os.getpid()
    assert memory == app_host.memory_bytes(pids) > 0


def test_the_backup_disk_is_measured_where_the_backups_are(host, monkeypatch):
    disks = {str(host.database.parent): USAGE(1000 << 20, 500 << 20, 500 << 20),
             str(host.backups): USAGE(1000 << 20, 900 << 20, 100 << 20)}
    monkeypatch.setattr(shutil, "disk_usage", lambda path: disks[str(path)])
    args = argparse.Namespace(api_url=host.urls[1], web_url=host.urls[3])
    figures = app_host.measure(host.config, args)
    assert (figures["disk_percent"], figures["disk_free_mb"]) == (50.0, 500)
    assert (figures["backup_disk_percent"], figures["backup_disk_free_mb"]) == (90.0, 100)
    shutil.rmtree(host.backups)
    figures = app_host.measure(host.config, args)
    assert figures["backup_disk_percent"] == 50.0  # no backup folder: the instance's disk


def test_the_check_fails_when_it_cannot_run(host, capsys, monkeypatch):
    monkeypatch.setenv("TASK_MANAGER_LAYOUT", str(host.root / "missing.json"))
    status, doc, err = run(capsys, host)
    assert (status, doc) == (1, None) and "cannot read" in err
    monkeypatch.setenv("TASK_MANAGER_LAYOUT", str(host.root / "backup.json"))
    shutil.rmtree(host.database.parent)
    status, doc, err = run(capsys, host)
    assert (status, doc) == (1, None) and "task-manager-check:" in err
    assert not host.state.exists()  # a check that did not run is not recorded


def test_service_files_are_measured_as_the_service_user(host, monkeypatch):
    (host.logs / "task_manager.log").write_text(app("認証失敗"), encoding="utf-8")
    expected = app_host.service_files(host.config, logs.NEVER)
    assert expected["failed_logins"] == 1
    assert expected["db_bytes"] == host.database.stat().st_size
    # As root: in a forked child that has dropped to the configured account (here this one).
    if os.geteuid() == 0:
        assert app_host.as_service_user(host.config, app_host.service_files, host.config, logs.NEVER) == expected
        with pytest.raises(OSError, match="as no-such-user-here failed"):
            app_host.as_service_user({**host.config, "user": "no-such-user-here"}, app_host.service_files,
                                     host.config, logs.NEVER)
    # Not root: measured in place.
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert app_host.as_service_user(host.config, app_host.service_files, host.config, logs.NEVER) == expected


def test_process_tree_memory_and_cpu_of_a_real_process():
    child = subprocess.Popen(["sleep", "5"])
    try:
        pids = app_host.process_tree(os.getpid())
        assert pids[0] == os.getpid() and child.pid in pids
        assert app_host.memory_bytes([os.getpid(), 999_999_999]) > 0
        assert 0 <= app_host.cpu_percent([os.getpid()], seconds=0.05) <= 100
    finally:
        child.kill()
        child.wait()


RUN_WITH_STAND_IN = """
import sys
sys.path.insert(0, sys.argv[1])
from task_manager_host import paths
from task_manager_host.check import cli
paths.SYSTEMCTL = sys.argv[2]
sys.exit(cli.main(sys.argv[3:]))
"""


@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="no /usr/bin/python3")
def test_the_script_runs_on_the_system_python_alone(host):
    """As the role runs it: Debian's python3, no venv, isolated from site packages (only
    systemctl is a stand-in, set through task_manager_host.paths)."""
    env = {"PATH": "/usr/bin:/bin", **{k: v for k, v in os.environ.items() if k.startswith("TASK_MANAGER_")}}
    proc = subprocess.run(["/usr/bin/python3", "-I", "-c", RUN_WITH_STAND_IN, str(HOST_LIB),
                           str(host.root / "bin" / "systemctl"), *host.urls],
                          capture_output=True, text=True, env=env, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert list(doc) == REPORT_KEYS
    assert [h["ok"] for h in doc["health"]] == [True, True]
    assert json.loads(host.state.read_text(encoding="utf-8")) == {"last_check": doc["checked_at"], "by": cli.BY_HAND}
    # The command as the host_commands role installs it (#!/usr/bin/python3 -IB, the package's path).
    helped = subprocess.run([str(install_command("check", host.root)), "--help"],
                            capture_output=True, text=True, env=env, check=False, timeout=60)
    assert (helped.returncode, helped.stdout.split()[:2]) == (0, ["usage:", "task-manager-check"]), helped.stderr


# --- the figures for Prometheus (node_exporter's textfile collector) ----------------------


def read_textfile(path: Path) -> dict:
    """The file as Prometheus reads it: (name, figure label) -> value; a malformed line raises."""
    return {(s.name, s.labels.get("figure")): s.value
            for family in text_string_to_metric_families(path.read_text(encoding="utf-8")) for s in family.samples}


def test_the_textfile_holds_each_figure_beside_the_limit_it_is_held_to(host, capsys):
    host.backup_set("daily", 30)
    textfile = host.root / "metrics" / "task_manager_check.prom"
    textfile.parent.mkdir()
    status, doc, err = run(capsys, host, "--no-record", "--max-disk-percent", "40", "--textfile", str(textfile))
    assert status == 0, err
    figures = read_textfile(textfile)
    assert figures[("task_manager_check_figure", "disk_percent")] == doc["disk_percent"] == 50.0
    assert figures[("task_manager_check_limit", "disk_percent")] == 40.0
    assert figures[("task_manager_check_figure", "database_mb")] == doc["database_mb"]
    assert figures[("task_manager_check_limit", "database_mb")] == 100.0
    assert 29.9 < figures[("task_manager_check_figure", "newest_backup_age_hours")] < 30.1
    assert figures[("task_manager_check_limit", "newest_backup_age_hours")] == 26.0
    # The failed sign-in burst the alert fires on: a limit with no figure of the check's.
    assert figures[("task_manager_check_limit", "failed_logins_5m")] == 20.0
    assert ("task_manager_check_figure", "failed_logins_5m") not in figures
    # Not measured (no main PID): no figure, and no alert can compare it; its limit is kept.
    assert ("task_manager_check_figure", "cpu_percent") not in figures
    assert figures[("task_manager_check_limit", "cpu_percent")] == 50.0
    assert figures[("task_manager_check_breaches", None)] == len(doc["breaches"]) == 3  # both disks, the backup
    assert oct(textfile.stat().st_mode & 0o777) == "0o644"  # node_exporter's user reads it
    assert [p.name for p in textfile.parent.iterdir()] == ["task_manager_check.prom"]  # no scratch file left


def test_an_app_host_of_a_postgresql_deployment_publishes_no_backup_limit(host, capsys):
    layout = {**host.config, "database_engine": "postgresql", "database_on_this_host": False, "db_host": "tm-db"}
    (host.root / "backup.json").write_text(json.dumps(layout), encoding="utf-8")
    textfile = host.root / "task_manager_check.prom"
    status, _, err = run(capsys, host, "--textfile", str(textfile))
    assert status == 0, err
    figures = read_textfile(textfile)
    assert ("task_manager_check_limit", "newest_backup_age_hours") not in figures
    assert ("task_manager_check_figure", "database_mb") not in figures


def test_the_textfile_relays_the_offsite_figures_and_nothing_else_from_that_file(host, capsys):
    """The off-host account writes its figures in its own directory; the figures' unit
    relays its own metric family from there, not a line the account might add about others."""
    relay = host.root / "offsite" / "offsite.prom"
    relay.parent.mkdir()
    relay.write_text('# HELP task_manager_offsite_last_run_failed 1: the last copy or check failed\n'
                     '# TYPE task_manager_offsite_last_run_failed gauge\n'
                     'task_manager_offsite_last_run_failed{what="copy"} 1\n'
                     'task_manager_offsite_last_run_failed{what="copy"} not-a-number\n'
                     'task_manager_offsite_x{what="copy",host="tm-db"} 1\n'
                     'task_manager_check_breaches 0\n', encoding="utf-8")
    (host.root / "backup.json").write_text(json.dumps({**host.config, "offsite_metrics_file": str(relay)}),
                                           encoding="utf-8")
    textfile = host.root / "task_manager_check.prom"
    status, doc, err = run(capsys, host, "--no-record", "--textfile", str(textfile))
    assert status == 0, err
    samples = [(s.name, s.labels.get("what"), s.value) for family in
               text_string_to_metric_families(textfile.read_text(encoding="utf-8")) for s in family.samples]
    assert ("task_manager_offsite_last_run_failed", "copy", 1.0) in samples
    assert [v for name, _, v in samples if name == "task_manager_check_breaches"] == [len(doc["breaches"])]
    relay.unlink()  # no copy made yet: the check's own figures, nothing relayed
    assert run(capsys, host, "--no-record", "--textfile", str(textfile))[0] == 0
    assert "task_manager_offsite" not in textfile.read_text(encoding="utf-8")


def test_a_textfile_that_cannot_be_written_fails_the_check(host, capsys):
    status, _, err = run(capsys, host, "--textfile", str(host.root / "no-such-dir" / "x.prom"))
    assert status == 1
    assert "figures not written to" in err


def plant_link(at: Path) -> Path:
    """A root-only file, and a link to it planted where the command writes."""
    target = at.parent.parent / f"root-only-{at.name}"
    target.write_text("root's own\n", encoding="utf-8")
    target.chmod(0o600)
    at.parent.mkdir(exist_ok=True)
    at.symlink_to(target)
    return target


@pytest.mark.skipif(os.geteuid() != 0, reason="root's writes are what is checked")
def test_a_link_planted_where_root_writes_is_replaced_never_followed(host, capsys):
    textfile = host.root / "metrics" / "task_manager_check.prom"
    targets = [plant_link(textfile), plant_link(host.state)]
    status, _, err = run(capsys, host, "--textfile", str(textfile))
    assert status == 0, err
    for target in targets:
        assert (target.read_text(encoding="utf-8"), oct(target.stat().st_mode & 0o777)) == ("root's own\n", "0o600")
    assert not textfile.is_symlink() and read_textfile(textfile)
    assert not host.state.is_symlink() and "last_check" in json.loads(host.state.read_text(encoding="utf-8"))


@pytest.mark.skipif(os.geteuid() != 0, reason="root's writes are what is checked")
@pytest.mark.parametrize("mode", [0o775, 0o757])
def test_root_writes_nothing_into_a_directory_another_account_can_write(host, capsys, mode):
    textfile = host.root / "metrics" / "task_manager_check.prom"
    textfile.parent.mkdir()
    textfile.parent.chmod(mode)
    status, _, err = run(capsys, host, "--no-record", "--textfile", str(textfile))
    assert status == 1
    assert f"not writing {textfile} as root: another account can write {textfile.parent}" in err
    assert list(textfile.parent.iterdir()) == []
    host.state.parent.mkdir()
    host.state.parent.chmod(mode)
    status, _, err = run(capsys, host)
    assert status == 1 and "the time of this check not kept" in err
    assert not host.state.exists()


def test_fail_on_breach_exits_2_naming_the_limits_and_0_when_all_are_kept(host, capsys):
    host.backup_set("daily", 1)
    status, doc, err = run(capsys, host, "--no-record", "--fail-on-breach")
    assert (status, doc["breaches"]) == (0, []), err
    status, doc, err = run(capsys, host, "--no-record", "--fail-on-breach", "--max-disk-percent", "10")
    assert status == 2
    assert doc["breaches"] and "LIMITS BROKEN: disk is 50.0 % used (limit 10)" in err


@pytest.mark.parametrize(("field", "low", "high", "values"), [
    ("*", 0, 6, set(range(7))),
    ("5", 0, 59, {5}),
    ("1-3,10", 1, 31, {1, 2, 3, 10}),
    ("*/15", 0, 59, {0, 15, 30, 45}),
    ("8-18/5", 0, 23, {8, 13, 18}),
])
def test_cron_fields_read_as_cron_reads_them(field, low, high, values):
    assert schedule.cron_values(field, low, high) == values


@pytest.mark.parametrize(("specs", "gap"), [
    (["30 2 * * *", "0 3 * * 0", "0 4 1 * *"], 24.0),  # the default: daily decides
    (["0 3 * * 0", "0 4 1 * *"], 168.0),  # weekly and monthly: a week
    (["0 4 1 * *"], 744.0),  # monthly alone: the longest month
    (["45 * * * *", "30 2 * * *"], 1.0),  # hourly sets
    (["0 3 * * 7"], 168.0),  # 7 is Sunday too
    (["0 3 1,15 * 1"], 168.0),  # day and weekday both given: either one runs it
    (["0 2 * * 1-5"], 72.0),  # weekdays: Friday night to Monday night
    ([], None),
])
def test_the_longest_gap_between_two_backups_follows_the_schedule(specs, gap):
    assert schedule.longest_gap_hours(specs) == gap


def test_the_backup_age_limit_comes_from_the_schedule_on_the_host_unless_given(host, capsys):
    host.backup_set("weekly", 100)
    host.schedule("0 3 * * 0 root /usr/bin/systemctl start task-manager-backup@weekly.service\n")
    textfile = host.root / "figures.prom"
    status, doc, err = run(capsys, host, "--no-record", "--textfile", str(textfile))
    assert status == 0, err
    # A weekly schedule: a backup 100 h old is on time, and the alert's limit says so too.
    assert doc["limits"]["backup_age_hours"] == 170
    assert not [b for b in doc["breaches"] if "backup" in b]
    assert read_textfile(textfile)[("task_manager_check_limit", "newest_backup_age_hours")] == 170.0
    # Given in the inventory, the limit is that one.
    status, doc, _ = run(capsys, host, "--no-record", "--max-backup-age-hours", "48")
    assert doc["limits"]["backup_age_hours"] == 48
    assert "newest backup is 100.0 h old (limit 48)" in doc["breaches"]
    # Cron turned off (no schedule), or a line cron would refuse: the daily schedule's limit.
    for lines in ("", "61 3 * * 0 root /usr/bin/systemctl start task-manager-backup@weekly.service\n"):
        host.schedule(lines)
        assert schedule.backup_age_limit(None, host.cron) == schedule.UNSCHEDULED_BACKUP_AGE_HOURS == 26
