"""/api/auth: register, login (throttled), refresh, logout (revocation), me."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from flask_jwt_extended import create_access_token, create_refresh_token, current_user, get_jwt, jwt_required
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from .. import throttle, tokens, validation
from ..errors import ApiError
from ..extensions import db
from ..logging_setup import safe
from ..models import User

bp = Blueprint("auth", __name__, url_prefix="/api/auth")

# Checked against when the user does not exist, so that an unknown name costs as
# much time as a wrong password and timing reveals nothing.
_DUMMY_HASH = generate_password_hash("timing-equaliser-not-a-password")
LOGIN_FAILED = "ユーザー名またはパスワードが正しくありません"


def hash_password(password: str) -> str:
    return generate_password_hash(password)  # scrypt with a random salt (werkzeug's default)


def create_user(username: str, password: str) -> User:
    user = User(username=username, password_hash=hash_password(password))
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ApiError(409, "username_taken", "このユーザー名は既に使われています", field="username") from None
    return user


def _token_response(user: User, status: int = 200):
    expires = current_app.config["JWT_ACCESS_TOKEN_EXPIRES"]
    return jsonify(
        access_token=create_access_token(identity=user),
        refresh_token=create_refresh_token(identity=user),
        token_type="Bearer",  # noqa: S106  (the scheme name, not a secret)
        expires_in=int(expires.total_seconds()),
        user=user.to_dict(),
    ), status


@bp.post("/register")
def register():
    data = validation.json_object()
    validation.reject_unknown(data, {"username", "password"})
    username = validation.username(data)
    password = validation.password(data)
    if db.session.scalar(db.select(User.id).where(User.username == username)) is not None:
        raise ApiError(409, "username_taken", "このユーザー名は既に使われています", field="username")
    user = create_user(username, password)
    current_app.logger.info("ユーザー登録: username=%s client=%s", safe(username), safe(request.remote_addr))
    return jsonify(user=user.to_dict()), 201


@bp.post("/login")
def login():
    data = validation.json_object()
    validation.reject_unknown(data, {"username", "password"})
    username = validation.string(data, "username", required=True)
    password = validation.password(data, check_rules=False)
    if not 1 <= len(username) <= 64:
        raise validation.invalid("username", "1〜64文字で指定してください")
    client = request.remote_addr or "unknown"
    wait = throttle.retry_after(username, client)
    if wait is not None:
        current_app.logger.warning(
            "認証失敗 (ロック中): username=%s client=%s retry_after=%ss", safe(username), safe(client), wait
        )
        raise ApiError(
            429, "too_many_attempts", f"ログイン試行が多すぎます。{wait}秒後に再試行してください",
            headers={"Retry-After": str(wait)},
        )
    user = db.session.scalar(db.select(User).where(User.username == username))
    if user is None or not check_password_hash(user.password_hash, password):
        if user is None:
            check_password_hash(_DUMMY_HASH, password)
        throttle.record_failure(username, client)
        db.session.commit()
        current_app.logger.warning("認証失敗: username=%s client=%s", safe(username), safe(client))
        raise ApiError(401, "invalid_credentials", LOGIN_FAILED)
    throttle.clear_account(username)
    db.session.commit()
    current_app.logger.info("ログイン成功: username=%s client=%s", safe(username), safe(client))
    return _token_response(user)


@bp.post("/refresh")
@jwt_required(refresh=True)
def refresh():
    expires = current_app.config["JWT_ACCESS_TOKEN_EXPIRES"]
    return jsonify(
        access_token=create_access_token(identity=current_user),
        token_type="Bearer",  # noqa: S106  (the scheme name, not a secret)
        expires_in=int(expires.total_seconds()),
    )


@bp.post("/logout")
@jwt_required(verify_type=False)
def logout():
    presented = get_jwt()
    refresh_payload = None
    if request.get_data(cache=True).strip():  # the body is optional; when present it must be right
        data = validation.json_object()
        validation.reject_unknown(data, {"refresh_token"})
        token = validation.string(data, "refresh_token", nullable=True)
        if token is not None:
            refresh_payload = tokens.decode_refresh_token(token)
            if refresh_payload is None or refresh_payload.get("sub") != presented.get("sub"):
                raise validation.invalid("refresh_token", "有効なリフレッシュトークンではありません")
    tokens.revoke(presented)
    if refresh_payload is not None:
        tokens.revoke(refresh_payload)
    tokens.prune_expired()
    db.session.commit()
    return jsonify(message="ログアウトしました", revoked=1 + (refresh_payload is not None))


@bp.get("/me")
@jwt_required()
def me():
    return jsonify(user=current_user.to_dict())
