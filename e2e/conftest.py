"""Browser tests: Debian's Chromium driven by Playwright against a real gunicorn and a
real SQLite file, with the frontend served by `python -m http.server` as in the manual."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "app" / "tests"))

from livesrv import free_port, live_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-quic", "--disable-sync",
]


class Stack:
    """The API (gunicorn) and the frontend (http.server) on their own 127.0.0.1 ports."""

    def __init__(self, base: Path, api_env: dict):
        self.base = base
        self.api_env = api_env
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.frontend_port = free_port()
        self.frontend_url = f"http://127.0.0.1:{self.frontend_port}"
        self.api = None
        self.static = None

    def start_api(self):
        # Every test registers its own account from this one address: the per-client
        # registration limit (on, as in production) is raised to fit a whole session.
        env = {"TASK_MANAGER_CORS_ORIGINS": self.frontend_url, "TASK_MANAGER_REGISTER_MAX_PER_CLIENT": "1000",
               **self.api_env}
        self.api = live_server(self.base, extra_env=env, port=self.api_port)
        self.api.__enter__()

    def stop_api(self):
        if self.api is not None:
            self.api.__exit__(None, None, None)
            self.api = None

    def start(self):
        self.start_api()
        site = self.base / "site"
        shutil.copytree(ROOT / "frontend", site)
        # The development setup the manual describes: the page on one port, the API on another.
        (site / "config.js").write_text(f'window.TASK_MANAGER_CONFIG = {{ apiBase: "{self.api_url}" }};\n')
        self.static = _serve_frontend(site, self.frontend_port)
        return self

    def stop(self):
        if self.static is not None:
            self.static.terminate()
            self.static.wait(timeout=10)
        self.stop_api()


def _serve_frontend(directory: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
            return proc
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.1)


@contextmanager
def running_stack(base: Path, **api_env):
    stack = Stack(base, api_env).start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("stack")) as stack:
        yield stack


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def context(browser):
    context = browser.new_context(locale="ja-JP", viewport={"width": 1100, "height": 800})
    yield context
    context.close()


# How long a step and an expectation may wait for the page: a bound, never a figure. make
# test runs these tests beside the scenarios, and on a loaded machine a task took longer
# than Playwright's default 5 s to appear after Enter.
WAIT_MS = 20_000
expect.set_options(timeout=WAIT_MS)


@pytest.fixture
def page(context):
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    assert errors == [], f"JavaScript errors on the page: {errors}"


_counter = iter(range(1, 10_000))


@pytest.fixture
def username():
    return f"user{time.time_ns() % 10**9}_{next(_counter)}"
