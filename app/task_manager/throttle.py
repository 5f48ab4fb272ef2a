"""Throttling of failed logins and of registrations, shared by all workers through the database.

Failed logins never lock anything: each key gets some free failures, after which every
further failure doubles the wait before the next try (up to a cap). Keys:

  pair:<account>|<client>  the guesses at one account from one client. Someone else's
                           failures never slow the owner down on their own devices.
  client:<client>          every failure from one client, whatever the account, against
                           one address spraying a password across many accounts.
  account:<account>        every failure at one account, from any client, against guessing
                           one account from many addresses.
  device:<id>              the failures of one trusted device (below), and only those.

A device that has signed in to an account holds a device token for it (signed, with the
account's name and a random id; OWASP's "device cookie"). Presented at sign-in, the token
puts that try under its own device key alone: the failures of other clients behind the same
address (an office, a carrier's NAT, one IPv6 /64) and of other addresses at the same account
slow the attackers, never the owner's own devices. A try without one (a new device) is held
to the pair, client and account keys. A success clears its pair and its device key.

Registrations are counted per client ('register:<client>')
and refused over a plain limit inside a window. A client is its IP address; an IPv6
client is its /64, the block one subscriber usually holds. An IPv6 client's registrations
are also counted per /48 ('register:<net>/48'), a site's usual allocation, under a larger
limit: whoever holds a /48 has 65,536 /64s to register from one after another.
"""

from __future__ import annotations

import ipaddress
import math
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select

from .extensions import db
from .models import LoginFailure, utcnow

KEY_MAX = 160
MAX_DOUBLINGS = 30  # 2**30 x base is beyond any cap: no need to compute larger powers


def client_key(address: str | None) -> str:
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))  # (int, prefix): no scope id to trip on


def _pair(username: str, client: str | None) -> str:
    # The account part comes first and is bounded (usernames are at most 64 characters).
    return f"pair:{username.lower()[:64]}|{client_key(client)}"[:KEY_MAX]


def _client(client: str | None) -> str:
    return f"client:{client_key(client)}"[:KEY_MAX]


def _account(username: str) -> str:
    return f"account:{username.lower()[:64]}"[:KEY_MAX]


def _device(device: str) -> str:
    return f"device:{device}"[:KEY_MAX]


def _register(client: str | None) -> str:
    return f"register:{client_key(client)}"[:KEY_MAX]


def network_key(address: str | None) -> str | None:
    """An IPv6 client's /48, or None for an IPv4 (or unknown) one."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return None
    if ip.version != 6 or ip.ipv4_mapped is not None:
        return None
    return str(ipaddress.IPv6Network((int(ip) >> 80 << 80, 48)))


def _register_keys(client: str | None) -> list[tuple[str, int]]:
    cfg = current_app.config
    keys = [(_register(client), int(cfg["REGISTER_MAX_PER_CLIENT"]))]
    network = network_key(client)
    if network:
        keys.append((f"register:{network}"[:KEY_MAX], int(cfg["REGISTER_MAX_PER_NETWORK"])))
    return keys


def _seconds(delta: timedelta) -> int | None:
    seconds = delta.total_seconds()
    return max(1, math.ceil(seconds)) if seconds > 0 else None


def _count_and_newest(key: str, since: datetime) -> tuple[int, datetime | None]:
    return db.session.execute(
        select(func.count(LoginFailure.id), func.max(LoginFailure.failed_at)).where(
            LoginFailure.key == key, LoginFailure.failed_at > since
        )
    ).one()


def backoff(failures: int, free: int) -> float:
    """Seconds to wait after `failures` failures of which `free` cost nothing."""
    cfg = current_app.config
    if failures < free or failures == 0:
        return 0.0
    doublings = min(failures - max(free, 1), MAX_DOUBLINGS)
    return float(min(cfg["LOGIN_BACKOFF_BASE_SECONDS"] * 2**doublings, cfg["LOGIN_BACKOFF_MAX_SECONDS"]))


def _login_keys(username: str, client: str | None, device: str | None) -> list[tuple[str, int]]:
    """The keys a sign-in try is held to, each with its free failures."""
    cfg = current_app.config
    if device:
        return [(_device(device), cfg["LOGIN_FREE_FAILURES_PER_ACCOUNT"])]
    return [(_pair(username, client), cfg["LOGIN_FREE_FAILURES_PER_ACCOUNT"]),
            (_client(client), cfg["LOGIN_FREE_FAILURES_PER_CLIENT"]),
            (_account(username), cfg["LOGIN_FREE_FAILURES_ACROSS_CLIENTS"])]


def login_retry_after(username: str, client: str | None, device: str | None = None) -> int | None:
    """Seconds until this account may be tried again from this client (or trusted device),
    or None for now."""
    cfg = current_app.config
    now = utcnow()
    since = now - timedelta(seconds=cfg["LOGIN_FAILURE_WINDOW_SECONDS"])
    wait = timedelta(0)
    for key, free in _login_keys(username, client, device):
        count, newest = _count_and_newest(key, since)
        delay = backoff(count, free)
        if delay and newest is not None:
            wait = max(wait, newest + timedelta(seconds=delay) - now)
    return _seconds(wait)


def record_login_failure(username: str, client: str | None, device: str | None = None) -> None:
    now = utcnow()
    for key, _ in _login_keys(username, client, device):
        db.session.add(LoginFailure(key=key, failed_at=now))
    _prune(now)


def clear_login_failures(username: str, client: str | None, device: str | None = None) -> None:
    keys = [_pair(username, client)] + ([_device(device)] if device else [])
    LoginFailure.query.filter(LoginFailure.key.in_(keys)).delete()


def register_retry_after(client: str | None) -> int | None:
    """Seconds until this client may register again, or None for now."""
    cfg = current_app.config
    now = utcnow()
    window = timedelta(seconds=cfg["REGISTER_WINDOW_SECONDS"])
    wait = timedelta(0)
    for key, limit in _register_keys(client):
        # The registration that leaves the window soonest among the newest `limit` frees a place.
        oldest_counted = db.session.scalars(
            select(LoginFailure.failed_at)
            .where(LoginFailure.key == key, LoginFailure.failed_at > now - window)
            .order_by(LoginFailure.failed_at.desc())
            .offset(limit - 1)
            .limit(1)
        ).first()
        if oldest_counted is not None:
            wait = max(wait, oldest_counted + window - now)
    return _seconds(wait)


def record_registration(client: str | None) -> None:
    now = utcnow()
    for key, _ in _register_keys(client):
        db.session.add(LoginFailure(key=key, failed_at=now))
    _prune(now)


def _prune(now: datetime) -> None:
    cfg = current_app.config
    keep = max(cfg["LOGIN_FAILURE_WINDOW_SECONDS"], cfg["REGISTER_WINDOW_SECONDS"])
    LoginFailure.query.filter(LoginFailure.failed_at < now - timedelta(seconds=keep)).delete()
