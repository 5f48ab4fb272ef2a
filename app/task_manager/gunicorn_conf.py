"""Gunicorn settings for production: `gunicorn -c python:task_manager.gunicorn_conf task_manager.wsgi:app`.

Each setting can be overridden from the environment (the systemd unit's
EnvironmentFile), so operators tune workers without editing the release.
"""

import contextlib
import gc
import importlib
import multiprocessing
import os
from pathlib import Path


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


bind = os.environ.get("TASK_MANAGER_BIND", "127.0.0.1:5000")
# SQLite has one writer at a time; a few workers serve reads well without piling up on the lock.
# A request here works the CPU nearly all its time (the database is a local file, or a pool's
# connection already open), so a worker per CPU and one more to cover a moment's wait keeps
# every CPU busy; twice the CPUs only queued the same work in more processes, each holding its
# own memory (measured on 2 CPUs, 3 workers against 4: the same requests/s, a lower p99, about
# 30 MB less: docs/benchmarks.md).
# On PostgreSQL each worker keeps its own pool (TASK_MANAGER_DATABASE_POOL_SIZE, plus
# _OVERFLOW at a peak): workers x (size + overflow) must stay below the server's max_connections.
workers = _env_int("TASK_MANAGER_WORKERS", min(4, multiprocessing.cpu_count() + 1))
# Never preload the app: each worker creates it (its engine, its pool) after the fork, so no
# database connection (nor a pool holding one) is ever made in the master and inherited,
# shared, by several workers; the master imports the app's modules only (PRELOADED below),
# which open nothing. create_app() opens no connection either (tests/test_pool.py), so this
# is a second fence.
preload_app = False
threads = _env_int("TASK_MANAGER_THREADS", 1)
timeout = _env_int("TASK_MANAGER_TIMEOUT", 30)
# On SIGTERM, workers get this long to finish the requests they are serving.
graceful_timeout = _env_int("TASK_MANAGER_GRACEFUL_TIMEOUT", 30)
keepalive = 5
max_requests = _env_int("TASK_MANAGER_MAX_REQUESTS", 2000)
max_requests_jitter = max_requests // 10
# The app writes logs/access.log itself; gunicorn's own messages go to the journal.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("TASK_MANAGER_GUNICORN_LOGLEVEL", "info")
# gunicorn itself believes no forwarding header from anyone: TCP peers are trusted by no
# address, and with no scheme or forwarder headers to take there is nothing to take from
# unix-socket peers either (gunicorn trusts those unconditionally). The app alone decides,
# and only for nginx's unix socket (task_manager/proxy.py).
forwarded_allow_ips = ""
secure_scheme_headers = {}
forwarder_headers = ""
proc_name = "task-manager"
# gunicorn's runtime control socket: nothing here uses it, and the service may not
# write where it would go (shared/ belongs to root).
control_socket_disable = True


def post_fork(server, worker):
    """A worker dies with its master: if the master is killed outright, no orphan
    worker lingers serving old code, and systemd sees the service stop at once."""
    import ctypes  # noqa: PLC0415
    import signal  # noqa: PLC0415

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


# The metrics every worker counts (task_manager/metrics.py), merged at each scrape. Only
# gunicorn's processes count this way: the directory is handed to prometheus-client here,
# in the master before any worker imports it, never to the task-manager commands (they run
# when the service and its runtime directory may not). It starts empty, so no count
# survives a restart under another worker's pid, and an exited worker is marked dead.
METRICS_DIR = os.environ.get("TASK_MANAGER_METRICS_DIR", "")
if METRICS_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = METRICS_DIR


# Shared, not copied into each worker: the libraries and the app's own modules are imported in
# the master once, before the workers are forked, and the garbage collector is told to leave
# them alone (gc.freeze), so that it does not write to their pages and make each worker copy
# them (CPython's reference counts still do, for what a worker uses; the rest stays shared).
# The app itself is not made here: each worker still creates it after the fork (preload_app
# above), and nothing imported here opens a connection or makes a metric's file
# (task_manager.metrics makes its unlabelled counters in the workers). It is why a release
# switch restarts the service (update.yml does): a reload (HUP) would start new workers on the
# modules the master holds, the old release's.
PRELOADED = (
    "flask", "werkzeug", "jwt", "flask_jwt_extended", "flask_cors", "flask_migrate", "flask_migrate.cli",
    "flask_sqlalchemy", "flask_sqlalchemy.cli", "sqlalchemy.orm", "sqlalchemy.dialects.sqlite", "pydantic",
    "pydantic.type_adapter", "prometheus_client", "prometheus_client.multiprocess", "orjson", "logging.handlers",
    "task_manager.schemas", "task_manager.models", "task_manager.api.auth", "task_manager.api.health",
    "task_manager.api.openapi", "task_manager.api.tasks", "task_manager.cli", "task_manager.requestlog",
)
# Installed with PostgreSQL's extra only.
PRELOADED_IF_INSTALLED = ("psycopg", "psycopg_pool")


def when_ready(server):
    for name in PRELOADED:
        importlib.import_module(name)
    for name in PRELOADED_IF_INSTALLED:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    gc.freeze()


def on_starting(server):
    if METRICS_DIR:
        directory = Path(METRICS_DIR)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink(missing_ok=True)


def child_exit(server, worker):
    if METRICS_DIR:
        from prometheus_client import multiprocess  # noqa: PLC0415  (the master never counts)

        multiprocess.mark_process_dead(worker.pid)
