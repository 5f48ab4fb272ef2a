"""The manual's log files and greps work, and nothing secret is written."""

import os
import re

from tests.conftest import PASSWORD


def read(tmp_path, name):
    return (tmp_path / "logs" / name).read_text(encoding="utf-8")


def test_failed_login_is_logged_with_username_and_client(tmp_path, client):
    client.post("/api/auth/login", json={"username": "mallory", "password": "guess-1234"})
    log = read(tmp_path, "task_manager.log")
    line = next(line for line in log.splitlines() if "認証失敗" in line)
    assert "username=mallory" in line
    assert "client=127.0.0.1" in line
    assert re.match(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", line)  # grep "YYYY-MM-DD" works


def test_client_errors_are_grep_able_in_task_manager_log(tmp_path, client):
    client.get("/api/tasks")  # 401
    log = read(tmp_path, "task_manager.log")
    assert re.search(r"401|403|422", log)
    assert "HTTP 401 GET /api/tasks" in log


def test_access_log_has_method_path_status_duration(tmp_path, api):
    api.get("/api/tasks?status=active")
    log = read(tmp_path, "access.log")
    assert re.search(r'127\.0\.0\.1 "GET /api/tasks\?status=active" 200 \d+\.\dms', log), log


def test_no_password_or_token_in_any_log(tmp_path, api):
    api.post("/api/auth/logout", json={"refresh_token": api.refresh})
    api.client.post("/api/auth/login", json={"username": "alice", "password": "wrong-password-123"})
    everything = "".join(read(tmp_path, f) for f in os.listdir(tmp_path / "logs"))
    for secret in (PASSWORD, "wrong-password-123", api.access, api.refresh, api.access.split(".")[2]):
        assert secret not in everything


def test_hostile_username_cannot_forge_log_lines(tmp_path, client):
    client.post("/api/auth/login", json={"username": "x\n2024-01-01 INFO forged", "password": "p"})
    log = read(tmp_path, "task_manager.log")
    assert not any(line.startswith("2024-01-01 INFO forged") for line in log.splitlines())
    assert "x\\x0a2024-01-01" in log


def test_errors_log_only_has_errors(tmp_path, client):
    client.get("/api/tasks")
    client.get("/health")
    assert read(tmp_path, "errors.log") == ""


def test_log_files_are_reopened_after_rotation(tmp_path, client):
    logs = tmp_path / "logs"
    client.get("/health")
    os.rename(logs / "access.log", logs / "access.log.1")  # what logrotate does before `create`
    client.get("/health")
    assert "/health" in (logs / "access.log").read_text()
    rotated = (logs / "access.log.1").read_text()
    assert rotated.count("/health") == 1
