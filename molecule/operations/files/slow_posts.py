#!/usr/bin/env python3
"""Requests caught mid-way by a stop: each sends half of a POST body straight to
gunicorn, waits until systemd is stopping the service, then sends the rest.
Prints one JSON object: the status each request got, and what it saw."""

import json
import socket
import subprocess
import sys
import threading
import time

TOKEN, COUNT = sys.argv[1], int(sys.argv[2])
results = [None] * COUNT


def state() -> str:
    return subprocess.run(["/usr/bin/systemctl", "show", "-p", "ActiveState", "--value", "task-manager.service"],
                          capture_output=True, text=True, check=False).stdout.strip()


def one(index: int) -> None:
    body = json.dumps({"title": f"in flight {index}", "description": "x" * 2000}).encode()
    head = (f"POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    try:
        with socket.create_connection(("127.0.0.1", 5000), timeout=90) as conn:
            conn.sendall(head + body[: len(body) // 2])
            deadline = time.time() + 90
            while state() not in ("deactivating", "inactive") and time.time() < deadline:
                time.sleep(0.05)
            seen = state()
            time.sleep(1.0)  # well inside the stop: SIGTERM has reached the workers
            conn.sendall(body[len(body) // 2 :])
            reply = b""
            while chunk := conn.recv(65536):
                reply += chunk
        results[index] = {"status": int(reply.split(b" ", 2)[1]) if reply else 0, "state_when_resumed": seen}
    except OSError as exc:
        results[index] = {"status": 0, "error": repr(exc)}


threads = [threading.Thread(target=one, args=(i,)) for i in range(COUNT)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"results": results, "state_after": state()}))
