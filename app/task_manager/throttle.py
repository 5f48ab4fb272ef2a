"""Throttling of failed logins, shared by all workers through the database.

A key is 'user:<name>' or 'client:<address>'. When a key has reached its limit of
failures inside the window, logins for it answer 429 until the oldest failure ages out.
"""

from __future__ import annotations

import math
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select

from .extensions import db
from .models import LoginFailure, utcnow


def _window() -> timedelta:
    return timedelta(seconds=current_app.config["LOGIN_FAILURE_WINDOW_SECONDS"])


def keys(username: str, client: str) -> list[tuple[str, int]]:
    cfg = current_app.config
    return [
        (f"user:{username.lower()}"[:160], cfg["LOGIN_MAX_FAILURES_PER_ACCOUNT"]),
        (f"client:{client}"[:160], cfg["LOGIN_MAX_FAILURES_PER_CLIENT"]),
    ]


def retry_after(username: str, client: str) -> int | None:
    """Seconds until a login may be tried again, or None when it may be tried now."""
    now = utcnow()
    since = now - _window()
    wait = 0.0
    for key, limit in keys(username, client):
        count, oldest = db.session.execute(
            select(func.count(LoginFailure.id), func.min(LoginFailure.failed_at)).where(
                LoginFailure.key == key, LoginFailure.failed_at > since
            )
        ).one()
        if count >= limit:
            # Failures beyond the limit push the unlock time out by the newest ones too.
            nth = db.session.scalars(
                select(LoginFailure.failed_at)
                .where(LoginFailure.key == key, LoginFailure.failed_at > since)
                .order_by(LoginFailure.failed_at.desc())
                .offset(limit - 1)
                .limit(1)
            ).first() or oldest
            wait = max(wait, (nth + _window() - now).total_seconds())
    return max(1, math.ceil(wait)) if wait > 0 else None


def record_failure(username: str, client: str) -> None:
    now = utcnow()
    for key, _limit in keys(username, client):
        db.session.add(LoginFailure(key=key, failed_at=now))
    LoginFailure.query.filter(LoginFailure.failed_at < now - _window()).delete()


def clear_account(username: str) -> None:
    LoginFailure.query.filter(LoginFailure.key == f"user:{username.lower()}"[:160]).delete()
