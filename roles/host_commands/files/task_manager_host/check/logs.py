"""The app's log lines as the check counts them: request times from access.log, errors
from errors.log, failed sign-ins from task_manager.log, each since the previous check.
Whole lines only, in the formats the app writes (app/task_manager/requestlog.py and
logging_setup.py), so text a client managed to get into a line never counts: the app
escapes line breaks, quotes and backslashes in every field it logs."""

from __future__ import annotations

import re
from pathlib import Path

NEVER = "0000-00-00 00:00:00"  # the "previous check" before the first one: every line counts
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")
#   access.log:        <asctime> <client> "<METHOD> <path>" <status> <ms>ms <size>
ACCESS_LINE = re.compile(
    r'(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (?P<client>[0-9A-Fa-f.:]+|-) '
    r'"(?P<method>[^"\s]+) (?P<path>[^"]*)" (?P<status>\d{3}) (?P<ms>\d+\.\d)ms (?P<size>\d+|-)'
)
#   task_manager.log:  <asctime> <LEVEL> [<pid>] <logger>: <message>
APP_LINE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) \[\d+\] (?P<logger>[\w.]+): "
# The warning auth.py writes for a wrong password (and for tries made while slowed down).
FAILED_LOGIN = re.compile(APP_LINE + r"認証失敗")
ERROR_LINE = re.compile(APP_LINE)
# Sign-in and registration hash passwords with scrypt on purpose (about 0.1-0.2 s):
# they are left out of the response-time figure, which is about the task API.
SLOW_BY_DESIGN = ("/api/auth/login", "/api/auth/register", "/api/auth/password")


def since_lines(path: Path, since: str):
    """Lines of a log (and its newest rotated file) stamped at or after `since`."""
    files = [*sorted(path.parent.glob(path.name + "-*"))[-1:], path]
    for file in files:
        if file.suffix == ".gz" or not file.exists():
            continue
        with file.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                match = STAMP.match(line)
                if match and match.group(1) >= since:
                    yield line


def request_durations(lines) -> list[float]:
    """Milliseconds of each request in access-log lines, sign-in and registration aside."""
    durations = []
    for line in lines:
        match = ACCESS_LINE.fullmatch(line.rstrip("\n"))
        if match and match["path"].split("?", 1)[0] not in SLOW_BY_DESIGN:
            durations.append(float(match["ms"]))
    return durations


def failed_logins(lines) -> int:
    """Failed sign-ins: only the app's own warning line, from its own logger."""
    return sum(
        1 for line in lines
        if (m := FAILED_LOGIN.match(line)) and m["level"] == "WARNING" and m["logger"] == "task_manager"
    )


def error_lines(lines) -> int:
    return sum(1 for line in lines if (m := ERROR_LINE.match(line)) and m["level"] in ("ERROR", "CRITICAL"))
