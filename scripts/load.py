#!/usr/bin/env python3
"""A bounded load generator that counts every answer, for the multi-host scenarios.

    load.py --url=http://127.0.0.1:PORT/PATH [--token=JWT] [--seconds=10] [--concurrency=4]
            [--max-requests=20000] [--write-every=N --title-prefix=P [--max-writes=N]] [--health-every=N]
            [--stop-file=PATH] [--pace=SECONDS] [--timeout=SECONDS]
    load.py --inside-test-network=10.x.y.0/24 --url=http://10.x.y.z:PORT/PATH ...   (run on a test host)

Sends GET requests from a few threads until the time or the request budget is spent, or
the stop file appears (a runbook's step is over); each thread waits --pace seconds
between its requests, so the load stays a load and not a benchmark. With --write-every, every Nth request
of a thread creates a task instead (POST /api/tasks, a unique title), until --max-writes
were sent (then it reads: an account's storage quota must not be what fails); with
--health-every, every Nth asks /health and counts the releases that answered. Prints
JSON: {"total", "by_status": {"200": n, ...}, "errors" (no HTTP answer at all),
"error_kinds", "failed" (errors and answers other than 2xx), "last_status", "seconds",
"longest_gap_s" (the longest time without a good answer), "written" (titles created),
"writes_failed", "releases": {"<release> on <schema revision>": n}, "failures": the first 20
failed requests, each with when, what, and who answered (HAProxy, nginx or the app: the
start of the body)}. Only 127.0.0.1 is
accepted: test traffic goes to ports published on this machine's loopback, nowhere else.
With --inside-test-network=NETWORK, where the load runs on a test host to reach a floating
address that exists only in the test hosts' network, an address in that private network is
accepted instead (never a public, link-local or loopback one, never a name).
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import os
import sys
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"
MAX_FAILURES_KEPT = 20


class Load:
    """The counters the threads share."""

    def __init__(self, port: int, path: str, headers: dict, seconds: float, max_requests: int, *,
                 write_every: int = 0, health_every: int = 0, title_prefix: str = "load", max_writes: int = 0,
                 stop_file: str | None = None, pace: float = 0.01, host: str = LOOPBACK, timeout: float = 10):
        self.host, self.port, self.path, self.headers, self.max_requests = host, port, path, headers, max_requests
        self.timeout = timeout
        self.write_every, self.health_every, self.title_prefix = write_every, health_every, title_prefix
        self.stop_file, self.pace, self.max_writes = stop_file, pace, max_writes
        self.writes_sent = 0
        self.statuses: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.releases: Counter[str] = Counter()
        self.written: list[str] = []
        self.writes_failed = 0
        self.failures: list[dict] = []
        self.lock = threading.Lock()
        self.last_status: int | None = None
        self.sent = 0
        self.started = time.monotonic()
        self.deadline = self.started + seconds
        self.last_good = self.started
        self.longest_gap = 0.0

    def _take(self) -> bool:
        with self.lock:
            if self.sent >= self.max_requests:
                return False
            self.sent += 1
            return True

    def _running(self) -> bool:
        return time.monotonic() < self.deadline and not (self.stop_file and os.path.exists(self.stop_file))

    def _record(self, outcome: str | None, error: str | None, kind: str = "read", body: bytes = b"",
                detail: str = "") -> None:
        with self.lock:
            now = time.monotonic()
            if (outcome is None or not outcome.startswith("2")) and len(self.failures) < MAX_FAILURES_KEPT:
                # A failure explains itself: when, which request, and whose answer it was.
                self.failures.append({"at_s": round(now - self.started, 2), "kind": kind,
                                      "status": outcome, "error": detail or error,
                                      "body": body[:160].decode("utf-8", "replace")})
            if outcome is not None:
                self.statuses[outcome] += 1
            else:
                self.errors[error] += 1
            if outcome is not None and outcome.startswith("2"):
                self.longest_gap = max(self.longest_gap, now - self.last_good)
                self.last_good = now
            self.last_status = int(outcome) if outcome else None

    def _take_write(self) -> bool:
        with self.lock:
            if self.max_writes and self.writes_sent >= self.max_writes:
                return False
            self.writes_sent += 1
            return True

    def _request(self, conn, thread: int, number: int) -> tuple[str, str, bytes | None]:
        if self.write_every and number % self.write_every == 0 and self._take_write():
            title = f"{self.title_prefix}-{thread}-{number}"
            body = json.dumps({"title": title}).encode()
            headers = {**self.headers, "Content-Type": "application/json"}
            conn.request("POST", "/api/tasks", body=body, headers=headers)
            return "write", title, body
        if self.health_every and number % self.health_every == 1:
            conn.request("GET", "/health", headers=self.headers)
            return "health", "", None
        conn.request("GET", self.path, headers=self.headers)
        return "read", "", None

    def worker(self, thread: int = 0) -> None:
        conn = None
        number = 0
        while self._running() and self._take():
            number += 1
            kind, title = "read", ""
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                kind, title, _ = self._request(conn, thread, number)
                response = conn.getresponse()
                payload = response.read()
                self._record(str(response.status), None, kind, payload)
                if kind == "write":
                    with self.lock:
                        if response.status == 201:
                            self.written.append(title)
                        else:
                            self.writes_failed += 1
                elif kind == "health" and response.status == 200:
                    answer = json.loads(payload)
                    # Which release answered, on which schema (the revision shows to a signed-in caller).
                    release = f"{answer.get('release', '?')} on {answer.get('schema_revision', '?')}"
                    with self.lock:
                        self.releases[release] += 1
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self._record(None, type(exc).__name__, kind, detail=f"{type(exc).__name__}: {exc}"[:160])
                if kind == "write":
                    with self.lock:
                        self.writes_failed += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
            time.sleep(self.pace)

    def answer(self) -> dict:
        good = sum(n for status, n in self.statuses.items() if status.startswith("2"))
        total = sum(self.statuses.values()) + sum(self.errors.values())
        return {
            "total": total,
            "by_status": dict(self.statuses),
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors),
            "failed": total - good,
            "last_status": self.last_status,
            "seconds": round(time.monotonic() - self.started, 1),
            "longest_gap_s": round(max(self.longest_gap, time.monotonic() - self.last_good), 2),
            "written": self.written,
            "writes_failed": self.writes_failed,
            "releases": dict(self.releases),
            "failures": self.failures,
        }


def target_allowed(host: str | None, inside_test_network: str | None) -> bool:
    """127.0.0.1 always; with inside_test_network (the test hosts' network, private), an
    address in it instead (an address, not a name: nothing resolves it elsewhere)."""
    if host == LOOPBACK:
        return True
    if not inside_test_network:
        return False
    try:
        address = ipaddress.ip_address(host or "")
        network = ipaddress.ip_network(inside_test_network)
    except ValueError:
        return False
    return (network.is_private and not network.is_link_local and not network.is_loopback
            and address in network and not address.is_link_local)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-requests", type=int, default=20_000)
    parser.add_argument("--write-every", type=int, default=0)
    parser.add_argument("--health-every", type=int, default=0)
    parser.add_argument("--title-prefix", default="load")
    parser.add_argument("--max-writes", type=int, default=0, help="writes at most, then reads only (0: no bound)")
    parser.add_argument("--stop-file")
    parser.add_argument("--pace", type=float, default=0.01, help="seconds each thread waits between requests")
    parser.add_argument("--timeout", type=float, default=10,
                        help="seconds a request may wait for its answer (a dead peer sends no reset)")
    parser.add_argument("--inside-test-network", metavar="NETWORK",
                        help="accept an address in this private network: the load runs on a test host in it")
    args = parser.parse_args(argv)
    url = urlsplit(args.url)
    if url.scheme != "http" or not url.port or not target_allowed(url.hostname, args.inside_test_network):
        where = f"in {args.inside_test_network} (private)" if args.inside_test_network else LOOPBACK
        parser.error(f"--url must be http://ADDRESS:PORT/... with ADDRESS {where}, not {args.url}")
    headers = {"Accept": "application/json"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    load = Load(url.port, url.path + (f"?{url.query}" if url.query else ""), headers, args.seconds,
                args.max_requests, write_every=args.write_every, health_every=args.health_every,
                title_prefix=args.title_prefix, stop_file=args.stop_file, pace=args.pace,
                max_writes=args.max_writes, host=url.hostname, timeout=args.timeout)
    threads = [threading.Thread(target=load.worker, args=(n,)) for n in range(args.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(load.answer()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
