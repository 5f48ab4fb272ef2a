"""Every error leaves as JSON {"error": code, "message": text}; no stack trace reaches a client."""

from __future__ import annotations

from flask import Flask, current_app, jsonify
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException

from . import metrics

# Japanese messages for the statuses werkzeug raises by itself; the frontend shows them as they are.
HTTP_MESSAGES = {
    400: "リクエストが不正です",
    401: "認証が必要です",
    403: "この操作は許可されていません",
    404: "指定されたリソースが見つかりません",
    405: "このメソッドは許可されていません",
    413: "リクエストが大きすぎます (上限 1 MiB)",
    415: "Content-Type は application/json にしてください",
    429: "リクエストが多すぎます。しばらくしてから再試行してください",
}


class ApiError(Exception):
    """An error the API answers deliberately: a status, a machine code, a human message."""

    def __init__(self, status: int, error: str, message: str, *, field: str | None = None, headers=None):
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.field = field
        self.headers = headers or {}


def error_response(status: int, error: str, message: str, *, field: str | None = None, headers=None):
    body = {"error": error, "message": message}
    if field is not None:
        body["field"] = field
    response = jsonify(body)
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _code_for(exc: HTTPException) -> str:
    return (exc.name or "error").lower().replace(" ", "_").replace("'", "")


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def handle_api_error(exc: ApiError):
        return error_response(exc.status, exc.error, exc.message, field=exc.field, headers=exc.headers)

    @app.errorhandler(HTTPException)
    def handle_http_exception(exc: HTTPException):
        status = exc.code or 500
        message = HTTP_MESSAGES.get(status, exc.description or exc.name)
        headers = {k: v for k, v in exc.get_headers() if k.lower() in ("allow", "retry-after")}
        return error_response(status, _code_for(exc), message, headers=headers)

    # The database is locked (SQLite), down, restarting or out of connections (PostgreSQL):
    # 503 and a retry, never a 500. The pool tests each connection before use
    # (pool_pre_ping), so the first request after the database is back succeeds.
    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(PoolTimeoutError)
    def handle_database_unavailable(exc: Exception):
        return _database_unavailable(exc)

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception):
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return _database_unavailable(exc)  # a connection lost in the middle of a statement
        current_app.logger.exception("Unhandled error: %s", type(exc).__name__)
        return error_response(500, "internal_error", "サーバー内部エラーが発生しました")


def _database_unavailable(exc: Exception):
    # The driver's own message (libpq's names the host and the reason, never a password).
    reason = getattr(exc, "orig", None) or exc
    current_app.logger.error("Database error: %s", str(reason).strip().replace("\n", " "))
    metrics.DATABASE_ERRORS.inc()
    return error_response(
        503, "database_unavailable", "データベースが一時的に利用できません", headers={"Retry-After": "5"}
    )
