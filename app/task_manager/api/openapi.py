"""GET /api/openapi.json: the contract, checked against the live app by schemathesis.

Every body and query parameter here is generated from the declarations in schemas.py, the
same classes that check the requests and write the responses. What is written by hand is
what no field rule says: the paths, their summaries, the statuses each may answer and the
headers (Retry-After, no-store).
"""

from __future__ import annotations

from functools import cache

from flask import Blueprint, jsonify
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .. import __version__, schemas

bp = Blueprint("openapi", __name__)

REF = "#/components/schemas/{model}"
# The bodies a request carries (schemas in their validation mode), and those a response
# does (serialization mode). Each class is in one list only, so each has one schema.
REQUEST_BODIES = (
    schemas.Registration, schemas.Login, schemas.PasswordChange, schemas.Logout, schemas.TaskCreate, schemas.TaskPatch,
)
RESPONSE_BODIES = (
    schemas.Error, schemas.User, schemas.Task, schemas.TaskPage, schemas.UserReply, schemas.Tokens, schemas.Deleted,
    schemas.Message, schemas.LogoutReply, schemas.Health, schemas.HealthDown,
)


def _tidy(schema):
    """Drop the titles pydantic gives every schema ("Title", "TaskCreate"): they only repeat
    names. A property that is called title holds a schema, never a string, and stays."""
    if isinstance(schema, dict):
        return {k: _tidy(v) for k, v in schema.items() if not (k == "title" and isinstance(v, str))}
    if isinstance(schema, list):
        return [_tidy(item) for item in schema]
    return schema


@cache
def _components() -> dict:
    models = [(m, "validation") for m in REQUEST_BODIES] + [(m, "serialization") for m in RESPONSE_BODIES]
    _, top = models_json_schema(models, ref_template=REF)
    return _tidy(top["$defs"])


def _query_parameters(model: type[BaseModel]) -> list[dict]:
    schema = _tidy(model.model_json_schema())
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema["properties"].items():
        parameter = {"name": name, "in": "query", "required": name in required}
        if "description" in prop:
            parameter["description"] = prop.pop("description")
        parameters.append({**parameter, "schema": prop})
    return parameters


def _ref(model: type[BaseModel]) -> dict:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model: type[BaseModel] | dict, description: str, headers: dict | None = None) -> dict:
    schema = model if isinstance(model, dict) else _ref(model)
    response = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def _error(description: str, headers: dict | None = None) -> dict:
    return _json(schemas.Error, description, headers)


def _body(model: type[BaseModel], required: bool = True) -> dict:
    return {"required": required, "content": {"application/json": {"schema": _ref(model)}}}


RETRY_AFTER = {"Retry-After": {"schema": {"type": "string", "pattern": "^[0-9]+$"}, "required": True}}
NO_STORE = {
    "Cache-Control": {"schema": {"type": "string", "const": "no-store"}, "required": True},
    "Pragma": {"schema": {"type": "string", "const": "no-cache"}, "required": True},
}
COMMON_ERRORS = {
    "413": _error("Body over 1 MiB"),
    "503": _error("Database unavailable", RETRY_AFTER),
}
AUTH_ERRORS = {"401": _error("Missing, malformed, expired or revoked token"), **COMMON_ERRORS}
TASK_BODY_ERRORS = {"400": _error("Invalid JSON or field (the field is named)"), **AUTH_ERRORS}
NOT_YOURS = {"404": _error("No such task of yours")}
STORAGE_QUOTA = {"403": _error("The task's text would take the account past its storage quota (STORAGE_QUOTA_BYTES)")}
TOO_MANY_WRITES = {"429": _error("The account's task writes this minute passed TASK_WRITES_PER_MINUTE; retry after the "
                                 "given seconds", RETRY_AFTER)}
# The path's task id is Flask's int converter, no field of a body.
TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}
BEARER = [{"bearerAuth": []}]


@cache
def document() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Task Manager API", "version": __version__},
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": _components(),
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
                    "responses": {"200": _json(schemas.Health, "Healthy"),
                                  "503": _json(schemas.HealthDown, "Database unusable")},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (every worker's), for the monitoring host",
                    "description": (
                        "Prometheus's text format. Never served by the public site: nginx answers it on its "
                        "metrics port, to the monitoring host and this host only"
                    ),
                    "responses": {"200": {"description": "The metrics",
                                          "content": {"text/plain": {"schema": {"type": "string"}}}}},
                }
            },
            "/api/auth/register": {
                "post": {
                    "summary": "Create an account",
                    "requestBody": _body(schemas.Registration),
                    "responses": {
                        "201": _json(schemas.UserReply, "Created"),
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
                    "requestBody": _body(schemas.Login),
                    "responses": {
                        "200": _json(schemas.Tokens, "Signed in", NO_STORE),
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
                    "responses": {"200": _json(schemas.Tokens, "Refreshed", NO_STORE), **AUTH_ERRORS},
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
                    "requestBody": _body(schemas.Logout, required=False),
                    "responses": {
                        "200": _json(schemas.LogoutReply, "Revoked"),
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
                    "responses": {"200": _json(schemas.Message, "Signed out everywhere"), **AUTH_ERRORS},
                }
            },
            "/api/auth/password": {
                "post": {
                    "summary": "Change the password: every other token stops working, the caller gets new ones",
                    "security": BEARER,
                    "requestBody": _body(schemas.PasswordChange),
                    "responses": {
                        "200": _json(schemas.Tokens, "Changed; new tokens", NO_STORE),
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
                    "responses": {"200": _json(schemas.UserReply, "The user"), **AUTH_ERRORS},
                }
            },
            "/api/tasks": {
                "get": {
                    "summary": "The caller's tasks, filtered, searched, sorted and paged",
                    "security": BEARER,
                    "parameters": _query_parameters(schemas.TaskQuery),
                    "responses": {
                        "200": _json(schemas.TaskPage, "A page of tasks"),
                        "400": _error("Invalid filter, sort or paging parameter"),
                        **AUTH_ERRORS,
                    },
                },
                "post": {
                    "summary": "Create a task",
                    "security": BEARER,
                    "requestBody": _body(schemas.TaskCreate),
                    "responses": {"201": _json(schemas.Task, "Created"),
                                  "403": _error("The account holds the most tasks allowed (TASKS_MAX_PER_USER), "
                                                "or their text would pass its storage quota (STORAGE_QUOTA_BYTES)"),
                                  **TOO_MANY_WRITES, **TASK_BODY_ERRORS},
                },
                "delete": {
                    "summary": "Delete all completed tasks of the caller",
                    "security": BEARER,
                    "parameters": _query_parameters(schemas.ClearQuery),
                    "responses": {
                        "200": _json(schemas.Deleted, "Deleted"),
                        "400": _error("status=completed is required"),
                        **TOO_MANY_WRITES,
                        **AUTH_ERRORS,
                    },
                },
            },
            "/api/tasks/{task_id}": {
                "parameters": [TASK_ID],
                "get": {
                    "summary": "One task",
                    "security": BEARER,
                    "responses": {"200": _json(schemas.Task, "The task"), **NOT_YOURS, **AUTH_ERRORS},
                },
                "put": {
                    "summary": "Replace a task (omitted fields return to their defaults)",
                    "security": BEARER,
                    "requestBody": _body(schemas.TaskCreate),
                    "responses": {"200": _json(schemas.Task, "Replaced"), **NOT_YOURS, **STORAGE_QUOTA,
                                  **TOO_MANY_WRITES, **TASK_BODY_ERRORS},
                },
                "patch": {
                    "summary": "Change some fields of a task",
                    "security": BEARER,
                    "requestBody": _body(schemas.TaskPatch),
                    "responses": {"200": _json(schemas.Task, "Updated"), **NOT_YOURS, **STORAGE_QUOTA,
                                  **TOO_MANY_WRITES, **TASK_BODY_ERRORS},
                },
                "delete": {
                    "summary": "Delete a task",
                    "security": BEARER,
                    "responses": {"204": {"description": "Deleted"}, **NOT_YOURS, **TOO_MANY_WRITES, **AUTH_ERRORS},
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
