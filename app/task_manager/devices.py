"""Device tokens: what a browser that has signed in to an account keeps, so that its next
sign-in is held to its own failures alone (throttle.py) and never to the failures of other
clients behind the same address or of other addresses at the same account.

A token is the account's id, its token version and a random id, signed with the app's
secret key and dated; it grants nothing by itself (the password is still checked), and a
token for another account, a forged, expired or malformed one is simply not trusted. A
password change and "sign out everywhere" raise the account's token version (tokens.py),
which ends the trust of every device token issued before.
"""

from __future__ import annotations

import secrets

from flask import current_app
from itsdangerous import BadData, URLSafeTimedSerializer

SALT = "task-manager.device"


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SALT)


def issue(user, device: str | None = None) -> str:
    """A token for this account: the same device's id again, or a new one."""
    return _serializer().dumps({"i": user.id, "v": user.token_version, "d": device or secrets.token_urlsafe(12)})


def trusted(token: str | None, user) -> str | None:
    """The device's id when the token is good for this account as it is now, else None."""
    if not token or user is None:
        return None
    try:
        data = _serializer().loads(token, max_age=int(current_app.config["LOGIN_DEVICE_DAYS"] * 86400))
    except BadData:
        return None
    if (not isinstance(data, dict) or data.get("i") != user.id or data.get("v") != user.token_version
            or not isinstance(data.get("d"), str)):
        return None
    return data["d"]
