"""The Prometheus metrics (task_manager/metrics.py): what each counter counts, on both
engines, and every gunicorn worker counted once in one answer (multiprocess mode)."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from task_manager import create_app
from task_manager.config import ConfigError
from tests.conftest import Api, make_config
from tests.livesrv import live_server


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, ((label, value), ...)): value} of a /metrics answer."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape(client) -> dict[tuple, float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return samples(response.get_data(as_text=True))


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


REQUESTS = "task_manager_http_requests_total"


def test_requests_are_counted_by_route_template_and_status(client):
    api = Api(client)
    task = api.post("/api/tasks", json={"title": "counted"}).get_json()
    before = scrape(client)
    for _ in range(3):
        assert api.get(f"/api/tasks/{task['id']}").status_code == 200
    assert api.get("/api/tasks/999999").status_code == 404
    assert client.get("/no/such/thing/4711").status_code == 404
    after = scrape(client)
    route = "/api/tasks/<int:task_id>"
    assert value(after, REQUESTS, method="GET", route=route, status="200") - \
        value(before, REQUESTS, method="GET", route=route, status="200") == 3
    assert value(after, REQUESTS, method="GET", route=route, status="404") - \
        value(before, REQUESTS, method="GET", route=route, status="404") == 1
    # A path no route knows is one label, whatever the path: the series stay bounded.
    assert value(after, REQUESTS, method="GET", route="unmatched", status="404") - \
        value(before, REQUESTS, method="GET", route="unmatched", status="404") == 1
    assert not [key for key in after if "4711" in str(key) or "999999" in str(key)]
    # The latency histogram has a bucket at the manual's 200 ms, and counts the same requests.
    histogram = "task_manager_http_request_duration_seconds"
    assert value(after, f"{histogram}_count", method="GET", route=route) - \
        value(before, f"{histogram}_count", method="GET", route=route) == 4
    assert (f"{histogram}_bucket", (("le", "0.2"), ("method", "GET"), ("route", route))) in after
    # Scrapes are not traffic.
    assert value(after, REQUESTS, method="GET", route="/metrics", status="200") == 0


def test_failed_and_throttled_sign_ins_are_counted(client, app_with):
    Api(client, "bob")
    before = scrape(client)
    assert client.post("/api/auth/login", json={"username": "bob", "password": "not the password"}).status_code == 401
    assert client.post("/api/auth/login", json={"username": "nobody", "password": "whatever it is"}).status_code == 401
    after = scrape(client)
    name = "task_manager_login_failures_total"
    assert value(after, name, action="login") - value(before, name, action="login") == 2

    strict = app_with(LOGIN_FREE_FAILURES_PER_ACCOUNT=1, LOGIN_FREE_FAILURES_PER_CLIENT=1).test_client()
    before = scrape(strict)
    statuses = [strict.post("/api/auth/login", json={"username": "bob", "password": "wrong again"}).status_code
                for _ in range(3)]
    after = scrape(strict)
    assert 429 in statuses
    throttled = "task_manager_throttled_total"
    assert value(after, throttled, action="login") - value(before, throttled, action="login") == statuses.count(429)


def test_metrics_turned_off_serve_no_endpoint_and_count_nothing(app_with):
    off = app_with(METRICS_ENABLED=False).test_client()
    before = sum(REGISTRY.get_sample_value(REQUESTS, {"method": "GET", "route": "/health", "status": s}) or 0
                 for s in ("200", "503"))
    assert off.get("/health").status_code in (200, 503)
    after = sum(REGISTRY.get_sample_value(REQUESTS, {"method": "GET", "route": "/health", "status": s}) or 0
                for s in ("200", "503"))
    assert after == before
    answer = off.get("/metrics")
    assert answer.status_code == 404 and answer.is_json


def test_a_metrics_switch_that_is_not_a_boolean_is_refused(app_with):
    with pytest.raises(ConfigError, match="METRICS_ENABLED must be true or false"):
        app_with(METRICS_ENABLED="no")


def test_tasks_created_and_completed_are_counted_once(client):
    api = Api(client)
    before = scrape(client)
    task = api.post("/api/tasks", json={"title": "to finish"}).get_json()
    api.post("/api/tasks", json={"title": "born done", "status": "completed"})
    assert api.client.patch(f"/api/tasks/{task['id']}", json={"status": "completed"},
                            headers=api.headers()).status_code == 200
    # Completed again: no new completion.
    assert api.client.patch(f"/api/tasks/{task['id']}", json={"status": "completed"},
                            headers=api.headers()).status_code == 200
    assert api.post("/api/tasks", json={"title": ""}).status_code == 400  # refused: not created
    after = scrape(client)
    assert value(after, "task_manager_tasks_created_total") - value(before, "task_manager_tasks_created_total") == 2
    assert value(after, "task_manager_tasks_completed_total") - \
        value(before, "task_manager_tasks_completed_total") == 2


def test_build_info_names_the_version_and_the_schema_revision(client, engine):
    found = scrape(client)
    info = [dict(labels) for (name, labels), v in found.items() if name == "task_manager_build_info" and v == 1]
    assert len(info) == 1
    health = client.get("/health").get_json()
    assert info[0]["version"] == health["version"]
    assert info[0]["schema_revision"] == health["schema_revision"] != ""


@pytest.mark.sqlite_only
@pytest.mark.usefixtures("engine")
def test_a_database_error_is_counted(tmp_path):
    db_file = tmp_path / "instance" / "task_manager.db"
    db_file.parent.mkdir(parents=True)
    db_file.write_bytes(b"this is not a database" * 100)
    broken = create_app(make_config(tmp_path)).test_client()
    before = scrape(broken)
    assert broken.get("/health").status_code == 503
    after = scrape(broken)
    name = "task_manager_database_errors_total"
    assert value(after, name) - value(before, name) == 1


def _scrape_url(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        return samples(response.read().decode())


def _schema(url: str) -> None:
    with urllib.request.urlopen(f"{url}/api/openapi.json", timeout=10) as response:
        assert response.status == 200


@pytest.mark.sqlite_only
def test_every_gunicorn_worker_is_counted_once_and_a_restart_starts_from_zero(tmp_path, engine):
    # Each worker is replaced after 5 requests: 30 requests are answered by at least six
    # processes, and /metrics (answered by any one of them) must hold all 30. They go to a
    # route the start's readiness polls never call: a poll that timed out on a loaded machine
    # is still answered later, and would be counted in the middle of the test.
    env = {"TASK_MANAGER_METRICS_DIR": str(tmp_path / "metrics"), "TASK_MANAGER_MAX_REQUESTS": "5"}
    schema = (REQUESTS, (("method", "GET"), ("route", "/api/openapi.json"), ("status", "200")))
    with live_server(tmp_path, workers=2, extra_env=env) as url:
        before = _scrape_url(url)
        # The counters without labels are made by each worker as it starts (the master, which
        # imports the module, makes none): at 0 before anything is counted, never absent.
        for name in ("task_manager_tasks_created_total", "task_manager_tasks_completed_total",
                     "task_manager_database_errors_total"):
            assert before[(name, ())] == 0.0, name
        assert schema not in before
        for _ in range(30):
            _schema(url)
        assert _scrape_url(url)[schema] == 30
        assert len(list((tmp_path / "metrics").glob("counter_*.db"))) >= 6
    with live_server(tmp_path, workers=2, extra_env=env) as url:
        # Nothing of the earlier 30 is left: the new server counts from zero.
        assert schema not in _scrape_url(url)
        for _ in range(5):
            _schema(url)
        assert _scrape_url(url)[schema] == 5
