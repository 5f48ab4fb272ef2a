"""flask-jwt-extended's JWTManager, remembering the tokens it has verified.

A signed-in board sends the same access token with every request until it expires, and
flask-jwt-extended verifies it from nothing each time: the whole token decoded twice (once
unverified, for the key callback), the HMAC, the claims. That was a fifth of a task list's
CPU. A worker now keeps what a token's verification gave and gives it again while the token
is unexpired:
- only what passed verification is kept, under the token's full text (signature included)
  and per app (each app has its own key and settings);
- expiry is judged again at every use, as PyJWT judges it (exp <= now - leeway);
- revocation is never kept: tokens.py reads it from the database at every request;
- a token with a CSRF value, or decoded with allow_expired, goes the library's own way.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

from flask import Flask, current_app
from flask_jwt_extended import JWTManager
from flask_jwt_extended.config import config

# Per worker and app: a board's access token is one entry until it expires (15 minutes by
# default), so this is room for that many signed-in people using one worker at once.
MAX_ENTRIES = 4096
_EXTENSION = "verified_tokens"


def _seconds(leeway: float | timedelta) -> float:
    # JWT_DECODE_LEEWAY may be a timedelta, which PyJWT accepts too.
    return leeway.total_seconds() if isinstance(leeway, timedelta) else leeway


class RememberingJWTManager(JWTManager):
    def init_app(self, app: Flask, add_context_processor: bool = False) -> None:
        super().init_app(app, add_context_processor)
        app.extensions[_EXTENSION] = {}

    def _decode_jwt_from_config(self, encoded_token: str, csrf_value=None, allow_expired: bool = False) -> dict:
        if csrf_value is not None or allow_expired:
            return super()._decode_jwt_from_config(encoded_token, csrf_value, allow_expired)
        verified: dict[str, dict] = current_app.extensions[_EXTENSION]
        payload = verified.get(encoded_token)
        if payload is not None:
            if payload["exp"] > datetime.now(tz=UTC).timestamp() - _seconds(config.leeway):
                return dict(payload)  # a copy: the caller's may be changed, the kept one never
            verified.pop(encoded_token, None)
        payload = super()._decode_jwt_from_config(encoded_token, csrf_value, allow_expired)
        if isinstance(payload.get("exp"), int):
            while verified and len(verified) >= MAX_ENTRIES:
                # The oldest kept goes; with gunicorn's threads another may have taken it.
                with contextlib.suppress(StopIteration, KeyError, RuntimeError):
                    del verified[next(iter(verified))]
            verified[encoded_token] = dict(payload)
        return payload
