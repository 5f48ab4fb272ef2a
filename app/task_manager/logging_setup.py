"""The manual's log files: logs/task_manager.log (INFO+), logs/errors.log (ERROR+),
logs/access.log (one line per request).

WatchedFileHandler reopens a file when logrotate has moved it away, so rotation
needs no signal and no copytruncate, and each gunicorn worker appends on its own
(O_APPEND writes of one line do not interleave).
"""

from __future__ import annotations

import logging
import unicodedata
from logging.handlers import WatchedFileHandler
from pathlib import Path

from flask import Flask

FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
ACCESS_FORMAT = "%(asctime)s %(message)s"
APP_LOGGER = "task_manager"
ACCESS_LOGGER = "task_manager.access"
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

    access = logging.getLogger(ACCESS_LOGGER)
    _reset(access)
    access.setLevel(logging.INFO)
    access.propagate = False
    access.addHandler(_handler(log_dir / "access.log", logging.INFO, ACCESS_FORMAT))

    # SQLAlchemy's own errors belong in errors.log as well, never its statements (they may carry data).
    sa_logger = logging.getLogger("sqlalchemy")
    _reset(sa_logger)
    sa_logger.addHandler(_handler(log_dir / "errors.log", logging.ERROR, FORMAT))
