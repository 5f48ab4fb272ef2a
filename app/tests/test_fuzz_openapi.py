"""Schemathesis against /api/openapi.json on a live gunicorn, signed in as a real user.

Every generated request, valid and invalid, must get an answer the document allows,
and never a 5xx. Logout, sign-out-everywhere and the password change are fuzzed in passes
of their own, since they end the sessions the first pass signs in with.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.livesrv import live_server

CHECKS = ",".join([
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_headers_conformance", "response_schema_conformance",
])
MAX_EXAMPLES = os.environ.get("FUZZ_MAX_EXAMPLES", "40")

pytestmark = pytest.mark.fuzz
# The run registers many accounts and fails many logins from one address. The limits stay
# on (their 429s are part of the contract checked), only loose enough that most generated
# requests reach the code behind them.
LIMITS = {
    "TASK_MANAGER_REGISTER_MAX_PER_CLIENT": "100000",
    "TASK_MANAGER_LOGIN_FREE_FAILURES_PER_CLIENT": "1000",
    "TASK_MANAGER_LOGIN_BACKOFF_MAX_SECONDS": "5",
}


def _tokens(url: str) -> dict:
    request = urllib.request.Request(
        f"{url}/api/auth/login", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"username": "demo_user", "password": "demo_password"}).encode(),
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _schemathesis(url: str, token: str, report: Path, *filters: str) -> subprocess.CompletedProcess:
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    command = [
        exe, "--config-file", str(Path(__file__).with_name("schemathesis.toml")),
        "run", f"{url}/api/openapi.json", "--checks", CHECKS, "--max-examples", MAX_EXAMPLES,
        "--header", f"Authorization: Bearer {token}", "--seed", "20241227", "--workers", "1",
        "--phases", "examples,coverage,fuzzing", "--no-color", "--suppress-health-check", "all",
        "--report", "junit", "--report-junit-path", str(report), *filters,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)


def test_schemathesis_finds_no_server_error_and_no_contract_breach(tmp_path, database_env):
    with live_server(tmp_path, extra_env={**LIMITS, **database_env}) as url:
        # Every token first: the fuzzed logins soon slow this client down (429), as they should.
        first, second, third = _tokens(url), _tokens(url), _tokens(url)
        runs = [
            _schemathesis(url, first["access_token"], tmp_path / "main.xml",
                          "--exclude-path-regex", "^/api/auth/(logout|logout-all|refresh|password)$"),
            # A refresh rotates the token, and its reuse ends that sign-in (401): both are allowed.
            _schemathesis(url, first["refresh_token"], tmp_path / "refresh.xml", "--include-path", "/api/auth/refresh"),
            _schemathesis(url, second["access_token"], tmp_path / "logout.xml", "--include-path", "/api/auth/logout"),
            _schemathesis(url, third["access_token"], tmp_path / "password.xml",
                          "--include-path", "/api/auth/password"),
            _schemathesis(url, third["access_token"], tmp_path / "logout-all.xml",
                          "--include-path", "/api/auth/logout-all"),
        ]
        errors_log = (tmp_path / "logs" / "errors.log").read_text()
    for run in runs:
        print(run.stdout[-4000:])
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
        assert "No issues found" in run.stdout and " passed" in run.stdout
    assert "Traceback" not in errors_log, errors_log[-3000:]
