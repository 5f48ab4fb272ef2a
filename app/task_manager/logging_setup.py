"""The manual's log files: logs/task_manager.log (INFO+), logs/errors.log (ERROR+),
logs/access.log (one line per request).

Each file is reopened when logrotate has moved it away (WatchedFileHandler, and the
access log's own writer does the same), so rotation needs no signal and no
copytruncate, and each gunicorn worker appends on its own (O_APPEND writes of one
line do not interleave).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import unicodedata
from logging.handlers import WatchedFileHandler
from pathlib import Path

from flask import Flask

FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
APP_LOGGER = "task_manager"
ACCESS_LOG = "task_manager.access_log"
_OWNED = "_task_manager_handler"
SAFE_MAX = 200
# Control (C0, DEL, C1 such as U+0085 NEL and U+009B CSI), format (bidi overrides such as
# U+202E), line and paragraph separators (U+2028, U+2029), and surrogates, which UTF-8
# cannot write. Viewers and splitlines() end a line at several of these, terminals act on
# others, and bidi controls reorder what a person reads.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
# The escape character itself, and the quote that delimits fields of the access log.
_ESCAPED_CHARACTERS = frozenset('\\"')


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def safe(value) -> str:
    """A value fit for one field of one log line: length bounded, and every character
    that could end the line, end a quoted field or disguise the text written as an
    escape (\\xNN, \\uNNNN), so a hostile username or path can neither forge lines nor
    flood the file."""
    text = "" if value is None else str(value)[:SAFE_MAX]
    if text.isprintable() and not _ESCAPED_CHARACTERS.intersection(text):
        return text  # the common case: nothing to look at character by character
    return "".join(
        _escape(c) if c in _ESCAPED_CHARACTERS or unicodedata.category(c) in _ESCAPED_CATEGORIES else c
        for c in text
    )


def _handler(path: Path, level: int, fmt: str) -> logging.Handler:
    handler = WatchedFileHandler(path, encoding="utf-8", delay=False)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(fmt))
    setattr(handler, _OWNED, True)
    return handler


class AccessLog:
    """logs/access.log, one line a request, in the same form as the other files (logging's
    asctime first). Written directly rather than through a logger: the logging module's
    record, handler lock, formatter and separate flush cost a list request as much as one
    of its two statements, for a line whose every field is already known. What the handler
    did that matters is kept: the file is reopened when logrotate has moved it, a line is
    one O_APPEND write, and a failed write never fails the request."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()  # gunicorn may run threads in a worker
        self._file = None
        self._identity: tuple[int, int] | None = None
        self._second: int | None = None
        self._stamp = ""
        self._failing = False
        self._open()

    def _open(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None
        self._file = self._path.open("ab", buffering=0)
        status = os.fstat(self._file.fileno())
        self._identity = (status.st_dev, status.st_ino)

    def _moved(self) -> bool:
        try:
            status = os.stat(self._path)
        except FileNotFoundError:
            return True
        return (status.st_dev, status.st_ino) != self._identity

    def _asctime(self, now: float) -> str:
        second = int(now)
        if second != self._second:  # strftime once a second, not once a line
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            self._second = second
        return f"{self._stamp},{int((now - second) * 1000):03d}"

    def write(self, text: str) -> None:
        with self._lock:
            line = f"{self._asctime(time.time())} {text}\n".encode("utf-8", "backslashreplace")
            try:
                if self._file is None or self._moved():
                    self._open()
                written = self._file.write(line)
                if written != len(line):  # the disk filled in the middle of the line
                    raise OSError(f"wrote {written} of the line's {len(line)} bytes")
            except OSError as error:
                # Said once to the journal (gunicorn's stderr) until a write succeeds again,
                # so that a full disk is reported without a line for every request.
                if not self._failing:
                    print(f"task-manager: cannot write {self._path}: {error}", file=sys.stderr, flush=True)
                self._failing = True
            else:
                self._failing = False

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


_access_log: AccessLog | None = None


def _reset(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        if getattr(handler, _OWNED, False):
            logger.removeHandler(handler)
            handler.close()


def configure(app: Flask) -> None:
    log_dir = Path(app.config["LOG_DIR"])
    log_dir.mkdir(parents=True, exist_ok=True)
    level = getattr(logging, str(app.config["LOG_LEVEL"]).upper(), logging.INFO)

    # app.logger is the "task_manager" logger (Flask names it after the import name).
    logger = logging.getLogger(APP_LOGGER)
    _reset(logger)
    logger.setLevel(level)
    logger.addHandler(_handler(log_dir / "task_manager.log", level, FORMAT))
    logger.addHandler(_handler(log_dir / "errors.log", logging.ERROR, FORMAT))

    # As _reset does for the handlers: the writer of an app made before this one (the tests
    # make many) is closed now, not whenever that app is collected; it reopens if still used.
    global _access_log  # noqa: PLW0603
    if _access_log is not None:
        _access_log.close()
    _access_log = app.extensions[ACCESS_LOG] = AccessLog(log_dir / "access.log")

    # SQLAlchemy's own errors belong in errors.log as well, never its statements (they may carry data).
    sa_logger = logging.getLogger("sqlalchemy")
    _reset(sa_logger)
    sa_logger.addHandler(_handler(log_dir / "errors.log", logging.ERROR, FORMAT))
