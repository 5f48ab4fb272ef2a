"""The manual's log files and greps work, and nothing secret is written."""

import os
import re
import time
from pathlib import Path

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


# Every character that ends a line somewhere (\n, \r, NEL U+0085, LS U+2028, PS U+2029,
# VT, FF, FS-RS), starts a terminal sequence (ESC, CSI U+009B), reorders text (U+202E),
# or ends a quoted field (") or fakes an escape (\\).
HOSTILE = ['\n', '\r', '\x85', '\u2028', '\u2029', '\x0b', '\x0c', '\x1c', '\x1e', '\x1b[31m', '\x9b', '\u202e',
           '"', '\\', '\x00', '\x7f', '\ufeff', '\U000e0001']
FORGED = '2024-01-01 00:00:00,000 WARNING [1] task_manager: 認証失敗: username=admin client=6.6.6.6'


def lines_of(tmp_path, name) -> list[str]:
    # str.splitlines() breaks at every character a log viewer might: the strictest reading.
    return read(tmp_path, name).splitlines()


def test_safe_escapes_everything_that_could_end_a_line_or_a_field():
    from task_manager.logging_setup import safe

    for char in HOSTILE:
        escaped = safe(f"a{char}b")
        assert len(escaped.splitlines()) == 1, repr(char)
        assert '"' not in escaped
        assert escaped.isprintable(), repr(escaped)
    assert safe('\u2028\x85\x9b"\\\n\u202e') == "\\u2028\\x85\\x9b\\x22\\x5c\\x0a\\u202e"
    assert safe("ユーザー　名 ok") == "ユーザー　名 ok"  # ordinary text, ideographic space included, is kept
    assert safe("x" * 500) == "x" * 200
    assert safe(None) == ""


def test_hostile_username_cannot_forge_log_lines(tmp_path, client):
    # Control characters never get as far as the log: such a name is refused outright.
    refused = client.post("/api/auth/login", json={"username": "x\u2028" + FORGED, "password": "p"})
    assert refused.status_code == 400
    assert refused.get_json()["field"] == "username"
    # What may reach it (quotes, backslashes) is escaped.
    client.post("/api/auth/login", json={"username": 'x" client=6.6.6.6 \\', "password": "p"})
    log = lines_of(tmp_path, "task_manager.log")
    assert not any("6.6.6.6" in line and "x\\x22 client=6.6.6.6 \\x5c" not in line for line in log)
    failed = [line for line in log if "認証失敗" in line]
    assert len(failed) == 1
    assert failed[0].endswith("client=127.0.0.1")


def test_hostile_path_cannot_add_a_line_or_a_status(tmp_path, client):
    from urllib.parse import quote

    for char in HOSTILE:
        fake = f'/x{char}" 200 0.1ms 5{char}{FORGED}'
        client.get(quote(fake, safe="/"), query_string={"q": f'{char}" 200 1.0ms 1'})
    access = lines_of(tmp_path, "access.log")
    assert len(access) == len(HOSTILE)
    pattern = re.compile(r'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} 127\.0\.0\.1 "GET [^"]*" 404 \d+\.\dms \d+')
    for line in access:
        assert pattern.fullmatch(line), line
    app_log = lines_of(tmp_path, "task_manager.log")
    assert len(app_log) == len(HOSTILE)  # one "HTTP 404" warning each, and nothing forged
    assert all(" WARNING " in line and "HTTP 404 GET" in line for line in app_log)


def _check_logs():
    """The check command's log parsers: task_manager_host.check.logs, from the host commands'
    package (roles/host_commands/files), appended to the path so it shadows nothing of the app's."""
    import importlib
    import sys

    host_lib = str(Path(__file__).resolve().parents[2] / "roles" / "host_commands" / "files")
    if host_lib not in sys.path:
        sys.path.append(host_lib)
    return importlib.import_module("task_manager_host.check.logs")


def test_the_host_check_counts_only_real_lines(tmp_path, client):
    """roles/host_report's task-manager-check reads these logs: hostile input cannot inflate it."""
    check = _check_logs()
    client.post("/api/auth/register", json={"username": "alice", "password": PASSWORD})
    client.post("/api/auth/login", json={"username": "alice", "password": "wrong-password"})  # one real failure
    # Text made to look like a failed login or a slow request, in a name and in paths.
    client.post("/api/auth/login", json={"username": "認証失敗", "password": "p"})  # a real failure too
    client.get("/api/" + '" 200 99999.9ms 1 認証失敗')
    client.get("/health", query_string={"x": '" 500 88888.8ms 1'})
    task_log = lines_of(tmp_path, "task_manager.log")
    assert check.failed_logins(line + "\n" for line in task_log) == 2
    assert sum("認証失敗" in line for line in task_log) > 2  # what the old substring count would have said
    durations = check.request_durations(line + "\n" for line in lines_of(tmp_path, "access.log"))
    assert len(durations) == 2  # the two GETs; register and login are left out as slow by design
    assert max(durations) < 10_000
    assert check.error_lines([FORGED.replace("WARNING", "ERROR") + "\n", "x ERROR y\n"]) == 1


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


def test_the_access_log_stamps_its_lines_as_logging_stamps_the_others(tmp_path, client):
    client.get("/api/tasks")  # a 401: its access line, then its warning in task_manager.log
    stamp = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")
    access = stamp.match(lines_of(tmp_path, "access.log")[0])
    logged = stamp.match(lines_of(tmp_path, "task_manager.log")[0])
    assert access and logged
    access_ms, logged_ms = (time.mktime(time.strptime(m[1], "%Y-%m-%d %H:%M:%S")) * 1000 + int(m[2])
                            for m in (access, logged))
    assert 0 <= logged_ms - access_ms < 1000


def test_an_access_log_that_cannot_be_written_never_fails_a_request_and_is_said_once(tmp_path, capfd):
    from task_manager.logging_setup import AccessLog

    # /dev/full: a real file that accepts the open and refuses every write (ENOSPC), as a full disk does.
    log = AccessLog(Path("/dev/full"))
    for _ in range(3):
        log.write('127.0.0.1 "GET /health" 200 0.1ms 15')
    said = capfd.readouterr().err.splitlines()
    assert len(said) == 1
    assert "cannot write /dev/full" in said[0]
    assert "No space left on device" in said[0]
    log.close()


def test_the_api_answers_while_its_access_log_cannot_be_written(tmp_path, client, capfd):
    log = tmp_path / "logs" / "access.log"
    client.get("/health")
    # The file moved away and, in its place, one that refuses every write: the writer follows
    # the move (as after logrotate) and meets a full disk.
    log.unlink()
    log.symlink_to("/dev/full")
    assert client.get("/health").status_code == 200
    assert client.get("/api/tasks").status_code == 401
    assert capfd.readouterr().err.count("cannot write") == 1
    log.unlink()  # space again: the next line lands in a new file
    assert client.get("/health").status_code == 200
    [line] = lines_of(tmp_path, "access.log")
    assert re.search(r' "GET /health" 200 \d+\.\dms \d+$', line), line


def _open_access_logs() -> list[str]:
    opened = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the listing's own descriptor, gone by now
        if target.endswith("access.log"):
            opened.append(target)
    return opened


def test_making_another_app_closes_the_access_log_of_the_one_before(tmp_path):
    from task_manager import create_app
    from tests.conftest import make_config

    before = set(_open_access_logs())
    apps = [create_app(make_config(tmp_path / str(n))) for n in range(3)]  # all three still referenced
    left_open = [path for path in _open_access_logs() if path not in before]
    assert left_open == [str(tmp_path / "2" / "logs" / "access.log")]
    with apps[0].test_client() as client:  # an older app still writes: its log opens again
        client.get("/health")
    assert "/health" in (tmp_path / "0" / "logs" / "access.log").read_text()
