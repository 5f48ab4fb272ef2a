"""run.py's development server: the manual's `export FLASK_DEBUG=1` (its 13.2) turns on
Flask's debugger and reloader there, and only there: the deployed service is gunicorn,
which never reads it."""

from __future__ import annotations

import ipaddress

TRUE = ("1", "true", "yes", "on")


def debug_from(environ: dict, host: str) -> bool:
    """FLASK_DEBUG as the manual sets it. The debugger runs any code its page is sent, so
    it is refused on an address other machines reach."""
    if environ.get("FLASK_DEBUG", "").strip().lower() not in TRUE:
        return False
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SystemExit(f"FLASK_DEBUG is on and FLASK_RUN_HOST is {host}: the debugger runs any code sent to it, "
                         "so it listens on 127.0.0.1 only. Unset FLASK_RUN_HOST or FLASK_DEBUG.")
    return True
