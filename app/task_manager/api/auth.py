"""/api/auth: register (throttled), login (throttled), refresh (rotating), logout, logout-all,
password change, me."""

from __future__ import annotations

from flask import Blueprint, current_app, request
from flask_jwt_extended import get_jwt, jwt_required, verify_jwt_in_request
from flask_jwt_extended.exceptions import NoAuthorizationError
from jwt import ExpiredSignatureError
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from .. import devices, metrics, passwords, proxy, schemas, throttle, tokens, validation
from ..errors import ApiError
from ..extensions import db
from ..logging_setup import safe
from ..models import User
from ..verified_tokens import access_token_required
from .operations import AUTH_ERRORS, COMMON_ERRORS, NO_STORE, RETRY_AFTER, documented, error, reply

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


@bp.after_request
def never_cache(response):
    # Answers here carry tokens or say who is signed in: no browser or proxy may keep them.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def _client() -> str | None:
    return proxy.client_address(request)


def _tokens_response(user: User, access: str, refresh: str, device_token: str | None = None):
    expires = current_app.config["JWT_ACCESS_TOKEN_EXPIRES"]
    return schemas.reply(schemas.Tokens, {
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "Bearer",  # the scheme's name, not a secret
        "expires_in": int(expires.total_seconds()),
        "user": user,
        **({"device_token": device_token} if device_token else {}),
    })


def _too_many(message: str, wait: int) -> ApiError:
    return ApiError(429, "too_many_attempts", message, headers={"Retry-After": str(wait)})


@bp.post("/register")
@documented("post", "Create an account", body=schemas.Registration, responses={
    "201": reply(schemas.UserReply, "Created"),
    "400": error("Invalid username or password (too short, or a common one)"),
    "409": error("Username taken"),
    "429": error("Too many registrations from this client; retry after the given seconds", RETRY_AFTER),
    **COMMON_ERRORS,
})
def register():
    data = validation.body(schemas.Registration)
    username, password = data.username, data.password
    client = _client()
    # Counted once the input is valid: every such request costs a lookup and most a scrypt hash.
    wait = throttle.register_retry_after(client)
    if wait is not None:
        current_app.logger.warning("登録制限中: client=%s retry_after=%ss", safe(client), wait)
        metrics.THROTTLED.labels("register").inc()
        raise _too_many(f"登録の試行が多すぎます。{wait}秒後に再試行してください", wait)
    throttle.record_registration(client)
    db.session.commit()
    if passwords.is_guessable(password, (username,)):  # the rule's own check, with the name beside it
        raise validation.invalid("password", schemas.GUESSABLE)
    if db.session.scalar(db.select(User.id).where(User.named(username))) is not None:
        raise ApiError(409, "username_taken", "このユーザー名は既に使われています", field="username")
    user = create_user(username, password)
    current_app.logger.info("ユーザー登録: username=%s client=%s", safe(username), safe(client))
    return schemas.reply(schemas.UserReply, {"user": user}, 201)


def _login_wait_or_raise(username: str, client: str | None, what: str, device: str | None = None) -> None:
    wait = throttle.login_retry_after(username, client, device)
    if wait is not None:
        current_app.logger.warning(
            "認証失敗 (%s待機中): username=%s client=%s retry_after=%ss", what, safe(username), safe(client), wait
        )
        metrics.THROTTLED.labels("login").inc()
        raise _too_many(f"ログイン試行が多すぎます。{wait}秒後に再試行してください", wait)


@bp.post("/login")
@documented("post", "Sign in; failures slow down per (account, client) and per client", body=schemas.Login, responses={
    "200": reply(schemas.Tokens, "Signed in", NO_STORE),
    "400": error("Invalid body"),
    "401": error("Unknown user or wrong password (one message for both)"),
    "429": error("Too many failures; retry after the given seconds", RETRY_AFTER),
    **COMMON_ERRORS,
})
def login():
    data = validation.body(schemas.Login)
    username, password = data.username, data.password
    client = _client()
    user = db.session.scalar(db.select(User).where(User.named(username)))
    # A device that signed in to this account before is held to its own failures alone.
    device = devices.trusted(data.device_token, user)
    _login_wait_or_raise(username, client, "", device)
    if user is None or not check_password_hash(user.password_hash, password):
        if user is None:
            check_password_hash(_DUMMY_HASH, password)
        throttle.record_login_failure(username, client, device)
        db.session.commit()
        current_app.logger.warning("認証失敗: username=%s client=%s", safe(username), safe(client))
        metrics.LOGIN_FAILURES.labels("login").inc()
        raise ApiError(401, "invalid_credentials", LOGIN_FAILED)
    throttle.clear_login_failures(username, client, device)
    access, refresh = tokens.issue(user)
    tokens.prune_expired()
    db.session.commit()
    current_app.logger.info("ログイン成功: username=%s client=%s", safe(username), safe(client))
    return _tokens_response(user, access, refresh, devices.issue(user, device))


@bp.post("/refresh")
@documented(
    "post", "New access and refresh tokens (send the refresh token as Bearer)", signed_in=True,
    description=("The refresh token is rotated: the one sent is spent. Sending a spent one again ends the whole "
                 "sign-in (every token descended from the same login) with 401 token_revoked"),
    responses={"200": reply(schemas.Tokens, "Refreshed", NO_STORE), **AUTH_ERRORS})
@jwt_required(refresh=True)
def refresh():
    user = tokens.signed_in_user()
    access, refresh_token = tokens.rotate(get_jwt(), user)
    db.session.commit()
    return _tokens_response(user, access, refresh_token)


def _body_refresh_token() -> dict | None:
    """The payload of the refresh token in the optional body, or None when there is none."""
    if not request.get_data(cache=True).strip():
        return None
    token = validation.body(schemas.Logout).refresh_token
    if token is None:
        return None
    payload = tokens.decode_refresh_token(token)
    if payload is None:
        raise validation.invalid("refresh_token", "有効なリフレッシュトークンではありません")
    return payload


@bp.post("/logout")
@documented(
    "post", "End the sign-in of the presented token (access or refresh) and of the body's refresh token",
    signed_in=True, body=schemas.Logout, body_required=False,
    description=("The refresh token alone is enough, as Bearer or in the body; with a refresh token in the body, "
                 "an expired or missing access token is no obstacle"),
    responses={"200": reply(schemas.LogoutReply, "Revoked"), "400": error("Invalid body or refresh token"),
               **AUTH_ERRORS})
def logout():
    """End the sign-in of the presented token: the refresh token alone is enough (as the
    Bearer token or in the body), and an expired or missing access token does not stand in
    the way of a refresh token in the body."""
    try:
        verify_jwt_in_request(verify_type=False)
    except (ExpiredSignatureError, NoAuthorizationError):
        presented, from_body = None, _body_refresh_token()
        if from_body is None:
            raise
        # The refresh token in the body proves the sign-in by itself.
    else:
        presented, from_body = get_jwt(), _body_refresh_token()
        if from_body is not None and from_body.get("sub") != presented.get("sub"):
            raise validation.invalid("refresh_token", "有効なリフレッシュトークンではありません")
    ended = [p for p in (presented, from_body) if p is not None]
    for payload in ended:
        tokens.end_session(payload)
    tokens.prune_expired()
    db.session.commit()
    return schemas.reply(schemas.LogoutReply, {"message": "ログアウトしました", "revoked": len(ended)})


@bp.post("/logout-all")
@documented("post", "Sign out everywhere: every token of the user stops working (access or refresh token as Bearer)",
            signed_in=True, responses={"200": reply(schemas.Message, "Signed out everywhere"), **AUTH_ERRORS})
@jwt_required(verify_type=False)
def logout_all():
    user = tokens.signed_in_user()
    tokens.sign_out_everywhere(user)
    db.session.commit()
    current_app.logger.info("全端末ログアウト: username=%s client=%s", safe(user.username), safe(_client()))
    return schemas.reply(schemas.Message, {"message": "すべての端末からログアウトしました"})


@bp.post("/password")
@documented(
    "post", "Change the password: every other token stops working, the caller gets new ones", signed_in=True,
    body=schemas.PasswordChange, responses={
        "200": reply(schemas.Tokens, "Changed; new tokens", NO_STORE),
        "400": error("Invalid body or new password"),
        "403": error("The current password is wrong"),
        "429": error("Too many wrong passwords; retry after the given seconds", RETRY_AFTER),
        **AUTH_ERRORS,
    })
@access_token_required
def change_password():
    data = validation.body(schemas.PasswordChange)
    current, new = data.current_password, data.new_password
    user = tokens.signed_in_user()
    client = _client()
    # Guessing the current password with a stolen token is slowed, in a lane of the signed-in
    # account's own: others' failures at its name or from its address never hold up its owner.
    lane = f"signed-in:{user.id}"
    _login_wait_or_raise(user.username, client, "パスワード変更、", lane)
    if not check_password_hash(user.password_hash, current):
        throttle.record_login_failure(user.username, client, lane)
        db.session.commit()
        current_app.logger.warning(
            "認証失敗 (パスワード変更): username=%s client=%s", safe(user.username), safe(client)
        )
        metrics.LOGIN_FAILURES.labels("password_change").inc()
        raise ApiError(403, "invalid_current_password", "現在のパスワードが正しくありません",
                       field="current_password")
    if new == current:
        raise validation.invalid("new_password", "現在のパスワードとは違うものにしてください")
    if passwords.is_guessable(new, (user.username,)):
        raise validation.invalid("new_password", schemas.GUESSABLE)
    user.password_hash = hash_password(new)
    throttle.clear_login_failures(user.username, client, lane)
    # Whoever else holds a token (perhaps the reason for the change) is signed out, and every
    # device token issued before is no longer trusted: this device gets a new one.
    tokens.sign_out_everywhere(user)
    access, refresh_token = tokens.issue(user)
    db.session.commit()
    current_app.logger.info("パスワード変更: username=%s client=%s", safe(user.username), safe(client))
    return _tokens_response(user, access, refresh_token, devices.issue(user))


@bp.get("/me")
@documented("get", "The signed-in user", signed_in=True,
            responses={"200": reply(schemas.UserReply, "The user"), **AUTH_ERRORS})
@access_token_required
def me():
    return schemas.reply(schemas.UserReply, {"user": tokens.signed_in_user()})
