"""task-manager-notify: tell a person that an on-host job failed.

  task-manager-notify UNIT

Started by systemd as task-manager-notify@UNIT.service, through the OnFailure= of the
units that run the task manager's jobs on the host (the daily check, each backup). It
sends the unit's name, its result and the last lines of its journal to a webhook (JSON,
POST) and/or by e-mail through an SMTP relay, as the settings say
(TASK_MANAGER_NOTIFY_CONFIG, default /etc/task-manager/notify.json, root's: the webhook's
URL may hold a token). Uses only Debian's python3.

Exit status: 0 sent to every destination, 1 a destination failed (the journal says which).
"""

from __future__ import annotations

import json
import os
import smtplib
import socket
import ssl
import subprocess
import sys
import urllib.request
from email.message import EmailMessage
from pathlib import Path

from task_manager_host import paths

TIMEOUT = 20


def read_config() -> dict:
    # Not common.read_json: its message would name the file a second time in main's line
    # ("cannot read the settings: cannot read ..."), which says what failed itself.
    path = Path(os.environ.get("TASK_MANAGER_NOTIFY_CONFIG", paths.NOTIFY_CONFIG))
    return json.loads(path.read_text(encoding="utf-8"))


def unit_facts(unit: str, lines: int) -> dict:
    """What systemd knows of the unit's last run; empty figures when it cannot say."""
    # Fixed programs, an argument list, no shell: the unit's name cannot become a command.
    shown = subprocess.run([paths.SYSTEMCTL, "show", unit, "--property=Result,ExecMainStatus,Description"],  # noqa: S603
                           capture_output=True, text=True, check=False).stdout
    props = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
    log = subprocess.run([paths.JOURNALCTL, "--unit", unit, "--lines", str(lines), "--no-pager", "--output", "cat"],  # noqa: S603
                         capture_output=True, text=True, check=False).stdout
    return {"description": props.get("Description", ""), "result": props.get("Result", "unknown"),
            "exit_status": props.get("ExecMainStatus", ""), "log": log.splitlines()[-lines:]}


def notice(config: dict, unit: str) -> dict:
    return {"host": config.get("host") or socket.getfqdn(), "unit": unit, "status": "failed",
            **unit_facts(unit, int(config.get("journal_lines", 30)))}


def send_webhook(url: str, message: dict) -> None:
    if not url.startswith(("http://", "https://")):
        raise OSError("the webhook is not an http(s) URL")
    request = urllib.request.Request(url, data=json.dumps(message).encode(), method="POST",  # noqa: S310 (checked)
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:  # noqa: S310 (checked above)
        answer.read()


def send_mail(config: dict, message: dict) -> None:
    mail = EmailMessage()
    mail["Subject"] = f"[task manager] {message['unit']} failed on {message['host']}"
    mail["From"], mail["To"] = config["email_from"], config["email_to"]
    mail.set_content("\n".join([f"{message['unit']} ({message['description']}) on {message['host']}: "
                                f"{message['result']}, exit status {message['exit_status']}", "", *message["log"]]))
    host, port = config["smarthost"].rsplit(":", 1)
    with smtplib.SMTP(host, int(port), timeout=TIMEOUT) as smtp:
        if config.get("require_tls", True):
            # The relay's certificate is checked against the system's CAs (or the settings'
            # ca_file) and its name: smtplib's own default checks neither.
            smtp.starttls(context=ssl.create_default_context(cafile=config.get("ca_file") or None))
        smtp.send_message(mail)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: task-manager-notify UNIT", file=sys.stderr)
        return 2
    try:
        config = read_config()
    except (OSError, ValueError) as exc:
        print(f"task-manager-notify: cannot read the settings: {exc}", file=sys.stderr)
        return 1
    message = notice(config, args[0])
    failed = []
    if config.get("webhook_url"):
        try:
            send_webhook(config["webhook_url"], message)
        except OSError as exc:  # urllib's errors are OSErrors; the URL itself is never printed
            failed.append(f"webhook: {exc}")
    if config.get("email_to"):
        try:
            send_mail(config, message)
        except (OSError, smtplib.SMTPException) as exc:
            failed.append(f"e-mail to {config['email_to']}: {exc}")
    for reason in failed:
        print(f"task-manager-notify: {args[0]} not notified by {reason}", file=sys.stderr)
    return 1 if failed else 0
