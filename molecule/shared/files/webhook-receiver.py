#!/usr/bin/python3
"""The tests' stand-in for a team's chat or pager: takes webhook POSTs on 127.0.0.1:9099
and appends one JSON line per notice to the file named in argv[1]: each alert of
Alertmanager's (status, alertname, host, runbook), or task-manager-notify's notice as
it came (host, unit, status, result, log). verify_monitoring.yml and verify_notify.yml
read them."""

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

OUT = sys.argv[1]


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with open(OUT, "a", encoding="utf-8") as out:
            if "alerts" not in body:
                out.write(json.dumps(body) + "\n")
            for alert in body.get("alerts", []):
                labels, notes = alert.get("labels", {}), alert.get("annotations", {})
                notice = {"status": alert.get("status"), "alertname": labels.get("alertname"),
                          "host": labels.get("host"), "runbook": notes.get("runbook")}
                out.write(json.dumps(notice) + "\n")
        self.send_response(200)
        self.end_headers()


HTTPServer(("127.0.0.1", 9099), Receiver).serve_forever()
