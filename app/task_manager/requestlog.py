"""One access-log line per request; client errors also go to task_manager.log,
so that the manual's `grep "401\\|403\\|422" logs/task_manager.log` finds them."""

from __future__ import annotations

import logging
import time

from flask import Flask, g, request

from .logging_setup import ACCESS_LOGGER, safe


def register(app: Flask) -> None:
    access = logging.getLogger(ACCESS_LOGGER)

    @app.before_request
    def start_timer():
        g.request_started = time.perf_counter()

    @app.after_request
    def log_request(response):
        started = g.get("request_started")
        duration_ms = (time.perf_counter() - started) * 1000 if started else 0.0
        path = safe(request.full_path.rstrip("?"))
        client = safe(request.remote_addr)
        access.info(
            '%s "%s %s" %s %.1fms %s', client, request.method, path, response.status_code, duration_ms,
            response.calculate_content_length() or "-",
        )
        if 400 <= response.status_code < 500:
            app.logger.warning("HTTP %s %s %s client=%s", response.status_code, request.method, path, client)
        return response
