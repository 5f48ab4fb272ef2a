"""Shared parts of the benchmarks: the bench host, a bounded load generator, figures out.

The bench host is a local Debian 12 systemd container (the test-host image) deployed
with the real playbooks. Every request goes to ports published on 127.0.0.1: the load
generator refuses any other address.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
CACHE = ROOT / ".cache" / "bench"
LOOPBACK = "127.0.0.1"
HOST_NAME = os.environ.get("BENCH_HOST", "task-manager-bench")
WEB_PORT = int(os.environ.get("BENCH_PORT", "18090"))
BASELINE_PORT = WEB_PORT + 1
# The backups live on their own small file system, so the disk-full drill can fill it
# without touching this machine's disk.
BACKUP_MOUNT = "/opt/task-manager/shared/backups"
BACKUP_FS_SIZE = os.environ.get("BENCH_BACKUP_FS_SIZE", "1g")
ON_HOST = "/usr/local/lib/task-manager-bench/on_host.py"
# Set, the bench runs the app on PostgreSQL on this second host (a db group of one),
# both hosts on a podman network of their own: the same scripts, the same harness.
DB_HOST_NAME = os.environ.get("BENCH_DB_HOST", "")
ENGINE = "postgresql" if DB_HOST_NAME else "sqlite"
# Set too (with BENCH_DB_HOST), the bench is a cluster: HAProxy on its own host, which
# alone publishes the web port, and a second app host (BENCH_HOST is the first).
LB_HOST_NAME = os.environ.get("BENCH_LB_HOST", "")
APP2_HOST_NAME = os.environ.get("BENCH_APP2_HOST", "")
CLUSTER = bool(LB_HOST_NAME)
if CLUSTER and not (DB_HOST_NAME and APP2_HOST_NAME):
    raise SystemExit("BENCH_LB_HOST needs BENCH_APP2_HOST and BENCH_DB_HOST: a cluster is lb, two app hosts and db")
# Set, a backup host (the inventory's backup group) receives the database host's copies
# over SFTP (restic), on the same network: the off-host copy benchmark.
BACKUP_HOST_NAME = os.environ.get("BENCH_BACKUP_HOST", "")
NETWORKED = bool(DB_HOST_NAME or BACKUP_HOST_NAME)
NETWORK = f"{HOST_NAME}-net"
# on_host.py reads PostgreSQL through the release's own driver (psycopg, in its venv).
# The one app host of the single-host benches is reached as a real server is: over SSH as
# deploy with sudo (scripts/test-host.py --ssh-key), its port 22 published on 127.0.0.1, so
# that the playbooks' timings are the production path's. The multi-host benches' hosts stay
# on the podman connection (only their entry point is published).
SSH = not NETWORKED and not CLUSTER
SSH_PORT = WEB_PORT + 100
SSH_DIR = CACHE / f"ssh-{HOST_NAME}"
# How the playbooks reach the app host, as the results record it.
CONNECTION = "over SSH as a sudo user" if SSH else "over the podman connection"
ON_HOST_PYTHON = "/opt/task-manager/current/venv/bin/python" if DB_HOST_NAME else "python3"
PASSWORD = "bench-password-1"  # a throwaway account on a throwaway host


def results_dir() -> Path:
    path = Path(os.environ.get("BENCH_RESULTS", BENCH / "results"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--smoke", action="store_true", help="a few seconds of each step: proves the script works")
    return parser.parse_args()


def log(message: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- the host


def _run(argv: list[str], *, check: bool = True, text: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, text=text, capture_output=True, **kwargs)


def _env() -> dict:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(ROOT / "molecule" / "containers.conf"))
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{env['PATH']}"
    return env


def podman(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    return _run(["podman", *args], check=check, env=_env(), input=input)


def host_exec(*argv: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    return podman("exec", "-i", HOST_NAME, *argv, check=check, input=input)


def lb_exec(*argv: str, check: bool = True) -> dict:
    """task-manager-lb on the cluster's lb host (state, drain HOST, admit HOST): its JSON answer."""
    answer = podman("exec", "-i", LB_HOST_NAME, "/usr/local/sbin/task-manager-lb", *argv, check=False)
    if check and answer.returncode != 0:
        raise RuntimeError(f"task-manager-lb {' '.join(argv)}: {answer.stdout}{answer.stderr}")
    return json.loads(answer.stdout)


def database_host_exec(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    """On the host that holds the database (and takes its backups)."""
    return podman("exec", "-i", DB_HOST_NAME or HOST_NAME, *argv, check=check)


def on_host(*args: str) -> dict:
    """Run bench/on_host.py inside the host and return its JSON answer."""
    return json.loads(host_exec(ON_HOST_PYTHON, ON_HOST, *args).stdout)


def host_exists() -> bool:
    return podman("container", "exists", HOST_NAME, check=False).returncode == 0


def other_hosts() -> list[str]:
    """The bench's hosts beside BENCH_HOST: its db host, and a cluster's second app host and lb."""
    return [name for name in (DB_HOST_NAME, APP2_HOST_NAME, LB_HOST_NAME, BACKUP_HOST_NAME) if name]


def destroy_host() -> None:
    others = [*other_hosts(), "--network", NETWORK] if NETWORKED else []
    _run([str(ROOT / "scripts" / "test-host.py"), "destroy", HOST_NAME, *others], env=_env())


def ssh_key() -> Path:
    """The bench's own key pair (made once, kept in .cache); a new host's keys are read from it."""
    SSH_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = SSH_DIR / "id_ed25519"
    if not key.exists():
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "task-manager-bench", "-f", str(key)])
    return key


def _create_app_host() -> None:
    network = [f"--network={NETWORK}"] if NETWORKED else []
    backups = [] if DB_HOST_NAME else [f"--tmpfs={BACKUP_MOUNT}:{BACKUP_FS_SIZE}"]
    ssh = []
    if SSH:
        (SSH_DIR / "known_hosts").unlink(missing_ok=True)
        ssh = [f"--publish={LOOPBACK}:{SSH_PORT}:22", f"--ssh-key={ssh_key()}.pub",
               f"--known-hosts={SSH_DIR / 'known_hosts'}"]
    _run([str(ROOT / "scripts" / "test-host.py"), "create", HOST_NAME, f"--publish={LOOPBACK}:{WEB_PORT}:8080",
          f"--publish={LOOPBACK}:{BASELINE_PORT}:8081", *ssh, *network, *backups], env=_env())


def reached_as_configured() -> bool:
    """The host is reached the way this bench reaches it (an older bench host has no SSH port)."""
    return not SSH or podman("port", HOST_NAME, "22/tcp", check=False).returncode == 0


def replace_app_host() -> None:
    """BENCH_HOST lost with its disk: a bare host under the same name, on the same network."""
    _run([str(ROOT / "scripts" / "test-host.py"), "destroy", HOST_NAME], env=_env())
    _create_app_host()


def create_host() -> None:
    """A bare host (and its db host): systemd running, nothing deployed (scripts/test-host.py,
    the one test-host definition). The backups get a tmpfs where they are taken."""
    destroy_host()
    network = [f"--network={NETWORK}"] if NETWORKED else []
    backups = [f"--tmpfs={BACKUP_MOUNT}:{BACKUP_FS_SIZE}"]
    create = [str(ROOT / "scripts" / "test-host.py"), "create"]
    if DB_HOST_NAME:
        _run([*create, DB_HOST_NAME, *network, *backups], env=_env())
    if BACKUP_HOST_NAME:
        _run([*create, BACKUP_HOST_NAME, *network], env=_env())
    if CLUSTER:
        # The app hosts answer only the lb (nginx refuses any other peer): only the lb publishes.
        _run([*create, APP2_HOST_NAME, *network], env=_env())
        _run([*create, HOST_NAME, *network], env=_env())
        _run([*create, LB_HOST_NAME, f"--publish={LOOPBACK}:{WEB_PORT}:8080", *network], env=_env())
        return
    _create_app_host()


def install_helper() -> None:
    host_exec("mkdir", "-p", str(Path(ON_HOST).parent))
    for name in ("on_host.py", "minimal_app.py"):
        podman("cp", str(BENCH / name), f"{HOST_NAME}:{Path(ON_HOST).parent / name}")


def _inventory_host(name: str) -> str:
    if SSH and name == HOST_NAME:
        return (f"        {name}:\n          ansible_connection: ssh\n          ansible_host: {LOOPBACK}\n"
                f"          ansible_port: {SSH_PORT}\n          ansible_user: deploy\n          ansible_become: true\n"
                f"          ansible_ssh_private_key_file: {ssh_key()}\n"
                f"          ansible_ssh_common_args: -o UserKnownHostsFile={SSH_DIR / 'known_hosts'}\n"
                # What the host is called where an address is needed, as over the podman connection.
                f"          task_manager_host_address: {name}\n")
    # podman: containers.podman.podman, which Mitogen (the runbooks' strategy) runs as its own.
    return f"        {name}:\n          ansible_connection: podman\n          ansible_host: {name}\n"


def inventory() -> Path:
    """The bench's inventory: the demo settings (group_vars) for the bench's hosts."""
    directory = CACHE / f"inventory-{HOST_NAME}"
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / "group_vars"
    settings = ROOT / "inventories" / ("demo-cluster" if CLUSTER else "demo") / "group_vars"
    if link.is_symlink() and link.resolve() != settings.resolve():
        link.unlink()
    if not link.is_symlink():
        link.symlink_to(settings)
    app_settings = (
        # The load generator is one client address: nginx's per-address limit on
        # /api/auth/ would measure itself instead of sign-in.
        "          web_auth_rate: 100000r/s\n          web_auth_burst: 100000\n"
        # Likewise the API's per-address limits on failed sign-ins and registrations, and the
        # account's: the bench's account holds 100,000 seeded tasks and writes more, as fast
        # as the API takes them.
        "          app_service_extra_env:\n"
        "            {LOGIN_FREE_FAILURES_PER_CLIENT: 1000000, REGISTER_MAX_PER_CLIENT: 1000000,\n"
        "             STORAGE_QUOTA_BYTES: 100000000000, TASK_WRITES_PER_MINUTE: 100000000}\n")
    app_hosts = [HOST_NAME, *([APP2_HOST_NAME] if CLUSTER else [])]
    hosts = directory / "hosts.yml"
    hosts.write_text(
        "# Written by bench/benchlib.py: the bench's hosts, deployed with the demo settings.\n"
        "all:\n"
        # The demo's sets are not encrypted: accepted here, the figures stay comparable with
        # the earlier runs (deploy.yml refuses it otherwise: the backup host could read them).
        + (f"  vars:\n    offsite_backup_password: {offsite_password()}\n    offsite_backup_hourly: true\n"
           "    offsite_backup_allow_unencrypted_sets: true\n"
           if BACKUP_HOST_NAME else "")
        + "  children:\n"
        + (f"    lb:\n      hosts:\n{_inventory_host(LB_HOST_NAME)}" if CLUSTER else "")
        + "    task_manager:\n      hosts:\n" + "".join(_inventory_host(h) + app_settings for h in app_hosts)
        + (f"    db:\n      hosts:\n{_inventory_host(DB_HOST_NAME)}" if DB_HOST_NAME else "")
        + (f"    backup:\n      hosts:\n{_inventory_host(BACKUP_HOST_NAME)}" if BACKUP_HOST_NAME else ""))
    return hosts


def offsite_password() -> str:
    """The off-host repository's password, as a vault would hold it: made here once, never
    committed, kept beside the bench's inventory so that a rebuilt host reads the copies."""
    path = CACHE / f"offsite-password-{HOST_NAME}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(24))
    return path.read_text().strip()


@dataclass
class PlaybookRun:
    playbook: str
    seconds: float
    rc: int
    changed: int
    output: str


def playbook(name: str, *extra: str, check: bool = True, env: dict | None = None) -> PlaybookRun:
    """Run a root playbook as an operator types it, against the bench host; time it
    (scripts/run-playbook.py reads the recap, as for Molecule). env: settings over ansible.cfg's."""
    argv = [str(ROOT / "scripts" / "run-playbook.py"), "-i", str(inventory()), str(ROOT / name),
            "-e", f"app_release_source_repo={fixture_repo()}", *extra]
    log(" ".join([*(f"{k}={v}" for k, v in (env or {}).items()), name, *extra]))
    answer = json.loads(_run(argv, cwd=ROOT, env={**_env(), **(env or {})}).stdout)
    output = answer["stdout"] + answer["stderr"]
    # Kept whole, with each task's time (ansible.cfg's profile_tasks): where a run's seconds go.
    logs = CACHE / "playbooks"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / f"{time.strftime('%Y%m%d-%H%M%S')}-{HOST_NAME}-{Path(name).stem}.log").write_text(output, encoding="utf-8")
    if HOST_NAME not in answer["hosts"]:
        # A run that matched no host "succeeds" in no time: never take that as a figure.
        raise RuntimeError(f"{name} did not run on {HOST_NAME}:\n{output[-2000:]}")
    if check and answer["rc"] != 0:
        raise RuntimeError(f"{name} failed (rc={answer['rc']}):\n{output[-4000:]}")
    return PlaybookRun(name, answer["seconds"], answer["rc"], answer["changed"], output)


def healthy() -> bool:
    with contextlib.suppress(OSError, http.client.HTTPException):
        conn = http.client.HTTPConnection(LOOPBACK, WEB_PORT, timeout=2)
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    return False


def ensure_host() -> None:
    """A deployed bench host: reuse a healthy one, otherwise create and deploy it."""
    if host_exists() and healthy() and reached_as_configured():
        install_helper()
        return
    log(f"creating and deploying {HOST_NAME} (127.0.0.1:{WEB_PORT})")
    create_host()
    playbook("deploy.yml", "-e", f"version={new_release()}")
    install_helper()


# ---------------------------------------------------------------------------- releases


def fixture_repo() -> Path:
    return CACHE / "repo"


def new_release(*, broken_health: bool = False) -> str:
    """Tag a new release of the project's committed code in a scratch repository
    (scripts/fixture-repo.py, the builder Molecule uses too): each call gives an update to
    deploy; with broken_health, one whose /health answers 503, which update.yml rolls back."""
    answer = _run([str(ROOT / "scripts" / "fixture-repo.py"), "next", str(fixture_repo()),
                   *(["--broken-health"] if broken_health else [])], env=_env())
    return json.loads(answer.stdout)["tag"]


# ---------------------------------------------------------------------------- the API


class Api:
    """One keep-alive connection to the bench host's nginx."""

    def __init__(self, port: int = WEB_PORT, host: str = LOOPBACK, timeout: float = 30, token: str | None = None):
        if host != LOOPBACK:
            raise ValueError("benchmarks send traffic to 127.0.0.1 only")
        self.host, self.port, self.timeout = host, port, timeout
        self.conn: http.client.HTTPConnection | None = None
        self.token = token

    def request(self, method: str, path: str, body=None, *, raw: bytes | None = None,
                headers: dict | None = None) -> tuple[int, bytes]:
        hdrs = {"Accept": "application/json"}
        if self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                resp = self.conn.getresponse()
                payload = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, payload
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
                # A keep-alive connection nginx closed while idle: a fresh one, once.
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body=None) -> tuple[int, dict]:
        status, payload = self.request(method, path, body)
        try:
            return status, json.loads(payload or b"{}")
        except ValueError:
            return status, {"raw": payload[:200].decode(errors="replace")}

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def sign_in(self, username: str, password: str = PASSWORD) -> dict:
        """Sign in, registering the account first if it does not exist yet."""
        status, body = self.json("POST", "/api/auth/login", {"username": username, "password": password})
        if status == 401:
            status, body = self.json("POST", "/api/auth/register", {"username": username, "password": password})
            if status != 201:
                raise RuntimeError(f"register {username}: {status} {body}")
            status, body = self.json("POST", "/api/auth/login", {"username": username, "password": password})
        if status != 200:
            raise RuntimeError(f"login {username}: {status} {body}")
        self.token = body["access_token"]
        return body["user"]


# ---------------------------------------------------------------------------- load


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    errors: int = 0
    seconds: float = 0.0

    def summary(self) -> dict:
        ok = len(self.latencies_ms)
        return {
            "requests": ok + self.errors,
            "errors": self.errors,
            "non_2xx": sum(n for s, n in self.statuses.items() if not 200 <= s < 300),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "rps": round(ok / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": round(percentile(self.latencies_ms, 50), 1),
            "p95_ms": round(percentile(self.latencies_ms, 95), 1),
            "p99_ms": round(percentile(self.latencies_ms, 99), 1),
            "max_ms": round(max(self.latencies_ms, default=float("nan")), 1),
        }


def load(make_client, step, *, concurrency: int, seconds: float, max_requests: int = 100_000,
         stop: threading.Event | None = None) -> LoadResult:
    """Closed-loop load: `concurrency` clients, each sending its next request when the
    last one answered, until `seconds` pass, `max_requests` are sent or `stop` is set.

    make_client(i) returns a per-client state; step(state, n) sends one request and
    returns its HTTP status.
    """
    result = LoadResult()
    lock = threading.Lock()
    sent = 0
    deadline = time.perf_counter() + seconds
    stop = stop or threading.Event()

    def client(index: int) -> None:
        nonlocal sent
        state = make_client(index)
        n = 0
        while not stop.is_set() and time.perf_counter() < deadline:
            with lock:
                if sent >= max_requests:
                    return
                sent += 1
            started = time.perf_counter()
            try:
                status = step(state, n)
            except (OSError, http.client.HTTPException):
                with lock:
                    result.errors += 1
                time.sleep(0.01)
                continue
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                result.statuses[status] += 1
                result.latencies_ms.append(elapsed)
            n += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(concurrency)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 120)
    result.seconds = time.perf_counter() - began
    return result


# ---------------------------------------------------------------------------- figures out


def machine() -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = None
    with contextlib.suppress(OSError, ValueError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem_gib = round(kb / 1048576, 1)
    revision = _run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=False).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib, "kernel": platform.release(),
            "python": platform.python_version(), "revision": revision,
            "host": "podman + runc container, Debian 12 test-host image, systemd as PID 1"}


def table(columns: list[str], rows: list[dict]) -> str:
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def emit(name: str, title: str, sections: list[dict], *, smoke: bool, method: dict) -> Path:
    """Print each section as a table and write everything as JSON for docs/benchmarks.md.

    A section is {"title", "columns", "rows", "note"?}.
    """
    on_postgresql = ENGINE == "postgresql" and not CLUSTER
    print(f"\n== {title}{' on PostgreSQL' if on_postgresql else ''}{' (smoke run)' if smoke else ''}")
    for section in sections:
        print(f"\n-- {section['title']}")
        print(table(section["columns"], section["rows"]))
        if section.get("note"):
            print(section["note"])
    if on_postgresql:  # beside the SQLite figures in the report, never in their place
        name, title = f"{name}_postgresql", f"{title}, on PostgreSQL"
    record = {"name": name, "title": title, "smoke": smoke, "engine": ENGINE,
              "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
              "machine": machine(), "method": method, "sections": sections}
    path = results_dir() / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwritten: {path}")
    return path


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


if __name__ == "__main__":
    # python bench/benchlib.py destroy: remove the bench's hosts (BENCH_HOST and the others set)
    if sys.argv[1:] != ["destroy"]:
        raise SystemExit("usage: benchlib.py destroy")
    destroy_host()
    print(f"removed {' '.join([HOST_NAME, *other_hosts()])}")
