"""roles/notify/files/task-manager-notify.py: the notice a failed unit sends, to a real
HTTP server on loopback and a real SMTP listener, with stand-ins for systemctl and
journalctl (no systemd here)."""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
from pathlib import Path
from typing import ClassVar

import pytest

from conftest import NOTIFY_SCRIPT, load_script

notify = load_script("task_manager_notify", NOTIFY_SCRIPT)

SYSTEMCTL = "#!/bin/sh\nprintf 'Result=exit-code\\nExecMainStatus=2\\nDescription=The daily check\\n'\n"
JOURNALCTL = "#!/bin/sh\nfor i in $(seq 1 40); do echo \"line $i\"; done\necho 'LIMITS BROKEN: disk is 91 % used'\n"


class Received(http.server.BaseHTTPRequestHandler):
    bodies: ClassVar[list] = []
    status = 200

    def do_POST(self):
        self.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    Received.bodies, Received.status = [], 200
    server = http.server.HTTPServer(("127.0.0.1", 0), Received)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", Received
    server.shutdown()


class Mails(socketserver.StreamRequestHandler):
    """Just enough SMTP to take one message (no STARTTLS: the tests turn it off)."""

    got: ClassVar[list] = []

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        self.reply("220 test")
        data = False
        lines = []
        for raw in self.rfile:
            line = raw.decode().rstrip("\r\n")
            if data:
                if line == ".":
                    data = False
                    Mails.got.append("\n".join(lines))
                    self.reply("250 ok")
                else:
                    lines.append(line)
            elif line.upper().startswith("DATA"):
                data = True
                self.reply("354 go")
            elif line.upper().startswith("QUIT"):
                self.reply("221 bye")
                return
            elif line.upper().startswith("EHLO"):
                self.reply("250 test")
            else:
                self.reply("250 ok")


@pytest.fixture
def smtp():
    Mails.got = []
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Mails)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", Mails
    server.shutdown()


@pytest.fixture
def host(tmp_path, monkeypatch):
    for name, text in (("systemctl", SYSTEMCTL), ("journalctl", JOURNALCTL)):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        path.chmod(0o755)
    monkeypatch.setattr(notify, "SYSTEMCTL", str(tmp_path / "systemctl"))
    monkeypatch.setattr(notify, "JOURNALCTL", str(tmp_path / "journalctl"))
    config = tmp_path / "notify.json"
    monkeypatch.setenv("TASK_MANAGER_NOTIFY_CONFIG", str(config))

    def write(**settings) -> Path:
        config.write_text(json.dumps({"host": "tm-app1", "journal_lines": 5, **settings}), encoding="utf-8")
        return config

    return write


def test_a_failed_unit_is_posted_with_its_result_and_last_lines(host, webhook):
    url, received = webhook
    host(webhook_url=url)
    assert notify.main(["task-manager-check"]) == 0
    assert received.bodies == [{
        "host": "tm-app1", "unit": "task-manager-check", "status": "failed", "description": "The daily check",
        "result": "exit-code", "exit_status": "2",
        "log": ["line 37", "line 38", "line 39", "line 40", "LIMITS BROKEN: disk is 91 % used"]}]


def test_a_webhook_that_refuses_fails_the_notice_without_printing_its_url(host, webhook, capsys):
    url, received = webhook
    received.status = 500
    host(webhook_url=url + "?token=secret")
    assert notify.main(["task-manager-backup@daily"]) == 1
    err = capsys.readouterr().err
    assert "task-manager-backup@daily not notified by webhook: HTTP Error 500" in err
    assert "secret" not in err


def test_a_mail_goes_through_the_relay(host, smtp):
    relay, mails = smtp
    host(email_to="ops@example.org", email_from="tm@example.org", smarthost=relay, require_tls=False)
    assert notify.main(["task-manager-backup@daily"]) == 0
    (mail,) = mails.got
    assert "Subject: [task manager] task-manager-backup@daily failed on tm-app1" in mail
    assert "To: ops@example.org" in mail
    assert "LIMITS BROKEN: disk is 91 % used" in mail


def test_an_unreachable_relay_fails_saying_which_notice_was_lost(host, capsys):
    host(email_to="ops@example.org", email_from="tm@example.org", smarthost="127.0.0.1:1", require_tls=False)
    assert notify.main(["task-manager-check"]) == 1
    assert "task-manager-check not notified by e-mail to ops@example.org" in capsys.readouterr().err


def test_missing_settings_or_a_wrong_call_fail(host, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("TASK_MANAGER_NOTIFY_CONFIG", str(tmp_path / "none.json"))
    assert notify.main(["task-manager-check"]) == 1
    assert "cannot read the settings" in capsys.readouterr().err
    assert notify.main([]) == 2
