"""GET /api/openapi.json: the contract, checked against the live app by schemathesis."""

from __future__ import annotations

import unicodedata
from functools import cache

from flask import Blueprint, jsonify

from .. import __version__, validation
from ..models import TASK_PRIORITIES, TASK_STATUSES
from .tasks import SORT_KEYS, STATUS_FILTERS

bp = Blueprint("openapi", __name__)


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str, headers: dict | None = None) -> dict:
    response = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def _error(description: str, headers: dict | None = None) -> dict:
    return _json(_ref("Error"), description, headers)


RETRY_AFTER = {"Retry-After": {"schema": {"type": "string", "pattern": "^[0-9]+$"}, "required": True}}
NO_STORE = {
    "Cache-Control": {"schema": {"type": "string", "const": "no-store"}, "required": True},
    "Pragma": {"schema": {"type": "string", "const": "no-cache"}, "required": True},
}
TEXT = {"type": "string"}
NULLABLE_TEXT = {"type": ["string", "null"]}
TIMESTAMP = {"type": "string", "format": "date-time"}
COMMON_ERRORS = {
    "413": _error("Body over 1 MiB"),
    "503": _error("Database unavailable", RETRY_AFTER),
}
AUTH_ERRORS = {"401": _error("Missing, malformed, expired or revoked token"), **COMMON_ERRORS}
TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}
BEARER = [{"bearerAuth": []}]


def _password(min_length: int, description: str) -> dict:
    return {"type": "string", "minLength": min_length, "maxLength": validation.PASSWORD_MAX,
            "description": description}


NEW_PASSWORD = (f"At least {validation.PASSWORD_MIN} characters; common passwords (the list the app ships, "
                "compared case-insensitively) are refused")


def _credentials(min_username: int, min_password: int, username_pattern: str | None) -> dict:
    username = {"type": "string", "minLength": min_username, "maxLength": 64}
    if username_pattern:
        username["pattern"] = username_pattern
    else:
        username.update(pattern=_printable(), description=NO_CONTROL)
    password = NEW_PASSWORD if min_password > 1 else "Checked against the account; no rules at sign-in"
    return {
        "type": "object",
        "required": ["username", "password"],
        "additionalProperties": False,
        "properties": {"username": username, "password": _password(min_password, password)},
    }


def _tokens_body() -> dict:
    return {
        "type": "object",
        "required": ["access_token", "refresh_token", "token_type", "expires_in", "user"],
        "properties": {
            "access_token": TEXT, "refresh_token": TEXT,
            "token_type": {"const": "Bearer"}, "expires_in": {"type": "integer"},
            "user": _ref("User"),
        },
    }


NO_CONTROL = "Control and format characters (Unicode Cc, Cf, Zl, Zp) are refused"


@cache
def _refused_class(allowed: str = "") -> str:
    """The characters validation.printable() refuses, as the body of a regex class (the
    Basic Multilingual Plane: \\uXXXX reads the same in ECMA-262 and Python patterns).
    Lone surrogates are left out: regex engines refuse them in a class, and a JSON body
    that holds one is refused before any field is looked at."""
    ranges: list[list[int]] = []
    for code in range(0x10000):
        char = chr(code)
        category = unicodedata.category(char)
        if char in allowed or category == "Cs" or category not in validation.FORBIDDEN_CATEGORIES:
            continue
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in ranges)


def _printable(allowed: str = "") -> str:
    return f"^[^{_refused_class(allowed)}]*$"


def _printable_with_text() -> str:
    refused = _refused_class()
    return f"^[^{refused}]*[^\\s{refused}][^{refused}]*$"


def _task_input(require_title: bool) -> dict:
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "title": {"type": "string", "minLength": 1, "maxLength": validation.TITLE_MAX,
                      "pattern": _printable_with_text(), "description": NO_CONTROL},
            "description": {"type": ["string", "null"], "maxLength": validation.DESCRIPTION_MAX,
                            "pattern": _printable("\n\r\t"),
                            "description": f"{NO_CONTROL}, except newline and tab; CR LF and CR are stored as LF"},
            "status": {"type": "string", "enum": list(TASK_STATUSES)},
            "priority": {"type": "string", "enum": list(TASK_PRIORITIES)},
            "due_date": {"type": ["string", "null"], "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
        },
    }
    if require_title:
        schema["required"] = ["title"]
    return schema


def _body(schema: dict, required: bool = True) -> dict:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def document() -> dict:
    task_body_errors = {"400": _error("Invalid JSON or field (the field is named)"), **AUTH_ERRORS}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Task Manager API", "version": __version__},
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {"error": TEXT, "message": TEXT, "field": TEXT},
                },
                "User": {
                    "type": "object",
                    "required": ["id", "username", "created_at"],
                    "additionalProperties": False,
                    "properties": {"id": {"type": "integer"}, "username": TEXT, "created_at": TIMESTAMP},
                },
                "Task": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": [
                        "id", "title", "description", "status", "priority", "due_date",
                        "created_at", "updated_at", "completed_at",
                    ],
                    "properties": {
                        "id": {"type": "integer"},
                        "title": {"type": "string", "minLength": 1, "maxLength": validation.TITLE_MAX},
                        "description": NULLABLE_TEXT,
                        "status": {"type": "string", "enum": list(TASK_STATUSES)},
                        "priority": {"type": "string", "enum": list(TASK_PRIORITIES)},
                        "due_date": {"type": ["string", "null"], "format": "date"},
                        "created_at": TIMESTAMP,
                        "updated_at": TIMESTAMP,
                        "completed_at": {"type": ["string", "null"], "format": "date-time"},
                    },
                },
                "TaskCreate": _task_input(require_title=True),
                "TaskPatch": _task_input(require_title=False),
            },
        },
        "paths": {
            "/health": {
                "get": {
                    "summary": "Health check (service and database)",
                    "description": (
                        "revision, built_at and schema_revision are given to callers on the host (TCP loopback) "
                        "and to callers with a valid access token (optional Bearer), not to anonymous ones "
                        "through the proxy"
                    ),
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["status", "message", "version"],
                                "properties": {
                                    "status": {"const": "OK"}, "message": TEXT, "version": TEXT,
                                    "checks": {"type": "object"}, "schema_revision": NULLABLE_TEXT,
                                    "release": TEXT, "revision": TEXT, "built_at": TEXT,
                                },
                            },
                            "Healthy",
                        ),
                        "503": _json(
                            {"type": "object", "required": ["status", "message"],
                             "properties": {"status": {"const": "ERROR"}, "message": TEXT}},
                            "Database unusable",
                        ),
                    },
                }
            },
            "/api/auth/register": {
                "post": {
                    "summary": "Create an account",
                    "requestBody": _body(_credentials(3, validation.PASSWORD_MIN, r"^[A-Za-z0-9_.-]{3,64}$")),
                    "responses": {
                        "201": _json({"type": "object", "required": ["user"], "properties": {"user": _ref("User")}},
                                     "Created"),
                        "400": _error("Invalid username or password (too short, or a common one)"),
                        "409": _error("Username taken"),
                        "429": _error("Too many registrations from this client; retry after the given seconds",
                                      RETRY_AFTER),
                        **COMMON_ERRORS,
                    },
                }
            },
            "/api/auth/login": {
                "post": {
                    "summary": "Sign in; failures slow down per (account, client) and per client",
                    "requestBody": _body(_credentials(1, 1, None)),
                    "responses": {
                        "200": _json(_tokens_body(), "Signed in", NO_STORE),
                        "400": _error("Invalid body"),
                        "401": _error("Unknown user or wrong password (one message for both)"),
                        "429": _error("Too many failures; retry after the given seconds", RETRY_AFTER),
                        **COMMON_ERRORS,
                    },
                }
            },
            "/api/auth/refresh": {
                "post": {
                    "summary": "New access and refresh tokens (send the refresh token as Bearer)",
                    "description": (
                        "The refresh token is rotated: the one sent is spent. Sending a spent one again ends "
                        "the whole sign-in (every token descended from the same login) with 401 token_revoked"
                    ),
                    "security": BEARER,
                    "responses": {"200": _json(_tokens_body(), "Refreshed", NO_STORE), **AUTH_ERRORS},
                }
            },
            "/api/auth/logout": {
                "post": {
                    "summary": "End the sign-in of the presented token (access or refresh) and of the body's "
                               "refresh token",
                    "description": (
                        "The refresh token alone is enough, as Bearer or in the body; with a refresh token in the "
                        "body, an expired or missing access token is no obstacle"
                    ),
                    "security": BEARER,
                    "requestBody": _body(
                        {"type": "object", "additionalProperties": False,
                         "properties": {"refresh_token": NULLABLE_TEXT}},
                        required=False,
                    ),
                    "responses": {
                        "200": _json({"type": "object", "required": ["message", "revoked"],
                                      "properties": {"message": TEXT, "revoked": {"type": "integer"}}}, "Revoked"),
                        "400": _error("Invalid body or refresh token"),
                        **AUTH_ERRORS,
                    },
                }
            },
            "/api/auth/logout-all": {
                "post": {
                    "summary": "Sign out everywhere: every token of the user stops working (access or refresh "
                               "token as Bearer)",
                    "security": BEARER,
                    "responses": {
                        "200": _json({"type": "object", "required": ["message"], "properties": {"message": TEXT}},
                                     "Signed out everywhere"),
                        **AUTH_ERRORS,
                    },
                }
            },
            "/api/auth/password": {
                "post": {
                    "summary": "Change the password: every other token stops working, the caller gets new ones",
                    "security": BEARER,
                    "requestBody": _body({
                        "type": "object",
                        "required": ["current_password", "new_password"],
                        "additionalProperties": False,
                        "properties": {
                            "current_password": _password(1, "The password now"),
                            "new_password": _password(validation.PASSWORD_MIN, NEW_PASSWORD),
                        },
                    }),
                    "responses": {
                        "200": _json(_tokens_body(), "Changed; new tokens", NO_STORE),
                        "400": _error("Invalid body or new password"),
                        "403": _error("The current password is wrong"),
                        "429": _error("Too many wrong passwords; retry after the given seconds", RETRY_AFTER),
                        **AUTH_ERRORS,
                    },
                }
            },
            "/api/auth/me": {
                "get": {
                    "summary": "The signed-in user",
                    "security": BEARER,
                    "responses": {
                        "200": _json({"type": "object", "required": ["user"], "properties": {"user": _ref("User")}},
                                     "The user"),
                        **AUTH_ERRORS,
                    },
                }
            },
            "/api/tasks": {
                "get": {
                    "summary": "The caller's tasks, filtered, searched, sorted and paged",
                    "security": BEARER,
                    "parameters": [
                        {"name": "status", "in": "query", "schema": {"type": "string", "enum": list(STATUS_FILTERS)}},
                        {"name": "q", "in": "query", "description": NO_CONTROL,
                         "schema": {"type": "string", "maxLength": validation.SEARCH_MAX, "pattern": _printable()}},
                        {"name": "sort", "in": "query", "schema": {
                            "type": "string", "enum": [*SORT_KEYS, *(f"-{k}" for k in SORT_KEYS)]}},
                        {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                        {"name": "per_page", "in": "query",
                         "schema": {"type": "integer", "minimum": 1, "description": "capped at 100"}},
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["tasks", "total", "page", "per_page", "counts"],
                                "properties": {
                                    "tasks": {"type": "array", "items": _ref("Task")},
                                    "total": {"type": "integer"},
                                    "page": {"type": "integer"},
                                    "per_page": {"type": "integer"},
                                    "counts": {
                                        "type": "object",
                                        "properties": {s: {"type": "integer"} for s in TASK_STATUSES},
                                    },
                                },
                            },
                            "A page of tasks",
                        ),
                        "400": _error("Invalid filter, sort or paging parameter"),
                        **AUTH_ERRORS,
                    },
                },
                "post": {
                    "summary": "Create a task",
                    "security": BEARER,
                    "requestBody": _body(_ref("TaskCreate")),
                    "responses": {"201": _json(_ref("Task"), "Created"),
                                  "403": _error("The account holds the most tasks allowed (TASKS_MAX_PER_USER)"),
                                  **task_body_errors},
                },
                "delete": {
                    "summary": "Delete all completed tasks of the caller",
                    "security": BEARER,
                    "parameters": [
                        {"name": "status", "in": "query", "required": True,
                         "schema": {"type": "string", "const": "completed"}},
                    ],
                    "responses": {
                        "200": _json({"type": "object", "required": ["deleted"],
                                      "properties": {"deleted": {"type": "integer"}}}, "Deleted"),
                        "400": _error("status=completed is required"),
                        **AUTH_ERRORS,
                    },
                },
            },
            "/api/tasks/{task_id}": {
                "parameters": [TASK_ID],
                "get": {
                    "summary": "One task",
                    "security": BEARER,
                    "responses": {"200": _json(_ref("Task"), "The task"), "404": _error("No such task of yours"),
                                  **AUTH_ERRORS},
                },
                "put": {
                    "summary": "Replace a task (omitted fields return to their defaults)",
                    "security": BEARER,
                    "requestBody": _body(_ref("TaskCreate")),
                    "responses": {"200": _json(_ref("Task"), "Replaced"), "404": _error("No such task of yours"),
                                  **task_body_errors},
                },
                "patch": {
                    "summary": "Change some fields of a task",
                    "security": BEARER,
                    "requestBody": _body(_ref("TaskPatch")),
                    "responses": {"200": _json(_ref("Task"), "Updated"), "404": _error("No such task of yours"),
                                  **task_body_errors},
                },
                "delete": {
                    "summary": "Delete a task",
                    "security": BEARER,
                    "responses": {"204": {"description": "Deleted"}, "404": _error("No such task of yours"),
                                  **AUTH_ERRORS},
                },
            },
            "/api/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": _json({"type": "object"}, "OpenAPI 3")}}
            },
        },
    }


@bp.get("/api/openapi.json")
def openapi_json():
    return jsonify(document())
