"""One access-log line per request; client errors also go to task_manager.log,
so that the manual's `grep "401\\|403\\|422" logs/task_manager.log` finds them.

The access-log line is a contract, read by roles/host_commands/files/task_manager_host/check/logs.py:

    <asctime> <client> "<METHOD> <path>" <status> <ms>ms <size>
    2025-01-31 12:00:00,123 203.0.113.9 "GET /api/tasks?page=2" 200 3.1ms 1234

logging_setup.AccessLog writes it. <asctime> is logging's "YYYY-MM-DD HH:MM:SS,mmm";
<client> is a plain IP address or "-"; <METHOD> and <path> (the path with its query string,
which may hold spaces) pass through logging_setup.safe(), so neither holds a line break, a
control or format character, a raw '"' or a raw backslash: the quoted field ends at the
first '"'. <status> is three digits, <ms> has one decimal, <size> is a byte count or "-".
Nothing a client sends can add a line or move a field.
"""

from __future__ import annotations

import time

from flask import Flask, g, request

from .logging_setup import ACCESS_LOG, safe
from .proxy import client_address


def register(app: Flask) -> None:
    access = app.extensions[ACCESS_LOG]

    @app.before_request
    def start_timer():
        g.request_started = time.perf_counter()

    @app.after_request
    def log_request(response):
        started = g.get("request_started")
        duration_ms = (time.perf_counter() - started) * 1000 if started else 0.0
        method = safe(request.method)
        path = safe(request.full_path.rstrip("?"))
        client = client_address(request) or "-"
        size = response.calculate_content_length()
        access.write(f'{client} "{method} {path}" {response.status_code} {duration_ms:.1f}ms {size or "-"}')
        if 400 <= response.status_code < 500:
            app.logger.warning("HTTP %s %s %s client=%s", response.status_code, method, path, client)
        return response
