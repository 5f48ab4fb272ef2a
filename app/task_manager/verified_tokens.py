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

Its header is kept beside what it gave: flask-jwt-extended reads a token's header again
after every verification (PyJWT decodes all three parts for it, checking each character in
Python), and that alone was a tenth of a list's CPU once the verification was remembered.
The header it is given for a remembered token is the one read from that same text.

A request that brings a remembered access token in its Authorization header is then checked
by access_token_required without the library's per-request steps (a location loop, a score
of settings each read through the app's context, the header parsed by a regular expression),
which cost a list more than the token's check itself: the same callbacks judge it (revocation,
the app's own verification, the user's lookup) and the request ends with what the library
leaves (get_jwt(), current_user). Every other request goes the library's own way, and so does
one whose token any callback refuses: its error answers as the library makes it.
"""

from __future__ import annotations

import contextlib
import functools
from datetime import UTC, datetime, timedelta

from flask import Flask, current_app, g, request
from flask_jwt_extended import JWTManager, verify_jwt_in_request, view_decorators
from flask_jwt_extended.config import config
from flask_jwt_extended.utils import get_unverified_jwt_headers

# Per worker and app: a board's access token is one entry until it expires (15 minutes by
# default), so this is room for that many signed-in people using one worker at once.
MAX_ENTRIES = 4096
_EXTENSION = "verified_tokens"


def _seconds(leeway: float | timedelta) -> float:
    # JWT_DECODE_LEEWAY may be a timedelta, which PyJWT accepts too.
    return leeway.total_seconds() if isinstance(leeway, timedelta) else leeway


def _unexpired(payload: dict) -> bool:
    return payload["exp"] > datetime.now(tz=UTC).timestamp() - _seconds(config.leeway)


def remembered_headers(encoded_token: str) -> dict:
    """The header of a token this app verified and still remembers, else read as the library
    reads it. Either way it is read from the token's own text; a copy, never the kept one."""
    kept = current_app.extensions.get(_EXTENSION, {}).get(encoded_token)  # none for another manager's app
    return dict(kept[1]) if kept is not None else get_unverified_jwt_headers(encoded_token)


# The request decorators call the name they imported; it is replaced there, so that every
# view's token check reads a remembered token's header from memory. tests/test_verified_tokens.py
# fails if a new flask-jwt-extended stops calling it.
view_decorators.get_unverified_jwt_headers = remembered_headers


class RememberingJWTManager(JWTManager):
    def init_app(self, app: Flask, add_context_processor: bool = False) -> None:
        super().init_app(app, add_context_processor)
        app.extensions[_EXTENSION] = {}

    def _decode_jwt_from_config(self, encoded_token: str, csrf_value=None, allow_expired: bool = False) -> dict:
        if csrf_value is not None or allow_expired:
            return super()._decode_jwt_from_config(encoded_token, csrf_value, allow_expired)
        verified: dict[str, tuple[dict, dict]] = current_app.extensions[_EXTENSION]
        kept = verified.get(encoded_token)
        if kept is not None:
            if _unexpired(kept[0]):
                return dict(kept[0])  # a copy: the caller's may be changed, the kept one never
            verified.pop(encoded_token, None)
        payload = super()._decode_jwt_from_config(encoded_token, csrf_value, allow_expired)
        if isinstance(payload.get("exp"), int):
            while verified and len(verified) >= MAX_ENTRIES:
                # The oldest kept goes; with gunicorn's threads another may have taken it.
                with contextlib.suppress(StopIteration, KeyError, RuntimeError):
                    del verified[next(iter(verified))]
            verified[encoded_token] = (dict(payload), get_unverified_jwt_headers(encoded_token))
        return payload


def _remembered_access_token() -> tuple[dict, dict] | None:
    """(payload, header) of the access token the request's Authorization header brings, when
    this app verified it before and it is unexpired; None for anything else."""
    app = current_app._get_current_object()  # once, not through the proxy at each use
    settings = app.config
    if request.method in config.exempt_methods or tuple(config.token_location) != ("headers",):
        return None
    # Exactly "<type> <token>": what the library would read as that one token. A header with
    # a comma (several fields) or more parts is left to it, and to its messages.
    parts = request.headers.get(settings["JWT_HEADER_NAME"], "").split()
    if len(parts) != 2 or parts[0] != settings["JWT_HEADER_TYPE"] or "," in parts[1]:
        return None
    kept = app.extensions.get(_EXTENSION, {}).get(parts[1])
    if kept is None or kept[0].get("type") != "access" or not _unexpired(kept[0]):
        return None
    return dict(kept[0]), dict(kept[1])


def verify_access_token() -> bool:
    """verify_jwt_in_request() for an access token this app remembers: True, with the request
    left as the library leaves it (get_jwt(), get_jwt_header(), current_user), when every
    callback passes it; False, with nothing set, when the library must judge the request."""
    remembered = _remembered_access_token()
    if remembered is None:
        return False
    payload, header = remembered
    manager = current_app.extensions["flask-jwt-extended"]
    # The library's order: revocation, the app's own verification, then the user.
    if manager._token_in_blocklist_callback(header, payload):
        return False
    if not manager._token_verification_callback(header, payload):
        return False
    user = None
    if manager._user_lookup_callback is not None:
        user = manager._user_lookup_callback(header, payload)
        if user is None:
            return False
        user = {"loaded_user": user}
    # The names the library's getters read (get_jwt, current_user).
    g._jwt_extended_jwt_user = user
    g._jwt_extended_jwt_header = header
    g._jwt_extended_jwt = payload
    g._jwt_extended_jwt_location = "headers"
    return True


def access_token_required(view):
    """jwt_required(), with verify_access_token's shorter way for a remembered access token."""

    @functools.wraps(view)
    def checked(*args, **kwargs):
        if not verify_access_token():
            verify_jwt_in_request()
        return current_app.ensure_sync(view)(*args, **kwargs)

    return checked
