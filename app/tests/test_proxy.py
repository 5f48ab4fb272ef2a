"""X-Forwarded-* headers count only on nginx's unix socket (empty REMOTE_ADDR under gunicorn),
never from a TCP peer, and X-Forwarded-Host never."""

import pytest
from flask import Blueprint, jsonify, request

from task_manager import create_app, proxy
from tests.conftest import make_config

UNIX = ""  # what gunicorn puts in REMOTE_ADDR for a unix-socket peer
FORWARDED = {
    "HTTP_X_FORWARDED_FOR": "198.51.100.1, 203.0.113.5",
    "HTTP_X_FORWARDED_PROTO": "https",
    "HTTP_X_FORWARDED_HOST": "evil.example",
}


def _app(tmp_path, hops=1):
    app = create_app(make_config(tmp_path, TRUSTED_PROXIES=hops))
    probe = Blueprint("probe", __name__)

    @probe.get("/probe")
    def show():
        return jsonify(
            remote_addr=request.remote_addr, scheme=request.scheme, host=request.host,
            via_proxy=proxy.via_proxy(request), local=proxy.is_local_direct(request),
            client=proxy.client_address(request),
        )

    app.register_blueprint(probe)
    return app.test_client()


def probe(client, remote, **environ):
    return client.get("/probe", environ_base={"REMOTE_ADDR": remote, **environ}).get_json()


def test_a_tcp_peer_cannot_pretend_to_be_someone_else(tmp_path):
    seen = probe(_app(tmp_path), "127.0.0.1", **FORWARDED)
    assert seen == {"remote_addr": "127.0.0.1", "scheme": "http", "host": "localhost", "via_proxy": False,
                    "local": True, "client": "127.0.0.1"}


def test_the_proxy_socket_gives_the_forwarded_client_and_scheme(tmp_path):
    seen = probe(_app(tmp_path), UNIX, **FORWARDED)
    # The rightmost entry is what nginx saw; the client's own "198.51.100.1" is not believed.
    assert seen["remote_addr"] == seen["client"] == "203.0.113.5"
    assert seen["scheme"] == "https"
    assert seen["host"] == "localhost"  # X-Forwarded-Host is never honoured
    assert seen["via_proxy"] is True
    assert seen["local"] is False


@pytest.mark.parametrize(
    ("hops", "header", "client"),
    [
        (1, "not-an-ip", None),
        (1, "203.0.113.5, 999.1.1.1", None),
        (1, " 2001:DB8::1 ", "2001:db8::1"),
        (2, "192.0.2.1, 192.0.2.2, 192.0.2.3", "192.0.2.2"),
        (2, "192.0.2.3", None),  # fewer entries than proxies: nothing trustworthy
        (0, "192.0.2.3", None),  # no proxy configured: the header is ignored
        (1, "", None),
    ],
)
def test_forwarded_addresses_that_are_not_ip_addresses_are_ignored(tmp_path, hops, header, client):
    seen = probe(_app(tmp_path, hops), UNIX, HTTP_X_FORWARDED_FOR=header)
    assert seen["client"] == client
    assert seen["via_proxy"] is True


def test_a_non_ip_remote_addr_counts_as_the_proxy_socket(tmp_path):
    seen = probe(_app(tmp_path), "unix:/run/task-manager/api.sock", HTTP_X_FORWARDED_FOR="192.0.2.8")
    assert (seen["client"], seen["via_proxy"]) == ("192.0.2.8", True)


def test_an_unknown_scheme_is_ignored(tmp_path):
    assert probe(_app(tmp_path), UNIX, HTTP_X_FORWARDED_PROTO="gopher")["scheme"] == "http"


def test_a_local_process_cannot_dodge_the_login_throttle_with_headers(tmp_path, app_with):
    app = app_with(LOGIN_FREE_FAILURES_PER_CLIENT=2, LOGIN_BACKOFF_BASE_SECONDS=60, TRUSTED_PROXIES=1)
    client = app.test_client()
    statuses = []
    for n in range(3):
        response = client.post(
            "/api/auth/login", json={"username": f"user{n}", "password": "whatever-pw"},
            environ_base={"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": f"192.0.2.{n}"},
        )
        statuses.append(response.status_code)
    assert statuses == [401, 401, 429]
    # Through the proxy, the forwarded address is the client: another one is not held up.
    other = client.post("/api/auth/login", json={"username": "user9", "password": "whatever-pw"},
                        environ_base={"REMOTE_ADDR": UNIX, "HTTP_X_FORWARDED_FOR": "192.0.2.99"})
    assert other.status_code == 401
    log = (tmp_path / "logs" / "access.log").read_text()
    assert ' 192.0.2.99 "POST /api/auth/login" 401 ' in log


def test_gunicorn_believes_no_forwarding_header():
    from task_manager import gunicorn_conf

    assert gunicorn_conf.forwarded_allow_ips == ""
    assert gunicorn_conf.secure_scheme_headers == {}
    assert gunicorn_conf.forwarder_headers == ""


def test_under_gunicorn_only_the_unix_socket_is_the_proxy(tmp_path, database_env):
    """The contract itself: gunicorn on a TCP port and a unix socket, as systemd starts it."""
    import http.client
    import json
    import os
    import socket
    import subprocess
    import sys
    import time

    from tests.livesrv import APP_DIR, _run_cli, free_port

    port, sock_path = free_port(), str(tmp_path / "api.sock")
    env = {**os.environ, "TASK_MANAGER_ENV": "development", "TASK_MANAGER_INSTANCE_PATH": str(tmp_path / "instance"),
           "TASK_MANAGER_LOG_DIR": str(tmp_path / "logs"), "TASK_MANAGER_TRUSTED_PROXIES": "1", **database_env}
    _run_cli(env, "init-db")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:task_manager.gunicorn_conf", "--workers", "1",
         "-b", f"127.0.0.1:{port}", "-b", f"unix:{sock_path}", "task_manager.wsgi:app"],
        env=env, cwd=APP_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )

    class UnixConnection(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(sock_path)

    def ask(connection, path):
        connection.request("GET", path, headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.5",
                                                 "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())

    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(sock_path):
            assert server.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.1)
        time.sleep(0.5)
        status, direct = ask(http.client.HTTPConnection("127.0.0.1", port, timeout=10), "/health?direct")
        assert status == 200
        assert "schema_revision" in direct  # a caller on the host: everything
        status, proxied = ask(UnixConnection("localhost", timeout=10), "/health?proxied")
        assert status == 200
        assert "schema_revision" not in proxied  # a public caller: no build details
    finally:
        server.terminate()
        server.wait(timeout=30)
    access = (tmp_path / "logs" / "access.log").read_text().splitlines()
    assert any(' 127.0.0.1 "GET /health?direct" 200 ' in line for line in access), access
    assert any(' 203.0.113.5 "GET /health?proxied" 200 ' in line for line in access), access
