#!/usr/bin/env python3
"""A bounded load generator that counts every answer, for the multi-host scenarios.

    load.py --url=http://127.0.0.1:PORT/PATH [--token=JWT] [--seconds=10] [--concurrency=4]
            [--max-requests=20000]

Sends GET requests from a few threads until the time or the request budget is spent,
then prints JSON: {"total", "by_status": {"200": n, ...}, "errors" (no HTTP answer at
all), "error_kinds", "last_status", "seconds"}. Only 127.0.0.1 is accepted: test
traffic goes to ports published on this machine's loopback, nowhere else.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"


class Load:
    """The counters the threads share."""

    def __init__(self, port: int, path: str, headers: dict, seconds: float, max_requests: int):
        self.port, self.path, self.headers, self.max_requests = port, path, headers, max_requests
        self.statuses: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.last_status: int | None = None
        self.sent = 0
        self.started = time.monotonic()
        self.deadline = self.started + seconds

    def _take(self) -> bool:
        with self.lock:
            if self.sent >= self.max_requests:
                return False
            self.sent += 1
            return True

    def _record(self, outcome: str | None, error: str | None) -> None:
        with self.lock:
            if outcome is not None:
                self.statuses[outcome] += 1
            else:
                self.errors[error] += 1
            self.last_status = int(outcome) if outcome else None

    def worker(self) -> None:
        conn = None
        while time.monotonic() < self.deadline and self._take():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=10)
                conn.request("GET", self.path, headers=self.headers)
                response = conn.getresponse()
                response.read()
                self._record(str(response.status), None)
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                self._record(None, type(exc).__name__)
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
            time.sleep(0.01)

    def answer(self) -> dict:
        return {
            "total": sum(self.statuses.values()) + sum(self.errors.values()),
            "by_status": dict(self.statuses),
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors),
            "last_status": self.last_status,
            "seconds": round(time.monotonic() - self.started, 1),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-requests", type=int, default=20_000)
    args = parser.parse_args(argv)
    url = urlsplit(args.url)
    if url.scheme != "http" or url.hostname != LOOPBACK or not url.port:
        parser.error(f"--url must be http://{LOOPBACK}:PORT/..., not {args.url}")
    headers = {"Accept": "application/json"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    load = Load(url.port, url.path + (f"?{url.query}" if url.query else ""), headers, args.seconds,
                args.max_requests)
    threads = [threading.Thread(target=load.worker) for _ in range(args.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(load.answer()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
