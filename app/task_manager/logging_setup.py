"""The manual's log files: logs/task_manager.log (INFO+), logs/errors.log (ERROR+),
logs/access.log (one line per request).

WatchedFileHandler reopens a file when logrotate has moved it away, so rotation
needs no signal and no copytruncate, and each gunicorn worker appends on its own
(O_APPEND writes of one line do not interleave).
"""

from __future__ import annotations

import logging
import re
from logging.handlers import WatchedFileHandler
from pathlib import Path

from flask import Flask

FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
ACCESS_FORMAT = "%(asctime)s %(message)s"
APP_LOGGER = "task_manager"
ACCESS_LOGGER = "task_manager.access"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_OWNED = "_task_manager_handler"


def safe(value) -> str:
    """A value fit for one log line: control characters escaped, length bounded,
    so a hostile username cannot forge lines or flood the file."""
    text = "" if value is None else str(value)
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text[:200])


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
