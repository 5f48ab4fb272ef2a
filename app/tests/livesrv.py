"""A real gunicorn serving the app on a free 127.0.0.1 port, with its own instance folder.

Used by the fuzzing test here and by the browser tests of the frontend.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

APP_DIR = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_cli(env: dict, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "task_manager", *args], env=env, check=True, capture_output=True,
                   timeout=120, cwd=APP_DIR)


@contextmanager
def live_server(base: Path, *, workers: int = 2, extra_env: dict | None = None, port: int | None = None):
    """Yield the base URL of a gunicorn serving the database under `base` (created when new)."""
    port = port or free_port()
    env = {
        **os.environ,
        "TASK_MANAGER_ENV": "development",
        "TASK_MANAGER_INSTANCE_PATH": str(base / "instance"),
        "TASK_MANAGER_LOG_DIR": str(base / "logs"),
        "TASK_MANAGER_BIND": f"127.0.0.1:{port}",
        "TASK_MANAGER_WORKERS": str(workers),
        **(extra_env or {}),
    }
    _run_cli(env, "init-db")
    _run_cli(env, "create-demo-user")
    log = open(base / "gunicorn.log", "ab")  # noqa: SIM115  (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:task_manager.gunicorn_conf", "task_manager.wsgi:app"],
        env=env, cwd=base, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn did not start: {(base / 'gunicorn.log').read_text()}") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
