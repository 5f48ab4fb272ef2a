"""plugins/modules/task_manager_command.py: a host command's JSON answer read once, in
Python: what failed, what changed and what the operator is told."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT

MODULE = ROOT / "plugins" / "modules" / "task_manager_command.py"
spec = importlib.util.spec_from_file_location("task_manager_command", MODULE)
command = importlib.util.module_from_spec(spec)
spec.loader.exec_module(command)


@pytest.mark.parametrize(("stdout", "answer"), [
    ('{"changed": true}', {"changed": True}),
    ("[1, 2]", [1, 2]),
    ("copying 3 sets\n{\"copied\": 3}\n", {"copied": 3}),
    ("", {}),
    ("  \n", {}),
    ("no json here", None),
])
def test_the_answer_is_the_whole_output_or_its_last_line(stdout, answer):
    assert command.parse_answer(stdout) == answer


LB = "task-manager-lb"


@pytest.mark.parametrize(("ran", "judged"), [
    ((0, '{"changed": true, "manifest": "m.json"}', "", "changed"), (False, True, None)),
    ((0, '{"changed": false}', "", "changed"), (False, False, None)),
    ((0, '{"matched": 3}', "", "matched"), (False, True, None)),
    ((0, '{"changed": true}', "", ""), (False, False, None)),
    ((0, "[]", "", "changed"), (False, False, None)),
    ((2, '{"message": "the disk is full"}', "trace\n", "changed"), (True, False, "the disk is full")),
    ((1, '{"error": "no such set"}', "", "changed"), (True, False, "no such set")),
    ((1, "", "first\nthe real reason\n\n", "changed"), (True, False, "the real reason")),
    ((1, "", f"{LB}: FAILED: app9 is not in the backend\n", "changed"), (True, False, "app9 is not in the backend")),
    ((3, "", "", "changed"), (True, False, f"{LB} exited with status 3")),
    ((0, "Traceback: boom", "", "changed"), (True, False, f"{LB} answered no JSON: Traceback: boom")),
])
def test_failed_changed_and_the_message_come_from_the_answer(ran, judged):
    rc, stdout, stderr, key = ran
    result = command.judge([f"/usr/local/sbin/{LB}", "drain"], rc, (stdout, stderr), key)
    assert (result["failed"], result["changed"], result.get("msg")) == judged
    assert result["rc"] == rc and result["cmd"][0].endswith(LB)


def run_module(tmp_path, check_mode: bool = False, **args) -> dict:
    """The module as Ansible runs it on a host: a Python process reading its arguments."""
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check_mode}}),
                         encoding="utf-8")
    done = subprocess.run([sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, check=False)
    return json.loads(done.stdout)


def test_a_real_command_with_stdin_and_a_directory(tmp_path):
    script = ("import hashlib, json, os, sys; got = sys.stdin.read().strip().encode(); "
              "print(json.dumps({'changed': True, 'got': hashlib.sha256(got).hexdigest(), 'cwd': os.getcwd()}))")
    result = run_module(tmp_path, argv=[sys.executable, "-c", script], stdin="s3cret $HOME ~", chdir=str(tmp_path))
    assert result["changed"] is True and "failed" not in result
    # Neither the shell's nor Ansible's expansion: the secret arrives as written, and the
    # result never shows it.
    assert result["answer"] == {"changed": True, "got": hashlib.sha256(b"s3cret $HOME ~").hexdigest(),
                                "cwd": str(tmp_path)}
    assert "s3cret" not in json.dumps(result)


def test_a_failing_command_fails_the_task_with_its_own_message(tmp_path):
    script = "import json; print(json.dumps({'message': 'server app9 is not in the backend'})); raise SystemExit(4)"
    result = run_module(tmp_path, argv=[sys.executable, "-c", script])
    assert (result["failed"], result["rc"], result["msg"]) == (True, 4, "server app9 is not in the backend")


def test_check_mode_runs_only_what_changes_nothing(tmp_path):
    marker = tmp_path / "ran"
    script = f"open({str(marker)!r}, 'w').close(); print('{{}}')"
    skipped = run_module(tmp_path, check_mode=True, argv=[sys.executable, "-c", script])
    # Not failed, whatever rc says (Ansible fails a result with an rc other than 0 and no "failed").
    assert (skipped["skipped"], skipped["failed"], skipped["rc"]) == (True, False, None) and not marker.exists()
    ran = run_module(tmp_path, check_mode=True, argv=[sys.executable, "-c", script], read_only=True)
    assert "skipped" not in ran and marker.exists()


def test_the_documentation_names_every_option_the_module_takes():
    """ansible-doc and ansible-lint read DOCUMENTATION: it must parse and match the spec."""
    source = MODULE.read_text(encoding="utf-8")
    documented = yaml.safe_load(command.DOCUMENTATION)["options"]
    assert set(documented) == {"argv", "stdin", "chdir", "changed_key", "read_only"}
    for name, option in documented.items():
        assert f'"{name}": {{"type": "{option["type"]}"' in source, name
