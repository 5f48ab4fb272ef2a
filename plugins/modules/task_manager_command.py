#!/usr/bin/python
"""Run one of the project's host commands and read its JSON answer: whether it failed,
whether it changed anything and what to tell the operator are decided here, once, instead
of `from_json` and `changed_when` in every role."""

from __future__ import annotations

import json
import os

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: task_manager_command
short_description: Run a task manager host command and read its JSON answer
description:
  - Runs I(argv) without a shell and parses what it printed as JSON (the whole output, or
    else its last line, for the commands that print progress first).
  - The answer is returned as C(answer). C(changed) is the answer's C(changed) key (or the
    key named by I(changed_key)); C(msg) on failure is the answer's C(message) or C(error),
    else the last line of stderr.
  - In check mode the command runs only when I(read_only) is true; otherwise the task is
    skipped and says what it would have run.
options:
  argv:
    description: The command and its arguments.
    type: list
    elements: str
    required: true
  stdin:
    description: Written to the command's standard input; a secret, never logged.
    type: str
  chdir:
    description: The directory to run in.
    type: path
  changed_key:
    description: The answer's key that says it changed something (empty for a command that never changes anything).
    type: str
    default: changed
  read_only:
    description: The command changes nothing, so it runs in check mode too.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Drain the app host in the load balancer
  task_manager_command:
    argv: [task-manager-lb, drain, app1]
  delegate_to: lb1
"""

RETURN = r"""
answer:
  description: The command's JSON answer ({} when it printed nothing).
  returned: when the command ran
  type: raw
rc:
  description: The command's exit status.
  returned: when the command ran
  type: int
"""


def parse_answer(stdout: str):
    """The JSON the command printed: its whole output, else its last non-empty line, else
    None (it printed something that is not JSON). Nothing printed is an empty answer."""
    text = stdout.strip()
    if not text:
        return {}
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return json.loads(text.splitlines()[-1])
    except ValueError:
        return None


def reason(name: str, stderr: str) -> str:
    """The last line the command wrote to stderr, without its own name and FAILED: the
    commands end a failure with "<name>: FAILED: <why>"."""
    line = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    for prefix in (f"{name}: ", "FAILED: "):
        line = line.removeprefix(prefix)
    return line


def judge(argv: list[str], rc: int, output: tuple[str, str], changed_key: str = "changed") -> dict:
    """The task's result from what the command did (output: its stdout and stderr): pure, so
    that pytest checks every case."""
    stdout, stderr = output
    answer = parse_answer(stdout)
    result = {"cmd": argv, "rc": rc, "stdout": stdout, "stderr": stderr, "answer": answer if answer is not None else {},
              "changed": False, "failed": False}
    said = answer if isinstance(answer, dict) else {}
    name = os.path.basename(argv[0])
    if rc != 0:
        result["failed"] = True
        result["msg"] = str(said.get("message") or said.get("error") or reason(name, stderr)
                            or f"{name} exited with status {rc}")
        return result
    if answer is None:
        result["failed"] = True
        result["msg"] = f"{name} answered no JSON: {stdout.strip()[-300:]}"
        return result
    result["changed"] = bool(changed_key and said.get(changed_key))
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "argv": {"type": "list", "elements": "str", "required": True},
            "stdin": {"type": "str", "no_log": True},
            "chdir": {"type": "path"},
            "changed_key": {"type": "str", "default": "changed", "no_log": False},
            "read_only": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    argv = module.params["argv"]
    if module.check_mode and not module.params["read_only"]:
        # As ansible.builtin.command answers in check mode: a caller may test rc.
        module.exit_json(changed=False, failed=False, skipped=True, rc=None, stdout="", stderr="", answer={},
                         msg=f"would run {' '.join(argv)}")
    rc, stdout, stderr = module.run_command(argv, data=module.params["stdin"], binary_data=False,
                                            cwd=module.params["chdir"], check_rc=False,
                                            expand_user_and_vars=False)
    result = judge(argv, rc, (stdout, stderr), module.params["changed_key"])
    if result.pop("failed"):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
