"""task-manager-lb (the command the runbooks drain and admit app hosts with) against a real
HAProxy in front of two local servers, and the bounded load generator the cluster
scenario counts every answer with."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import ROOT, install_command, load_script

from task_manager_host import lb as lb_command  # isort: skip  (found through the path conftest sets)

BACKEND = "task_manager_app"

load = load_script("load", ROOT / "scripts" / "load.py")


class App(ThreadingHTTPServer):
    """One app host: /health answers 200 unless told otherwise; /slow takes a second."""

    daemon_threads = True

    def __init__(self, name: str):
        self.name, self.healthy, self.created = name, True, 0
        super().__init__(("127.0.0.1", 0), Handler)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # the test's output stays readable
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        server = self.server
        if self.path == "/health":
            self._send(200 if server.healthy else 500, {"release": server.name, "schema_revision": "9001"})
        elif self.path == "/broken":
            self._send(500, {"error": f"{server.name} is broken"})
        elif self.path == "/slow":
            time.sleep(1.0)
            self._send(200, {"server": server.name})
        else:
            self._send(200, {"server": server.name})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        self.server.created += 1
        self._send(201, {"server": self.server.name})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        pytest.skip("HAProxy is not installed (scripts/install-system-deps.sh installs it)")
    tmp = tmp_path_factory.mktemp("lb")
    apps = {name: App(name) for name in ("app1", "app2")}
    for app in apps.values():
        threading.Thread(target=app.serve_forever, daemon=True).start()
    sock, port = tmp / "admin.sock", free_port()
    servers = "\n".join(
        f"    server {name} 127.0.0.1:{app.server_address[1]} check inter 200 fastinter 100 fall 1 rise 1"
        for name, app in apps.items())
    config = tmp / "haproxy.cfg"
    config.write_text(f"""global
    stats socket {sock} mode 600 level admin
defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
frontend site
    bind 127.0.0.1:{port}
    default_backend {BACKEND}
backend {BACKEND}
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    retries 2
    option redispatch 1
{servers}
""")
    # The command as the host_commands role installs it, with the settings the haproxy role writes.
    settings = tmp / "task-manager-lb.json"
    settings.write_text(json.dumps({"socket": str(sock), "backend": BACKEND}))
    command = install_command("lb", tmp)
    process = subprocess.Popen([haproxy, "-f", str(config), "-db"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not sock.exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "HAProxy did not open its admin socket"
        time.sleep(0.05)
    lb = {"command": command, "port": port, "apps": apps, "settings": settings}
    wait_until(lb, lambda servers: all(s["up"] for s in servers))
    yield lb
    process.terminate()
    process.wait(timeout=10)
    for app in apps.values():
        app.shutdown()


def run(lb, *args) -> tuple[int, dict]:
    # Run as installed (#!/usr/bin/python3 -IB); its settings named as the environment may.
    env = {"PATH": "/usr/bin:/bin", "TASK_MANAGER_LB_CONFIG": str(lb["settings"])}
    done = subprocess.run([str(lb["command"]), *args], capture_output=True, text=True, env=env,
                          timeout=60, check=False)
    return done.returncode, json.loads(done.stdout)


def servers(lb) -> dict:
    return {s["host"]: s for s in run(lb, "state")[1]["servers"]}


def wait_until(lb, condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition(list(servers(lb).values())):
        assert time.monotonic() < deadline, servers(lb)
        time.sleep(0.1)


def through_lb(lb, path: str = "/") -> dict:
    conn = socket.create_connection(("127.0.0.1", lb["port"]), timeout=10)
    conn.sendall(f"GET {path} HTTP/1.0\r\nHost: test\r\n\r\n".encode())
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    conn.close()
    return json.loads(data.split(b"\r\n\r\n", 1)[1])


@pytest.fixture
def lb(cluster):
    yield cluster
    # Every test leaves both hosts in service and healthy for the next one.
    for app in cluster["apps"].values():
        app.healthy = True
    for name in cluster["apps"]:
        run(cluster, "admit", name, "--timeout", "10")


def test_state_lists_every_app_host_up_and_in_service(lb):
    state = servers(lb)
    assert sorted(state) == ["app1", "app2"]
    assert all(s["up"] and s["admin"] == "ready" and s["status"] == "UP" for s in state.values())


def test_drain_takes_a_host_out_and_a_second_drain_changes_nothing(lb):
    rc, first = run(lb, "drain", "app1", "--timeout", "5")
    assert rc == 0 and first["changed"] and first["state"]["admin"] == "drain"
    assert {through_lb(lb)["server"] for _ in range(8)} == {"app2"}
    rc, second = run(lb, "drain", "app1", "--timeout", "5")
    assert rc == 0 and not second["changed"]


def test_drain_waits_for_the_hosts_open_requests(lb):
    answers = []
    for _ in range(2):  # round robin: one of the two lands on app1
        thread = threading.Thread(target=lambda: answers.append(through_lb(lb, "/slow")))
        thread.start()
    time.sleep(0.3)
    assert servers(lb)["app1"]["open_requests"] + servers(lb)["app2"]["open_requests"] >= 1
    rc, drained = run(lb, "drain", "app1", "--timeout", "5")
    thread.join()
    time.sleep(0.2)
    assert rc == 0 and drained["changed"]
    assert drained["state"]["open_requests"] == 0
    assert len(answers) == 2  # the drain cut no request short


def test_the_last_serving_host_is_not_taken_out_unless_asked(lb):
    assert run(lb, "drain", "app1", "--timeout", "5")[0] == 0
    rc, refused = run(lb, "drain", "app2", "--timeout", "5")
    assert rc == 1 and not refused["ok"]
    assert "taking it out would leave nothing serving" in refused["message"]
    assert servers(lb)["app2"]["admin"] == "ready"
    rc, forced = run(lb, "drain", "app2", "--timeout", "5", "--even-if-last")
    assert rc == 0 and forced["changed"]


def test_admit_waits_until_haproxy_sees_the_host_up(lb):
    run(lb, "drain", "app1", "--timeout", "5")
    rc, admitted = run(lb, "admit", "app1", "--timeout", "10")
    assert rc == 0 and admitted["changed"] and admitted["state"]["up"]
    rc, again = run(lb, "admit", "app1", "--timeout", "10")
    assert rc == 0 and not again["changed"]


def test_admit_of_an_unhealthy_host_fails_saying_why(lb):
    run(lb, "drain", "app2", "--timeout", "5")
    lb["apps"]["app2"].healthy = False
    rc, refused = run(lb, "admit", "app2", "--timeout", "1.5")
    assert rc == 1
    assert "does not see app2 UP" in refused["message"] and "/health does not answer 200" in refused["message"]


def test_an_unknown_host_is_named_with_the_known_ones(lb):
    rc, refused = run(lb, "drain", "app9", "--timeout", "1")
    assert rc == 1 and "app9 is not a server" in refused["message"] and "app1, app2" in refused["message"]


def test_an_unhealthy_host_gets_no_requests_and_its_time_out_is_counted(lb):
    before = servers(lb)
    lb["apps"]["app1"].healthy = False
    wait_until(lb, lambda state: not next(s for s in state if s["host"] == "app1")["up"])
    assert {through_lb(lb)["server"] for _ in range(8)} == {"app2"}
    after = servers(lb)
    assert after["app1"]["times_down"] == before["app1"]["times_down"] + 1
    assert after["app2"]["times_down"] == before["app2"]["times_down"]


def test_load_counts_reads_writes_and_releases_and_stops_on_its_file(lb, tmp_path):
    stop = tmp_path / "stop"
    run_load = load.Load(lb["port"], "/api/tasks", {}, seconds=30, max_requests=100_000, write_every=3,
                         health_every=4, title_prefix="t", stop_file=str(stop))
    threads = [threading.Thread(target=run_load.worker, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    stop.touch()
    for thread in threads:
        thread.join(timeout=10)
    answer = run_load.answer()
    assert answer["seconds"] < 10  # the stop file ended it, not the 30 s
    assert answer["failed"] == 0 and answer["total"] > 10
    assert answer["by_status"]["201"] == len(answer["written"]) > 0
    assert len(set(answer["written"])) == len(answer["written"])
    assert set(answer["releases"]) <= {"app1 on 9001", "app2 on 9001"} and answer["releases"]
    assert answer["longest_gap_s"] < 1.0


def test_load_keeps_the_first_failures_with_whose_answer_they_were(lb):
    run_load = load.Load(lb["port"], "/broken", {}, seconds=30, max_requests=30, pace=0)
    run_load.worker()
    answer = run_load.answer()
    assert answer["failed"] == answer["total"] == 30
    assert len(answer["failures"]) == load.MAX_FAILURES_KEPT
    assert {failure["status"] for failure in answer["failures"]} == {"500"}
    assert all(" is broken" in failure["body"] for failure in answer["failures"])


def test_load_writes_no_more_than_asked_then_reads(lb):
    run_load = load.Load(lb["port"], "/api/tasks", {}, seconds=30, max_requests=40, write_every=2, max_writes=5,
                         pace=0)
    run_load.worker()
    answer = run_load.answer()
    assert answer["failed"] == 0 and answer["total"] == 40
    assert answer["by_status"] == {"201": 5, "200": 35} and len(answer["written"]) == 5


def test_load_names_a_request_nothing_answered():
    run_load = load.Load(free_port(), "/", {}, seconds=30, max_requests=3, pace=0)
    run_load.worker()
    answer = run_load.answer()
    assert answer["errors"] == answer["failed"] == 3
    assert answer["error_kinds"] == {"ConnectionRefusedError": 3}
    assert all(failure["status"] is None and failure["error"].startswith("ConnectionRefusedError:")
               for failure in answer["failures"])


def test_load_reaches_loopback_alone_unless_it_runs_inside_the_test_network():
    network = "10.231.47.0/24"
    assert load.target_allowed("127.0.0.1", None) and load.target_allowed("127.0.0.1", network)
    assert not load.target_allowed("10.231.47.100", None)
    assert load.target_allowed("10.231.47.100", network)
    for elsewhere in ("10.231.48.1", "169.254.169.254", "8.8.8.8", "example.org", "::1", "", None):
        assert not load.target_allowed(elsewhere, network), elsewhere
    for not_a_test_network in ("8.8.8.0/24", "169.254.0.0/16", "127.0.0.0/8", "eth0"):
        assert not load.target_allowed("169.254.1.1", not_a_test_network)
        assert not load.target_allowed("8.8.8.8", not_a_test_network)
    with pytest.raises(SystemExit):
        load.main(["--url=http://10.231.47.100:8080/health", "--seconds=0"])


def test_load_gives_up_on_a_peer_that_never_answers_after_its_timeout():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        run_load = load.Load(silent.getsockname()[1], "/", {}, seconds=30, max_requests=2, pace=0, timeout=0.5)
        started = time.monotonic()
        run_load.worker()
    answer = run_load.answer()
    assert answer["failed"] == 2 and answer["error_kinds"] == {"TimeoutError": 2}
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(("address", "holds"), [("127.0.0.1", True), ("192.0.2.77", False)])
def test_address_says_whether_this_host_holds_the_floating_address(lb, tmp_path, address, holds):
    settings = tmp_path / "task-manager-lb.json"
    settings.write_text(json.dumps({**json.loads(lb["settings"].read_text()), "address": address}))
    figures = tmp_path / "task_manager_lb.prom"
    env = {"PATH": "/usr/bin:/bin", "TASK_MANAGER_LB_CONFIG": str(settings)}
    done = subprocess.run([str(lb["command"]), "address", "--textfile", str(figures)], capture_output=True, text=True,
                          check=False, timeout=60, env=env)
    answer = json.loads(done.stdout)
    assert done.returncode == 0 and answer["holds"] is holds and answer["address"] == address
    # No systemd runs keepalived on this machine: the figure says so rather than guess.
    assert answer["keepalived"] is False
    text = figures.read_text()
    assert f'task_manager_lb_holds_address{{address="{address}"}} {int(holds)}' in text
    assert "task_manager_lb_keepalived_up 0" in text and "task_manager_lb_figures_timestamp_seconds " in text


def test_address_without_a_floating_address_says_where_it_comes_from(lb):
    rc, answer = run(lb, "address")
    assert rc == 1 and not answer["ok"] and "task_manager_lb_address is empty" in answer["message"]


def test_the_command_without_its_settings_says_what_writes_them(lb, tmp_path):
    settings = tmp_path / "task-manager-lb.json"
    settings.write_text(json.dumps({"socket": str(tmp_path / "admin.sock")}))
    done = subprocess.run([str(lb["command"]), "state"], capture_output=True, text=True, check=False, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "TASK_MANAGER_LB_CONFIG": str(settings)})
    answer = json.loads(done.stdout)
    assert done.returncode == 1 and not answer["ok"]
    assert "no backend" in answer["message"] and "deploy.yml" in answer["message"]


def test_address_reads_every_address_a_host_holds_the_floating_one_included():
    answer = ('[{"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},'
              '{"ifname":"eth0","addr_info":[{"family":"inet","local":"10.231.47.11","prefixlen":24},'
              '{"family":"inet","local":"10.231.47.100","prefixlen":24,"secondary":true}]},{"ifname":"eth1"}]')
    assert lb_command.addresses_in(answer) == ["127.0.0.1", "10.231.47.11", "10.231.47.100"]
    assert lb_command.addresses_in("[]") == [] and lb_command.addresses_in("") == []
