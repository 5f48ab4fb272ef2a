#!/usr/bin/env python3
"""A local OSV API for pip-audit where the internet is out of reach.

Serves POST /v1/query (the OSV API pip-audit calls) from a vulnerability database you
give it: OSV's own export for PyPI (https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip,
downloaded on a connected machine), or a directory of OSV JSON files. Listens on
127.0.0.1 only.
  scripts/osv-mirror.py all.zip [--port 18099]
  ansible-playbook check.yml -e period=monthly -e task_manager_vulnerability_service=osv \\
      -e task_manager_osv_url=http://127.0.0.1:18099/v1/query
"""

import argparse
import json
import re
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from packaging.version import InvalidVersion, Version


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def load(source: Path) -> dict[str, list[dict]]:
    """Advisories by canonical package name (PyPI only)."""
    if source.is_dir():
        texts = [p.read_text(encoding="utf-8") for p in sorted(source.glob("*.json"))]
    else:
        with zipfile.ZipFile(source) as archive:
            texts = [archive.read(n).decode("utf-8") for n in archive.namelist() if n.endswith(".json")]
    index: dict[str, list[dict]] = {}
    for text in texts:
        vuln = json.loads(text)
        for affected in vuln.get("affected", []):
            package = affected.get("package", {})
            if package.get("ecosystem") == "PyPI":
                index.setdefault(canonical(package["name"]), []).append(vuln)
    return index


def _in_range(version: Version, events: list[dict]) -> bool:
    affected = False
    for event in events:  # OSV events are ordered: introduced, fixed, introduced, ...
        try:
            if "introduced" in event:
                affected = event["introduced"] == "0" or version >= Version(event["introduced"])
                continue
            fixed = "fixed" in event and version >= Version(event["fixed"])
            past_last = "last_affected" in event and version > Version(event["last_affected"])
        except InvalidVersion:
            continue
        if fixed or past_last:
            affected = False
    return affected


def affects(vuln: dict, name: str, version: str) -> bool:
    for affected in vuln.get("affected", []):
        package = affected.get("package", {})
        if package.get("ecosystem") != "PyPI" or canonical(package.get("name", "")) != name:
            continue
        if version in affected.get("versions", []):
            return True
        try:
            parsed = Version(version)
        except InvalidVersion:
            continue
        if any(r.get("type") == "ECOSYSTEM" and _in_range(parsed, r.get("events", []))
               for r in affected.get("ranges", [])):
            return True
    return False


def handler_for(index: dict[str, list[dict]]):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            if self.path.rstrip("/") != "/v1/query":
                self.send_error(404)
                return
            try:
                query = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                name = canonical(query["package"]["name"])
                version = str(query["version"])
            except (ValueError, KeyError, TypeError):
                self.send_error(400, "expected {package: {name, ecosystem}, version}")
                return
            found = [v for v in index.get(name, []) if affects(v, name, version)]
            body = json.dumps({"vulns": found} if found else {}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            pass

    return Handler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("database", type=Path, help="OSV's PyPI all.zip, or a directory of OSV JSON files")
    parser.add_argument("--port", type=int, default=18099)
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long (tests)")
    args = parser.parse_args()
    index = load(args.database)
    print(f"osv-mirror: {sum(len(v) for v in index.values())} advisories for {len(index)} packages "
          f"on http://127.0.0.1:{args.port}/v1/query", flush=True)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler_for(index))
    if args.seconds is not None:
        threading.Timer(args.seconds, server.shutdown).start()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
