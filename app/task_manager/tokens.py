"""JWT behaviour: identities, the revocation list, and 401s for every token failure."""

from __future__ import annotations

from datetime import UTC, datetime

from flask_jwt_extended import decode_token

from .errors import error_response
from .extensions import db, jwt
from .models import RevokedToken, User, utcnow


@jwt.user_identity_loader
def user_identity(user: User) -> str:
    return str(user.id)


@jwt.user_lookup_loader
def load_user(_header: dict, payload: dict) -> User | None:
    try:
        return db.session.get(User, int(payload["sub"]))
    except (KeyError, TypeError, ValueError):
        return None


@jwt.token_in_blocklist_loader
def is_revoked(_header: dict, payload: dict) -> bool:
    return db.session.get(RevokedToken, payload["jti"]) is not None


def _unauthorized(error: str, message: str):
    return error_response(401, error, message, headers={"WWW-Authenticate": "Bearer"})


@jwt.unauthorized_loader
def missing_token(_reason: str):
    return _unauthorized("token_missing", "認証トークンがありません")


@jwt.invalid_token_loader
def invalid_token(_reason: str):
    return _unauthorized("token_invalid", "認証トークンが不正です")


@jwt.expired_token_loader
def expired_token(_header: dict, _payload: dict):
    return _unauthorized("token_expired", "認証トークンの有効期限が切れています")


@jwt.revoked_token_loader
def revoked_token(_header: dict, _payload: dict):
    return _unauthorized("token_revoked", "認証トークンは無効化されています")


@jwt.user_lookup_error_loader
def unknown_user(_header: dict, _payload: dict):
    return _unauthorized("user_not_found", "ユーザーが存在しません")


@jwt.token_verification_failed_loader
def verification_failed(_header: dict, _payload: dict):
    return _unauthorized("token_invalid", "認証トークンが不正です")


@jwt.needs_fresh_token_loader
def needs_fresh(_header: dict, _payload: dict):
    return _unauthorized("token_not_fresh", "再ログインが必要です")


def revoke(payload: dict) -> None:
    if db.session.get(RevokedToken, payload["jti"]) is None:
        expires = datetime.fromtimestamp(payload["exp"], UTC).replace(tzinfo=None)
        db.session.add(
            RevokedToken(
                jti=payload["jti"], token_type=payload.get("type", "access"), user_id=int(payload["sub"]),
                expires_at=expires,
            )
        )


def decode_refresh_token(token: str) -> dict | None:
    """The payload of a valid, unexpired refresh token, or None."""
    try:
        payload = decode_token(token)
    except Exception:  # any PyJWT or flask-jwt-extended failure means "not a usable token"
        return None
    return payload if payload.get("type") == "refresh" else None


def prune_expired() -> int:
    """Forget revocations of tokens that have expired anyway; keeps the table small."""
    return RevokedToken.query.filter(RevokedToken.expires_at < utcnow()).delete()
