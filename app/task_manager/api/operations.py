"""Each route says what it takes and answers, beside its code: @documented keeps that on the
view, and openapi.py builds the document's paths from the app's own routes. A route without
it for one of its methods makes the document fail, so none is served undocumented.

The bodies and query parameters are the pydantic classes in schemas.py (the same ones that
check the requests and write the replies); what is written here is what no field rule says:
the summary, the statuses each operation may answer and their headers.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pydantic import BaseModel

from .. import schemas

REF = "#/components/schemas/{model}"
HTTP_METHODS = ("get", "post", "put", "patch", "delete")
# Flask's placeholders (<int:task_id>) and their converters as OpenAPI path parameters.
PLACEHOLDER = re.compile(r"<(?:(\w+):)?(\w+)>")
CONVERTERS = {"int": {"type": "integer", "minimum": 0}, "default": {"type": "string"}}


def ref(model: type[BaseModel]) -> dict:
    return {"$ref": REF.format(model=model.__name__)}


def reply(model: type[BaseModel] | dict, description: str, headers: dict | None = None) -> dict:
    """A JSON response: a schema class (by reference) or a schema written out."""
    schema = model if isinstance(model, dict) else ref(model)
    response = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def error(description: str, headers: dict | None = None) -> dict:
    return reply(schemas.Error, description, headers)


RETRY_AFTER = {"Retry-After": {"schema": {"type": "string", "pattern": "^[0-9]+$"}, "required": True}}
NO_STORE = {
    "Cache-Control": {"schema": {"type": "string", "const": "no-store"}, "required": True},
    "Pragma": {"schema": {"type": "string", "const": "no-cache"}, "required": True},
}
COMMON_ERRORS = {
    "413": error("Body over 1 MiB"),
    "503": error("Database unavailable", RETRY_AFTER),
}
AUTH_ERRORS = {"401": error("Missing, malformed, expired or revoked token"), **COMMON_ERRORS}
TASK_BODY_ERRORS = {"400": error("Invalid JSON or field (the field is named)"), **AUTH_ERRORS}
NOT_YOURS = {"404": error("No such task of yours")}
STORAGE_QUOTA = {"403": error("The task's text would take the account past its storage quota (STORAGE_QUOTA_BYTES)")}
TOO_MANY_WRITES = {"429": error("The account's task writes this minute passed TASK_WRITES_PER_MINUTE; retry after "
                                "the given seconds", RETRY_AFTER)}
BEARER = [{"bearerAuth": []}]


def query_parameters(model: type[BaseModel]) -> list[dict]:
    schema = tidy(model.model_json_schema())
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema["properties"].items():
        parameter = {"name": name, "in": "query", "required": name in required}
        if "description" in prop:
            parameter["description"] = prop.pop("description")
        parameters.append({**parameter, "schema": prop})
    return parameters


def tidy(schema):
    """Drop the titles pydantic gives every schema ("Title", "TaskCreate"): they only repeat
    names. A property that is called title holds a schema, never a string, and stays."""
    if isinstance(schema, dict):
        return {k: tidy(v) for k, v in schema.items() if not (k == "title" and isinstance(v, str))}
    if isinstance(schema, list):
        return [tidy(item) for item in schema]
    return schema


def documented(method: str, summary: str, *, responses: dict, description: str | None = None,
               body: type[BaseModel] | None = None, body_required: bool = True,
               query: type[BaseModel] | None = None, signed_in: bool = False) -> Callable:
    """The operation `method` of the decorated view: its summary, the body and query it
    takes (schema classes), the responses it may give, and whether it needs a token."""
    if method not in HTTP_METHODS:
        raise ValueError(f"{method!r} is not one of {HTTP_METHODS}")
    operation: dict = {"summary": summary}
    if description:
        operation["description"] = description
    if signed_in:
        operation["security"] = BEARER
    if query is not None:
        operation["parameters"] = query_parameters(query)
    if body is not None:
        operation["requestBody"] = {"required": body_required, "content": {"application/json": {"schema": ref(body)}}}
    operation["responses"] = responses

    def keep(view: Callable) -> Callable:
        view.__dict__.setdefault("openapi_operations", {})[method] = operation
        return view

    return keep


def paths(url_map, view_functions: dict) -> dict:
    """The document's paths from the app's routes: each method of each rule as its view
    documented it, the path's own parameters from the rule's placeholders."""
    found: dict = {}
    for rule in sorted(url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static":
            continue
        operations = getattr(view_functions[rule.endpoint], "openapi_operations", {})
        item = found.setdefault(PLACEHOLDER.sub(r"{\2}", rule.rule), {})
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if method.lower() not in operations:
                raise LookupError(f"{rule.rule} {method} ({rule.endpoint}) has no @documented operation")
            item[method.lower()] = operations[method.lower()]
        if rule.arguments and "parameters" not in item:
            item["parameters"] = [{"name": name, "in": "path", "required": True,
                                   "schema": CONVERTERS.get(converter or "default", CONVERTERS["default"])}
                                  for converter, name in PLACEHOLDER.findall(rule.rule)]
    return found
