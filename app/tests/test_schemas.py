"""The declarations in schemas.py: one rule checks a field, writes it and documents it."""

import re
from datetime import UTC, date, datetime, timedelta, timezone
from types import SimpleNamespace
from urllib.parse import quote

import pytest
from flask import jsonify

from task_manager import schemas
from task_manager.extensions import db
from task_manager.models import Task
from tests.conftest import PASSWORD

# Every message the API gave before the rules were declared once, word for word: the board
# shows them as they are (e2e/test_board.py reads one).
TASK_MESSAGES = [
    ({}, "title: 必須です"),
    ({"title": 5}, "title: 文字列で指定してください"),
    ({"title": "  "}, "title: 1〜200文字で入力してください"),
    ({"title": "x" * 201}, "title: 1〜200文字で入力してください"),
    ({"title": "a\x1bb"}, "title: 制御文字・書式文字 (U+001B) は使用できません"),
    ({"title": "t", "description": ["x"]}, "description: 文字列または null で指定してください"),
    ({"title": "t", "description": "x" * 5001}, "description: 5000文字以内で入力してください"),
    ({"title": "t", "description": "a\u202eb"}, "description: 制御文字・書式文字 (U+202E) は使用できません"),
    ({"title": "t", "priority": "urgent"}, "priority: low / medium / high のいずれかを指定してください"),
    ({"title": "t", "priority": None}, "priority: low / medium / high のいずれかを指定してください"),
    ({"title": "t", "status": "done"}, "status: pending / in_progress / completed のいずれかを指定してください"),
    ({"title": "t", "due_date": "tomorrow"}, "due_date: YYYY-MM-DD 形式の日付または null で指定してください"),
    ({"title": "t", "due_date": 20240101}, "due_date: YYYY-MM-DD 形式の日付または null で指定してください"),
    ({"title": "t", "due_date": "2024-02-30"}, "due_date: 存在しない日付です"),
    ({"title": 5, "owner": 2}, "owner: 不明なフィールドです"),  # an unknown field is named before any other fault
    ({"title": "", "status": "done"}, "title: 1〜200文字で入力してください"),  # then the fields in their order
]


@pytest.mark.parametrize(("body", "message"), TASK_MESSAGES)
def test_task_faults_keep_their_messages(api, body, message):
    response = api.post("/api/tasks", json=body)
    assert response.status_code == 400
    assert response.get_json() == {"error": "validation_error", "message": message, "field": message.split(":")[0]}


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/api/auth/register", {"username": "ab", "password": PASSWORD},
         "username: 3〜64文字の英数字と _ . - で指定してください"),
        ("/api/auth/register", {"username": 123, "password": PASSWORD}, "username: 文字列で指定してください"),
        ("/api/auth/register", {"password": PASSWORD}, "username: 必須です"),
        ("/api/auth/register", {"username": "alice", "password": "short"}, "password: 12文字以上で指定してください"),
        ("/api/auth/register", {"username": "alice", "password": "x" * 257}, "password: 256文字以内で指定してください"),
        ("/api/auth/register", {"username": "alice", "password": "123qweasdzxc"},
         "password: よく使われているパスワードです。推測されにくいものにしてください"),
        ("/api/auth/register", {"username": "alice", "password": None}, "password: 文字列で指定してください"),
        ("/api/auth/login", {"username": "", "password": "p"}, "username: 1〜64文字で指定してください"),
        ("/api/auth/login", {"username": "a\u2028", "password": "p"},
         "username: 制御文字・書式文字 (U+2028) は使用できません"),
        ("/api/auth/login", {"username": "alice", "password": "x" * 257}, "password: 256文字以内で指定してください"),
        ("/api/auth/login", {"username": "alice", "password": "p", "remember": True}, "remember: 不明なフィールドです"),
    ],
)
def test_account_faults_keep_their_messages(client, path, body, message):
    response = client.post(path, json=body)
    assert response.status_code == 400
    assert response.get_json() == {"error": "validation_error", "message": message, "field": message.split(":")[0]}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=done", "status: pending / in_progress / completed / active のいずれかを指定してください"),
        ("sort=owner", "sort: created_at, due_date, priority, title (降順は先頭に -) のいずれかを指定してください"),
        ("q=" + "x" * 201, "q: 200文字以内で指定してください"),
        ("q=" + quote("\x1b[31m"), "q: 制御文字・書式文字 (U+001B) は使用できません"),
        ("page=0", "page: 1 以上で指定してください"),
        ("page=abc", "page: 正の整数で指定してください"),
        ("per_page=1234567890", "per_page: 正の整数で指定してください"),
    ],
)
def test_list_parameter_faults_keep_their_messages(api, query, message):
    response = api.get(f"/api/tasks?{query}")
    assert response.status_code == 400
    assert response.get_json()["message"] == message


def test_list_treats_empty_parameters_as_left_out(api):
    api.task(title="one")
    body = api.get("/api/tasks?status=&sort=&q=&page=&per_page=&unknown=1").get_json()
    assert (body["total"], body["page"], body["per_page"]) == (1, 1, 20)
    assert api.get("/api/tasks?q=%20%20").get_json()["total"] == 1  # blank search: no filter


@pytest.mark.parametrize("query", ["", "?status=", "?status=active"])
def test_clearing_needs_status_completed(api, query):
    response = api.delete(f"/api/tasks{query}")
    assert response.status_code == 400
    assert response.get_json()["message"] == "status: 一括削除は status=completed のみ指定できます"


def test_patch_changes_only_what_it_names_and_refuses_null_for_a_required_field(api):
    task = api.task(title="t", description="d", priority="high", due_date="2030-01-01", status="in_progress")
    url = f"/api/tasks/{task['id']}"
    assert api.patch(url, json={"title": None}).get_json()["message"] == "title: 文字列で指定してください"
    assert api.patch(url, json={"status": None}).get_json()["field"] == "status"
    cleared = api.patch(url, json={"description": None, "due_date": None}).get_json()
    assert (cleared["description"], cleared["due_date"]) == (None, None)
    assert (cleared["title"], cleared["priority"], cleared["status"]) == ("t", "high", "in_progress")
    assert api.put(url, json={"title": "t", "priority": None}).status_code == 400


def test_read_only_fields_are_ignored_but_unknown_ones_refused(api):
    task = api.task()
    url = f"/api/tasks/{task['id']}"
    moved = api.patch(url, json={"id": 1, "created_at": "1999-01-01T00:00:00Z", "completed_at": "x"}).get_json()
    assert (moved["id"], moved["created_at"], moved["completed_at"]) == (task["id"], task["created_at"], None)
    assert {"id", "created_at", "updated_at", "completed_at"} == schemas.TASK_READ_ONLY
    assert api.patch(url, json={"id": 1, "user_id": 2}).get_json()["field"] == "user_id"


def test_logout_body_refresh_token_must_be_a_string(api):
    response = api.post("/api/auth/logout", json={"refresh_token": 5})
    assert response.status_code == 400
    assert response.get_json()["field"] == "refresh_token"


def test_replies_are_the_bytes_jsonify_wrote(app):
    """reply() writes with pydantic's serializer what to_dict() + jsonify wrote: same keys in
    the same order, the same times (UTC with Z), no ASCII escapes, a final newline."""
    created = datetime(2025, 3, 1, 9, 30, 0, 120)
    row = SimpleNamespace(id=7, title="説明 ✓ \"quoted\" \\ back", description="one\n\ttwo", status="completed",
                          priority="high", due_date=date(2030, 1, 31), created_at=created,
                          updated_at=datetime(2025, 3, 1, 10, 0, tzinfo=timezone(timedelta(hours=9))),
                          completed_at=created)
    before = {"id": 7, "title": row.title, "description": "one\n\ttwo", "status": "completed", "priority": "high",
              "due_date": "2030-01-31", "created_at": "2025-03-01T09:30:00.000120Z",
              "updated_at": "2025-03-01T01:00:00Z", "completed_at": "2025-03-01T09:30:00.000120Z"}
    counts = {"pending": 0, "in_progress": 0, "completed": 1}
    with app.test_request_context():
        new = schemas.reply(schemas.TaskPage, {"tasks": [row], "total": 1, "page": 1, "per_page": 20, "counts": counts})
        old = jsonify(tasks=[before], total=1, page=1, per_page=20, counts=counts)
        assert new.get_data() == old.get_data()
        assert new.mimetype == old.mimetype == "application/json"
        user = SimpleNamespace(id=1, username="alice", created_at=datetime(2025, 1, 1, tzinfo=UTC))
        assert schemas.reply(schemas.UserReply, {"user": user}, 201).status_code == 201


def _page_reply(app, rows, **page) -> bytes:
    with app.test_request_context():
        return schemas.reply(schemas.TaskPage, {"tasks": rows, **page}).get_data()


def test_the_task_list_writer_writes_the_bytes_reply_writes(app):
    """task_page_json() skips reading the rows through TaskPage: it must write what reply()
    does, for every kind of value a column holds (the keys from TASK_FIELDS, in order)."""
    rows = [
        (7, "説明 ✓ \"quoted\" \\ back </script>", "one\n\ttwo\r\x7f \u2028 \U0001f600", "completed", "high",
         date(2030, 1, 31), datetime(2025, 3, 1, 9, 30, 0, 120), datetime(2025, 3, 1, 10, 0),
         datetime(2025, 3, 1, 9, 30, 0, 120)),
        (8, "x" * 200, None, "pending", "low", None, datetime(2025, 12, 31, 23, 59, 59, 999999),
         datetime(2025, 12, 31, 23, 59, 59, 999999), None),
        # What only a row written beside the API can hold: every other control character, year 1.
        (9, "\x00\x0b\x1f", "\x08\x0c\x1b", "in_progress", "medium", date(1, 1, 1), datetime(1, 1, 1),
         datetime(2025, 1, 1), None),
    ]
    page = {"total": 9, "page": 2, "per_page": 2, "counts": {"pending": 5, "in_progress": 3, "completed": 1}}
    as_objects = [SimpleNamespace(**dict(zip(schemas.TASK_FIELDS, row, strict=True))) for row in rows]
    assert schemas.task_page_json(rows, **page) == _page_reply(app, as_objects, **page)
    assert schemas.task_page_json([], **page) == _page_reply(app, [], **page)
    with app.test_request_context():
        for row, task in zip(rows, as_objects, strict=True):
            assert schemas.task_json(row) == schemas.reply(schemas.Task, task).get_data()


def test_a_task_s_reply_is_the_bytes_reply_wrote_from_the_task(app, api):
    """Through the API on each engine: what a create, a read and each kind of write answer
    is what reply(Task) writes from the same task loaded as a model."""
    path = "/api/tasks"
    requests = [("post", {"title": "説明 \"one\"", "description": "line\n\tnext", "due_date": "2030-01-31",
                          "priority": "low"}, 201),
                ("get", None, 200), ("patch", {"status": "completed"}, 200),
                ("put", {"title": "back\\slash", "status": "completed"}, 200)]
    for method, body, status in requests:
        response = getattr(api, method)(path, **({} if body is None else {"json": body}))
        assert (response.status_code, response.mimetype) == (status, "application/json"), method
        path = f"/api/tasks/{response.get_json()['id']}"
        with app.app_context():
            expected = _task_reply(app, db.session.get(Task, response.get_json()["id"]))
        assert response.get_data() == expected, method


def _task_reply(app, task) -> bytes:
    with app.test_request_context():
        return schemas.reply(schemas.Task, task).get_data()


@pytest.mark.parametrize("query", ["", "?per_page=3&page=2", "?sort=title&status=active", "?sort=-due_date",
                                   "?q=%E8%AA%AC&sort=priority"])
def test_the_task_list_is_the_bytes_reply_wrote_from_the_tasks(app, api, query):
    """Through the API on each engine: the page is what reply(TaskPage) writes from the same
    tasks loaded as models."""
    for n, (title, description, due) in enumerate([
        ("説明 \"one\"", "line\n\tnext", "2030-01-31"), ("back\\slash", None, None), ("Zeta", "説明", "2029-12-01"),
        ("alpha", "", None), ("Beta", "b", "2031-06-30"),
    ]):
        task = api.post("/api/tasks", json={"title": title, "description": description, "due_date": due,
                                             "priority": ("low", "medium", "high")[n % 3]}).get_json()
        if n % 2:
            api.patch(f"/api/tasks/{task['id']}", json={"status": "completed"})
    response = api.get(f"/api/tasks{query}")
    assert response.status_code == 200 and response.mimetype == "application/json"
    listed = response.get_json()
    with app.app_context():
        tasks = {task.id: task for task in Task.query.all()}
        expected = _page_reply(app, [tasks[task["id"]] for task in listed["tasks"]],
                               **{key: listed[key] for key in ("total", "page", "per_page", "counts")})
    assert listed["tasks"] and response.get_data() == expected


def _document(client) -> dict:
    return client.get("/api/openapi.json").get_json()


def test_the_document_states_the_declared_limits(client):
    components = _document(client)["components"]["schemas"]
    create = components["TaskCreate"]
    assert create["required"] == ["title"] and create["additionalProperties"] is False
    assert create["properties"]["title"]["maxLength"] == schemas.TITLE_MAX
    assert create["properties"]["description"]["anyOf"][0]["maxLength"] == schemas.DESCRIPTION_MAX
    assert create["properties"]["status"]["enum"] == list(schemas.TASK_STATUSES)
    assert create["properties"]["priority"]["enum"] == list(schemas.TASK_PRIORITIES)
    assert "required" not in components["TaskPatch"]
    assert all("default" not in p for p in components["TaskPatch"]["properties"].values())
    registration = components["Registration"]["properties"]
    assert registration["password"]["minLength"] == schemas.PASSWORD_MIN
    assert registration["username"]["maxLength"] == schemas.USERNAME_MAX
    assert set(components["Task"]["required"]) == set(schemas.Task.model_fields)
    assert components["Error"]["required"] == ["error", "message"]


def _agrees(pattern: str, rule: schemas.Text, sample: str) -> None:
    compiled = re.compile(pattern)
    for code in range(0x10000):
        char = chr(code)
        if 0xD800 <= code <= 0xDFFF:
            continue  # lone surrogates: refused with the whole body, before any field
        value = sample.replace("|", char)
        try:
            rule.check(value, nullable=False)
            accepted = True
        except Exception:
            accepted = False
        assert (compiled.fullmatch(value) is not None) == accepted, (hex(code), pattern[:80])


def test_the_documented_patterns_refuse_exactly_what_the_rules_refuse(client):
    """Every character of the Basic Multilingual Plane: the pattern in the document, read by
    Python's re (which reads \\uXXXX as ECMA-262 does), and the check agree."""
    components = _document(client)["components"]["schemas"]
    title = components["TaskCreate"]["properties"]["title"]["pattern"]
    description = components["TaskCreate"]["properties"]["description"]["anyOf"][0]["pattern"]
    fields = schemas.TaskCreate.model_fields
    _agrees(title, fields["title"].metadata[0], "a|b")
    _agrees(description, fields["description"].metadata[0], "a|b")
