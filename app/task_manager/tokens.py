"""JWT behaviour: identities, revocation, refresh token rotation, and 401s for every token failure.

A token is refused (401 token_revoked) when its own id is on the revocation list, when
its sign-in (family) has ended, or when it was issued under an older token version of
its user. Tokens from before families and versions existed carry neither claim: they
count as version 0 and as a family of their own, so an update signs nobody out.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask import current_app, g
from flask_jwt_extended import create_access_token, create_refresh_token, current_user, decode_token, get_jwt
from sqlalchemy import Integer, String, bindparam, select, update

from . import driver_reads
from .errors import ApiError, error_response
from .extensions import db, jwt
from .models import TASK_STATUSES, RevokedToken, TaskCount, TokenFamily, User, utcnow

REVOKED_MESSAGE = "認証トークンは無効化されています"
UNKNOWN_USER_MESSAGE = "ユーザーが存在しません"


@jwt.user_identity_loader
def user_identity(user: User) -> str:
    return str(user.id)


def _user_id(payload: dict) -> int | None:
    try:
        return int(payload["sub"])
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class SignedIn:
    """Whom a verified, unrevoked token names: current_user. A request needs no more of its
    user than the id (the tasks are the user's by id) and how many tasks they hold in each
    status (a list's totals, the quota), and reading them as a plain row with the token's
    state costs a fraction of loading the user's record through the ORM, on every request. A
    handler that reads or changes the record takes it with signed_in_user()."""

    id: int
    task_counts: dict[str, int]


def _held(status: str):
    """How many tasks the user holds in `status`: NULL for none (task_counts keeps no zero rows)."""
    rows = TaskCount.__table__.c
    return select(rows.tasks).where(rows.user_id == User.id, rows.status == status).scalar_subquery()


# Built once: building a statement costs more than SQLAlchemy's cached execution of it, and
# this one runs on every authenticated request. A token naming no family binds NULL, which
# equals no id: nothing is joined, as for a family that is gone. Plain columns, no entity:
# executed on the request's own connection (Database.request_connection), the ORM's session
# and execution layer are skipped. The task counts ride along: a statement of their own cost
# a list more than the three index reads they add here to every request.
_TOKEN_STATE = (
    select(User.id, User.token_version, RevokedToken.jti, TokenFamily.id, TokenFamily.revoked_at,
           *(_held(status) for status in TASK_STATUSES))
    .select_from(User)
    .outerjoin(RevokedToken, RevokedToken.jti == bindparam("jti", type_=String))
    .outerjoin(TokenFamily, TokenFamily.id == bindparam("family", type_=String))
    .where(User.id == bindparam("user_id", type_=Integer))
)


def _token_state(payload: dict):
    """(user id, token version, revoked jti, family id, family revoked_at, then the tasks held
    in each of TASK_STATUSES) in one query, kept for the rest of the request: the blocklist
    check and the user lookup both read it."""
    cached = g.get("_token_state")
    if cached is not None and cached[0] is payload:
        return cached[1]
    state = None
    user_id = _user_id(payload)
    if user_id is not None:
        family_id = payload.get("fam")  # none in a token from before families
        rows = driver_reads.read(db.request_connection(), _TOKEN_STATE, {
            "jti": str(payload.get("jti")), "family": str(family_id) if family_id is not None else None,
            "user_id": user_id,
        })
        state = rows[0] if rows else None
    g._token_state = (payload, state)
    return state


@jwt.user_lookup_loader
def load_user(_header: dict, payload: dict) -> SignedIn | None:
    state = _token_state(payload)
    if state is None:
        return None
    return SignedIn(state[0], {status: held or 0 for status, held in zip(TASK_STATUSES, state[5:], strict=True)})


def signed_in_user() -> User:
    """The signed-in user's record, for the handlers that read or change more than its id.
    It is read after the token check, by a query of its own: what another request committed
    in between (a sign-out everywhere, a new password) is judged again here, so that no
    handler issues or changes anything under a token that has just been revoked."""
    user = db.session.get(User, current_user.id)
    if user is None:  # deleted since the token was checked, in this very request
        raise _refused("user_not_found", UNKNOWN_USER_MESSAGE)
    if get_jwt().get("ver", 0) != user.token_version:
        raise _refused()
    return user


@jwt.token_in_blocklist_loader
def is_revoked(_header: dict, payload: dict) -> bool:
    state = _token_state(payload)
    if state is None:
        return False  # left to the user lookup, which answers user_not_found
    token_version, revoked_jti, family_id, family_revoked_at = state[1:5]
    if payload.get("ver", 0) != token_version or revoked_jti is not None:
        return True
    if payload.get("fam") is None:
        return False
    return family_id is None or family_revoked_at is not None


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
    return _unauthorized("token_revoked", REVOKED_MESSAGE)


@jwt.user_lookup_error_loader
def unknown_user(_header: dict, _payload: dict):
    return _unauthorized("user_not_found", UNKNOWN_USER_MESSAGE)


@jwt.token_verification_failed_loader
def verification_failed(_header: dict, _payload: dict):
    return _unauthorized("token_invalid", "認証トークンが不正です")


@jwt.needs_fresh_token_loader
def needs_fresh(_header: dict, _payload: dict):
    return _unauthorized("token_not_fresh", "再ログインが必要です")


def issue(user: User, family: TokenFamily | None = None) -> tuple[str, str]:
    """An access and a refresh token for the user: a new sign-in (family) unless one is
    given, in which case its refresh token is rotated. The caller commits."""
    now = utcnow()
    refresh_jti = str(uuid.uuid4())
    if family is None:
        family = TokenFamily(
            id=uuid.uuid4().hex, user_id=user.id, current_jti=refresh_jti, created_at=now,
            expires_at=now + current_app.config["JWT_REFRESH_TOKEN_EXPIRES"],
        )
        db.session.add(family)
    else:
        family.current_jti = refresh_jti
    claims = {"ver": user.token_version, "fam": family.id}
    # A rotated refresh token keeps the sign-in's end: rotation never makes a session longer.
    refresh_lifetime = max(family.expires_at - now, timedelta(seconds=1))
    access = create_access_token(identity=user, additional_claims=claims)
    refresh = create_refresh_token(
        identity=user, additional_claims={**claims, "jti": refresh_jti}, expires_delta=refresh_lifetime
    )
    return access, refresh


def _refused(error: str = "token_revoked", message: str = REVOKED_MESSAGE) -> ApiError:
    return ApiError(401, error, message, headers={"WWW-Authenticate": "Bearer"})


def rotate(payload: dict, user: User) -> tuple[str, str]:
    """New tokens for a valid refresh token, which is spent by this call.

    Only the newest refresh token of a family may refresh. An older one is a copy that
    was used already, by its owner or by a thief, and nobody can tell which: the family
    ends, and whoever holds its tokens signs in again.
    """
    family_id = payload.get("fam")
    if family_id is None:
        # From before rotation existed: spent now, and its successor starts a family.
        revoke(payload)
        return issue(user)
    # Compare-and-set, so that two workers refreshing one token at once cannot both win.
    claimed = db.session.execute(
        update(TokenFamily)
        .where(TokenFamily.id == family_id, TokenFamily.current_jti == payload["jti"],
               TokenFamily.revoked_at.is_(None))
        .values(current_jti=f"spent:{payload['jti']}"[:64])
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        revoke_family(str(family_id))
        db.session.commit()
        current_app.logger.warning(
            "リフレッシュトークンの再利用を検出、セッションを無効化: user_id=%s family=%s", user.id, family_id
        )
        raise _refused()
    family = db.session.get(TokenFamily, str(family_id), populate_existing=True)
    return issue(user, family)


def revoke_family(family_id: str) -> None:
    db.session.execute(
        update(TokenFamily)
        .where(TokenFamily.id == family_id, TokenFamily.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def end_session(payload: dict) -> None:
    """Revoke the token and, when it belongs to a sign-in, every token of that sign-in."""
    revoke(payload)
    if payload.get("fam") is not None:
        revoke_family(str(payload["fam"]))


def sign_out_everywhere(user: User) -> None:
    """Every token the user holds stops working (the caller commits). The version alone
    would do; the sign-ins are marked ended too, so the table says what happened."""
    user.token_version += 1
    db.session.execute(
        update(TokenFamily)
        .where(TokenFamily.user_id == user.id, TokenFamily.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )


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
    """Forget revocations and sign-ins whose tokens have expired anyway; keeps the tables small."""
    now = utcnow()
    return (RevokedToken.query.filter(RevokedToken.expires_at < now).delete()
            + TokenFamily.query.filter(TokenFamily.expires_at < now).delete())
