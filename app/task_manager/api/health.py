"""GET /health: the manual's health check, plus a cheap database probe.

Everyone gets status, message, version, release, engine and checks (the playbooks read the
release through nginx too). The exact build (git revision, build time) and the schema
revision help an attacker match a known flaw, so the public, proxied caller gets them
only with a valid access token; callers on the host (TCP loopback, not through nginx)
always get them.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from flask_jwt_extended import verify_jwt_in_request
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt import PyJWTError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from .. import metrics, proxy, schemas
from ..extensions import db, engine_name
from ..release import __version__, release_info
from ..verified_tokens import verify_access_token
from .operations import documented, reply

bp = Blueprint("health", __name__)

OK_MESSAGE = "タスク管理API は正常に動作中です"
DETAILS = ("revision", "built_at", "schema_revision")


def _full_details() -> bool:
    if proxy.is_local_direct(request):
        return True
    if not request.headers.get("Authorization"):
        return False
    try:
        return verify_access_token() or verify_jwt_in_request(optional=True) is not None
    except (JWTExtendedException, PyJWTError, SQLAlchemyError):
        # The token is checked before the probe, on the request's own connection, not the
        # session's: that is the one a failed statement leaves to be given back.
        db.release_request_connection()
        return False  # a bad token here is no error: the caller just counts as anonymous


def _answer(body: dict, full_details: bool, status: int = 200):
    if not full_details:
        body = {k: v for k, v in body.items() if k not in DETAILS}
    response = jsonify(body)
    response.status_code = status
    return response


@bp.get("/health")
@documented(
    "get", "Health check (service and database)",
    description=("revision, built_at and schema_revision are given to callers on the host (TCP loopback) and to "
                 "callers with a valid access token (optional Bearer), not to anonymous ones through the proxy"),
    responses={"200": reply(schemas.Health, "Healthy"), "503": reply(schemas.HealthDown, "Database unusable")})
def health():
    body = {"status": "OK", "message": OK_MESSAGE, "version": __version__}
    body.update(release_info(current_app.config["RELEASE_INFO_FILE"]))
    body["engine"] = engine_name()  # sqlite or postgresql: which database this API serves
    # The token first, as every handler checks it (on the request's own connection), then the
    # probe on the session, which takes over that connection: one connection at a time.
    full_details = _full_details()
    try:
        db.session.execute(text("SELECT 1 FROM users LIMIT 1")).all()
        db.session.execute(text("SELECT 1 FROM tasks LIMIT 1")).all()
        revision = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError as exc:
        db.session.rollback()
        reason = getattr(exc, "orig", None) or exc  # a pool timeout has no driver error
        current_app.logger.error("Health check: database unusable: %s", type(reason).__name__)
        metrics.DATABASE_ERRORS.inc()
        body.update(
            status="ERROR", message="データベースに接続できません", checks={"database": "error"}
        )
        return _answer(body, full_details, 503)
    body["checks"] = {"database": "ok"}
    body["schema_revision"] = revision
    return _answer(body, full_details)
