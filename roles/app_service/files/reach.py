"""Can this host reach HOST:PORT? Prints JSON: {"host", "port", "state"}, where state is
open (something listens), refused (the host answers, nothing listens yet: a database
about to be installed), unresolved (the name is unknown here) or unreachable (filtered,
no route, or silent)."""

import json
import socket
import sys

host, port = sys.argv[1], int(sys.argv[2])
try:
    with socket.create_connection((host, port), timeout=5):
        state = "open"
except ConnectionRefusedError:
    state = "refused"
except socket.gaierror:
    state = "unresolved"
except OSError:
    state = "unreachable"
print(json.dumps({"host": host, "port": port, "state": state}))
