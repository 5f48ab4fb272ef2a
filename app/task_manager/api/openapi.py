"""GET /api/openapi.json: the contract, checked against the live app by schemathesis.

The paths come from the app's own routes, each operation as its view declares it
(@documented, api/operations.py); the components from the pydantic classes in schemas.py,
the same ones that check the requests and write the replies.
"""

from __future__ import annotations

from functools import cache

from flask import Blueprint, current_app, jsonify
from pydantic.json_schema import models_json_schema

from .. import __version__, schemas
from . import operations

bp = Blueprint("openapi", __name__)

# The bodies a request carries (schemas in their validation mode), and those a response
# does (serialization mode). Each class is in one list only, so each has one schema.
REQUEST_BODIES = (
    schemas.Registration, schemas.Login, schemas.PasswordChange, schemas.Logout, schemas.TaskCreate, schemas.TaskPatch,
)
RESPONSE_BODIES = (
    schemas.Error, schemas.User, schemas.Task, schemas.TaskPage, schemas.UserReply, schemas.Tokens, schemas.Deleted,
    schemas.Message, schemas.LogoutReply, schemas.Health, schemas.HealthDown,
)


@cache
def _components() -> dict:
    models = [(m, "validation") for m in REQUEST_BODIES] + [(m, "serialization") for m in RESPONSE_BODIES]
    _, top = models_json_schema(models, ref_template=operations.REF)
    return operations.tidy(top["$defs"])


def document() -> dict:
    """The whole document for this app: built once, from its routes' own declarations."""
    built = current_app.extensions.get("openapi_document")
    if built is None:
        built = {
            "openapi": "3.1.0",
            "info": {"title": "Task Manager API", "version": __version__},
            "components": {
                "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
                "schemas": _components(),
            },
            "paths": operations.paths(current_app.url_map, current_app.view_functions),
        }
        current_app.extensions["openapi_document"] = built
    return built


@bp.get("/api/openapi.json")
@operations.documented("get", "This document", responses={"200": operations.reply({"type": "object"}, "OpenAPI 3")})
def openapi_json():
    return jsonify(document())
