"""task_manager_host.notify (task-manager-notify): the notice a failed unit sends, to a real
HTTP server on loopback and a real SMTP listener, with stand-ins for systemctl and
journalctl (no systemd here)."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import socketserver
import ssl
import threading
from pathlib import Path
from typing import ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from task_manager_host import notify, paths

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
    """Just enough SMTP to take one message, with STARTTLS when the test gives it a certificate."""

    got: ClassVar[list] = []
    tls: ClassVar[ssl.SSLContext | None] = None

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        self.reply("220 test")
        self.session(offer_tls=self.tls is not None)

    def session(self, offer_tls: bool) -> None:
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
                self.reply("250-test\r\n250 STARTTLS" if offer_tls else "250 test")
            elif line.upper().startswith("STARTTLS") and offer_tls:
                self.reply("220 go ahead")
                try:
                    self.request = self.tls.wrap_socket(self.request, server_side=True)
                except (ssl.SSLError, OSError):
                    return  # the client refused the certificate
                self.rfile, self.wfile = self.request.makefile("rb"), self.request.makefile("wb", buffering=0)
                self.session(offer_tls=False)  # the session again, inside TLS
                return
            else:
                self.reply("250 ok")


@pytest.fixture
def smtp():
    Mails.got, Mails.tls = [], None
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
    monkeypatch.setattr(paths, "SYSTEMCTL", str(tmp_path / "systemctl"))
    monkeypatch.setattr(paths, "JOURNALCTL", str(tmp_path / "journalctl"))
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


def relay_certificate(directory: Path) -> tuple[Path, Path]:
    """A CA of the test's own and a certificate it signed for 127.0.0.1: (ca.pem, chain with key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test relay CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_file, chain = directory / "ca.pem", directory / "relay.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return ca_file, chain


def test_starttls_checks_the_relays_certificate(host, smtp, tmp_path, capsys):
    relay, mails = smtp
    ca_file, chain = relay_certificate(tmp_path)
    mails.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    mails.tls.load_cert_chain(chain)
    # Signed by a CA the system does not know: refused, the notice said lost, nothing sent in clear.
    host(email_to="ops@example.org", email_from="tm@example.org", smarthost=relay)
    assert notify.main(["task-manager-check"]) == 1
    assert "CERTIFICATE_VERIFY_FAILED" in capsys.readouterr().err and mails.got == []
    # With that CA named in the settings: delivered, inside TLS.
    host(email_to="ops@example.org", email_from="tm@example.org", smarthost=relay, ca_file=str(ca_file))
    assert notify.main(["task-manager-check"]) == 0
    assert len(mails.got) == 1 and "To: ops@example.org" in mails.got[0]
