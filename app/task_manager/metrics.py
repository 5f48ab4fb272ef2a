"""The metrics Prometheus scrapes: requests by route template and status, their latency,
failed and throttled sign-ins, tasks created and completed, database errors, the build.

Under gunicorn every worker counts for itself and /metrics must sum them all: the
prometheus-client library's multiprocess mode does that when PROMETHEUS_MULTIPROC_DIR
names a directory before the library is imported (gunicorn_conf.py sets it in the master
and empties it at each start; each worker's files are merged at every scrape, and a dead
worker's are marked so). Without it (the tests, `flask run`) the counters live in the one
process. /metrics is never served by the public site: nginx answers it only on the
metrics port, to the monitoring host and this host (roles/web).
"""

from __future__ import annotations

import os
import time

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from .api.operations import documented
from .extensions import db
from .release import __version__, release_info

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Around the manual's 200 ms limit, so that its p95 is read from buckets that bracket it.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter("task_manager_http_requests", "HTTP requests answered, by route template and status",
                   ["method", "route", "status"])
LATENCY = Histogram("task_manager_http_request_duration_seconds", "Time to answer a request, by route template",
                    ["method", "route"], buckets=LATENCY_BUCKETS)
LOGIN_FAILURES = Counter("task_manager_login_failures", "Failed sign-ins and password checks (認証失敗)", ["action"])
THROTTLED = Counter("task_manager_throttled", "Sign-ins and registrations refused by the per-client limits",
                    ["action"])
# A counter with labels makes nothing until a label set is counted; one without makes its
# value, and in multiprocess mode opens its file under the process's pid, as it is made. The
# gunicorn master imports this module (preloaded, gunicorn_conf.py), so these are made by each
# worker as it creates the app (register() below), never at import.
_UNLABELLED = {
    "TASKS_CREATED": ("task_manager_tasks_created", "Tasks created"),
    "TASKS_COMPLETED": ("task_manager_tasks_completed", "Tasks marked completed"),
    "DATABASE_ERRORS": ("task_manager_database_errors", "Requests answered 503 because the database was unusable"),
}


def _make_unlabelled() -> None:
    for name, (metric, documentation) in _UNLABELLED.items():
        if name not in globals():  # an app made again in the same process (the tests) reuses them
            globals()[name] = Counter(metric, documentation)


bp = Blueprint("metrics", __name__)


def route_of() -> str:
    """The route's template (/api/tasks/<int:task_id>), never the path: a bounded label."""
    rule = request.url_rule
    return rule.rule if rule is not None else "unmatched"


class BuildInfo:
    """task_manager_build_info{version, release, revision, schema_revision} 1, read at each
    scrape: the schema revision is the database's, which an update changes under a live API."""

    def collect(self):
        release = release_info(current_app.config["RELEASE_INFO_FILE"])
        try:
            schema = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar() or ""
        except SQLAlchemyError:
            db.session.rollback()
            schema = ""
        family = GaugeMetricFamily("task_manager_build_info", "The running build and the database's schema",
                                   labels=["version", "release", "revision", "schema_revision"])
        family.add_metric([__version__, release.get("release", ""), release.get("revision", ""), schema], 1)
        yield family


@bp.get("/metrics")
@documented(
    "get", "Prometheus metrics (every worker's), for the monitoring host",
    description=("Prometheus's text format. Never served by the public site: nginx answers it on its metrics port, "
                 "to the monitoring host and this host only"),
    responses={"200": {"description": "The metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}})
def metrics():
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_SingleProcess())
    registry.register(BuildInfo())
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


class _SingleProcess:
    """This process's own metrics (the default registry's), beside the build info."""

    def collect(self):
        yield from REGISTRY.collect()


def register(app: Flask) -> None:
    # Made even when nothing is served (the handlers count), and each at 0 from the start:
    # rate() misses a counter's first 1.
    _make_unlabelled()
    if not app.config["METRICS_ENABLED"]:
        return  # no endpoint (404) and nothing counted per request
    app.register_blueprint(bp)

    @app.after_request
    def count_request(response):
        started = g.get("request_started")
        if request.path == "/metrics" or started is None:
            return response  # a scrape is not traffic
        method = request.method if request.method in METHODS else "OTHER"
        route = route_of()
        REQUESTS.labels(method, route, str(response.status_code)).inc()
        LATENCY.labels(method, route).observe(time.perf_counter() - started)
        return response
