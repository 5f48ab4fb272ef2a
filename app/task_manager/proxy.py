"""Which caller is this: the proxy's forwarded client, or whoever connected directly.

The contract with the deployment: systemd hands gunicorn two listening sockets. TCP
127.0.0.1:5000 is for people and checks on the host (the manual's `curl
http://localhost:5000/health`); any local process can connect there, so its headers are
the caller's own words and are never believed. nginx reaches the API over a unix socket
that only its group can open. gunicorn gives requests from a unix socket an empty (or
non-IP) REMOTE_ADDR, and only those carry X-Forwarded-For / X-Forwarded-Proto that were
written by the proxy. X-Forwarded-Host is never honoured: nothing here needs the host,
and believing it would let a client choose the host of any URL the app builds.
"""

from __future__ import annotations

import functools
import ipaddress

from flask import Request

# environ key: True when the request came through the proxy's unix socket.
VIA_PROXY = "task_manager.via_proxy"
# environ key: what the connection itself said, before any forwarded header was applied.
ORIGINAL = "task_manager.proxy.original"


# Every request reads its client's address twice (the middleware, the access log), and a
# worker sees the same few addresses again and again: what they parse to is remembered.
@functools.lru_cache(maxsize=1024)
def parse_ip(value: str | None) -> str | None:
    """The address in canonical form, or None when it is not a plain IP address."""
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def _nth_from_the_right(header: str | None, hops: int) -> str | None:
    # Each proxy appends the address it saw, so the entry `hops` from the right is the
    # one our own nearest trusted proxy wrote; anything left of it is the client's say-so.
    if not header or hops <= 0:
        return None
    values = [v.strip() for v in header.split(",")]
    return values[-hops] if len(values) >= hops else None


class ProxiedClient:
    """WSGI middleware: believe forwarded headers only on the proxy's unix socket."""

    def __init__(self, wsgi_app, hops: int):
        self.wsgi_app = wsgi_app
        self.hops = int(hops)

    def __call__(self, environ, start_response):
        remote = environ.get("REMOTE_ADDR") or ""
        environ[ORIGINAL] = {"REMOTE_ADDR": remote, "wsgi.url_scheme": environ.get("wsgi.url_scheme")}
        if parse_ip(remote) is not None:
            environ[VIA_PROXY] = False  # a TCP peer: its X-Forwarded-* headers are ignored
            return self.wsgi_app(environ, start_response)
        environ[VIA_PROXY] = True
        client = parse_ip(_nth_from_the_right(environ.get("HTTP_X_FORWARDED_FOR"), self.hops))
        # No usable forwarded address leaves no address at all: never a made-up one.
        environ["REMOTE_ADDR"] = client or ""
        proto = (_nth_from_the_right(environ.get("HTTP_X_FORWARDED_PROTO"), self.hops) or "").lower()
        if proto in ("http", "https"):
            environ["wsgi.url_scheme"] = proto
        return self.wsgi_app(environ, start_response)


def via_proxy(request: Request) -> bool:
    # A request that never passed the middleware (none should) counts as public.
    return bool(request.environ.get(VIA_PROXY, True))


def is_local_direct(request: Request) -> bool:
    """A caller on this host that connected straight to the API's TCP port."""
    if via_proxy(request):
        return False
    address = parse_ip(request.environ.get("REMOTE_ADDR"))
    return address is not None and ipaddress.ip_address(address).is_loopback


def client_address(request: Request) -> str | None:
    """The caller's address as a plain IP, or None when it is not known."""
    return parse_ip(request.remote_addr)
