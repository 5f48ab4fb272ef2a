"""Reading a request through its declaration (schemas.py), and the API's answer to a fault:
a 400 validation_error that names the field, with the rule's Japanese message. Only the
first fault is answered: an unknown field first, then the fields in their declared order."""

from __future__ import annotations

from functools import cache
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, TypeAdapter, ValidationError

from . import schemas
from .errors import ApiError

M = TypeVar("M", bound=BaseModel)


def invalid(field: str, message: str) -> ApiError:
    return ApiError(400, "validation_error", f"{field}: {message}", field=field)


def json_object() -> dict:
    # Deeply nested JSON ([[[[...]]]]) exhausts Python's recursion limit while parsing;
    # get_json(silent=True) only absorbs ValueError, so that one is caught here.
    try:
        data = request.get_json(silent=True)
        if isinstance(data, dict):
            _check_encodable(data)
    except RecursionError:
        raise ApiError(400, "invalid_json", "JSON の入れ子が深すぎます") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "リクエスト本文は JSON オブジェクトにしてください")
    return data


def _check_encodable(value, field: str | None = None) -> None:
    # JSON may carry lone surrogates ("\ud800"), which no database can store as text.
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise invalid(field or "body", "不正な文字が含まれています") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_encodable(key, field or "body")
            _check_encodable(item, field or str(key))
    elif isinstance(value, list):
        for item in value:
            _check_encodable(item, field)


def parse(model: type[M], data: dict) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        raise _fault(model, error) from None


def _fault(model: type[BaseModel], error: dict) -> ApiError:
    field = str(error["loc"][0])[:64] if error["loc"] else "body"
    if error["type"] == "extra_forbidden":
        return invalid(field, "不明なフィールドです")
    if error["type"] == "missing":
        return invalid(field, schemas.required_message(model, field))
    if error["type"] == schemas.RULE:
        return invalid(field, error["msg"])
    return invalid(field, "値が正しくありません")  # pragma: no cover - every field has a rule of ours


def body(model: type[M]) -> M:
    """The JSON body, checked against model."""
    return parse(model, json_object())


def query(model: type[M]) -> M:
    """The query string, checked against model; an empty value counts as left out."""
    return parse(model, {key: value for key, value in request.args.items() if value != ""})


@cache
def _adapter(rule: Any) -> TypeAdapter:
    return TypeAdapter(rule)


def check(rule: Any, data: dict, field: str) -> Any:
    """One field of data checked by one declared type (schemas.Username, ...)."""
    if field not in data:
        raise invalid(field, schemas.REQUIRED)
    try:
        return _adapter(rule).validate_python(data[field], strict=True)
    except ValidationError as exc:
        raise _fault(BaseModel, exc.errors(include_url=False, include_input=False)[0] | {"loc": (field,)}) from None


# What cli.py's create-user checks a new account with: the rules of a registration.
def username(data: dict) -> str:
    return check(schemas.Username, data, "username")


def password(data: dict, field: str = "password") -> str:
    return check(schemas.NewPassword, data, field)
