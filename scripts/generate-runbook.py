#!/usr/bin/env python3
"""Write docs/runbook.md from the playbooks themselves, so the runbook cannot drift; and
each role's README.md from its defaults and argument specs, so they cannot either.

Also the alert table in docs/monitoring.md, from the alert rules' own annotations.

For each root playbook: the manual's section it carries out, when to use it (the
playbook's own header comment), the -e inputs it reads, the variables of the roles
it uses (defaults from defaults/main.yml, types and allowed values from
meta/argument_specs.yml), and its steps in order (the task names, following
import_role/include_role/include_tasks into the roles).
  scripts/generate-runbook.py           rewrite docs/runbook.md and roles/*/README.md
  scripts/generate-runbook.py --check   fail when one of them differs from the code
"""

import argparse
import difflib
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "runbook.md"

# (playbook, the manual's section in Japanese, the English name): the manual's order.
PLAYBOOKS = [
    ("deploy.yml", "2. 環境構築・デプロイ", "Set-up and deploy"),
    ("service.yml", "3.1 サーバー起動・停止", "Start, stop, restart, status"),
    ("check.yml", "3.2 ヘルスチェック / 9. 性能監視 / 14. チェックリスト",
     "Health, limits and the daily and monthly checks"),
    ("backup.yml", "5.1 バックアップ", "Backup"),
    ("restore.yml", "5.2 復旧手順", "Restore"),
    ("maintenance.yml", "7. メンテナンス作業 / 11. 容量管理", "Maintenance and disk space"),
    ("update.yml", "7.3 アップデート手順 / 12. システム更新", "Update"),
    # The manual has no rollback: its §12.2 is the update template. The safe way back from an update.
    ("rollback.yml", "12. システム更新 (ロールバック、マニュアル外)", "Rollback (not in the manual)"),
    ("recover.yml", "10. 障害対応", "Incident response"),
]
ACTION_MODULES = ("import_role", "include_role", "include_tasks", "import_tasks")
JINJA_INPUT = re.compile(r"\{\{\s*([a-z_]+)\s*\|\s*default\(([^)]*)\)")


def load(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def header_comment(path: Path) -> list[str]:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        if not line.startswith("#"):
            break
        lines.append(line[1:].removeprefix(" "))
    return lines


def module_of(task: dict) -> tuple[str, dict | str | None]:
    for key, value in task.items():
        short = key.rsplit(".", 1)[-1]
        if short in ACTION_MODULES:
            return short, value
    return "", None


def condition(task: dict) -> str:
    when = task.get("when")
    if when is None:
        return ""
    if isinstance(when, list):
        # Ansible ands the items: one holding an `or` keeps its own parentheses.
        text = " and ".join(f"({w})" if " or " in str(w) and len(when) > 1 else str(w) for w in when)
    else:
        text = str(when)
    return f" *(when `{' '.join(text.split())}`)*"


class Walker:
    def __init__(self, choices: dict[str, list[str]] | None = None):
        self.roles: list[str] = []
        # Values a variable may take, read from the play's own asserts (`x in ['a', 'b']`).
        self.choices = choices or {}

    def role_tasks(self, role: str, tasks_from: str = "main") -> list[dict]:
        if role not in self.roles and role != "preflight":
            self.roles.append(role)
        path = ROOT / "roles" / role / "tasks" / f"{tasks_from}.yml"
        return load(path) or [] if path.exists() else []

    def steps(self, tasks: list[dict], role: str | None, depth: int = 0) -> list[str]:  # noqa: PLR0912
        out = []
        pad = "   " * depth
        for task in tasks or []:
            if "block" in task:
                if task.get("name"):
                    out.append(f"{pad}1. {task['name']}{condition(task)}")
                    inner = depth + 1
                else:
                    inner = depth
                out += self.steps(task["block"], role, inner)
                if task.get("rescue"):
                    out.append(f"{'   ' * inner}1. **If any step above fails:**")
                    out += self.steps(task["rescue"], role, inner + 1)
                if task.get("always"):
                    out.append(f"{'   ' * inner}1. **Whatever happened above:**")
                    out += self.steps(task["always"], role, inner + 1)
                continue
            kind, arg = module_of(task)
            name = task.get("name", "(unnamed)")
            if kind in ("import_role", "include_role"):
                target = arg["name"]
                if "{{" in target:  # the preflight loop over roles: one line says it
                    out.append(f"{pad}1. {name}{condition(task)}")
                    continue
                tasks_from = arg.get("tasks_from", "main")
                out.append(f"{pad}1. {name}{condition(task)}" if task.get("name") else "")
                chosen = re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", tasks_from)
                if chosen and chosen.group(1) in self.choices:  # one entry point per allowed value
                    for option in self.choices[chosen.group(1)]:
                        out.append(f"{pad}   1. with `{option}`:")
                        out += self.steps(self.role_tasks(target, option), target, depth + 2)
                    continue
                sub = self.role_tasks(target, tasks_from) if "{{" not in tasks_from else []
                out += self.steps(sub, target, depth + 1 if task.get("name") else depth)
            elif kind in ("include_tasks", "import_tasks"):
                file = arg if isinstance(arg, str) else arg.get("file")
                out.append(f"{pad}1. {name}{condition(task)}")
                path = ROOT / "roles" / (role or "") / "tasks" / file
                if role and path.exists():
                    out += self.steps(load(path), role, depth + 1)
            else:
                out.append(f"{pad}1. {name}{condition(task)}")
        return [line for line in out if line]


def argument_options(role: str) -> dict:
    path = ROOT / "roles" / role / "meta" / "argument_specs.yml"
    if not path.exists():
        return {}
    specs = load(path)["argument_specs"]
    return specs.get("main", next(iter(specs.values()))).get("options", {})


CONTRACT = ROOT / "playbooks" / "group_vars" / "all" / "contract.yml"
CONTRACT_PREFIX = "task_manager_"


def contract_table() -> list[str]:
    """The variables every role shares: defaults from the contract, types from preflight's specs."""
    options, defaults = argument_options("preflight"), load(CONTRACT) or {}
    rows = [(name, spec) for name, spec in options.items() if name.startswith(CONTRACT_PREFIX)]
    return variable_rows(rows, defaults)


def variable_rows(rows: list[tuple[str, dict]], defaults: dict) -> list[str]:
    out = ["| variable | default | type, allowed values | meaning |", "|---|---|---|---|"]
    for name, spec in rows:
        kind = spec.get("type", "str")
        if spec.get("choices"):
            kind += ": " + ", ".join(f"`{c}`" for c in spec["choices"])
        meaning = str(spec.get("description", "")).replace("|", "\\|").replace("\n", " ")
        default = value(defaults.get(name)).replace("|", "\\|") if name in defaults else "(none)"
        out.append(f"| `{name}` | {default} | {kind} | {meaning} |")
    return out


def defaults_of(role: str) -> dict:
    path = ROOT / "roles" / role / "defaults" / "main.yml"
    return (load(path) or {}) if path.exists() else {}


def value(v) -> str:
    text = yaml.safe_dump(v, default_flow_style=True, allow_unicode=True, width=10_000).strip()
    text = text.removesuffix("...").strip()
    return f"`{text}`" if text else "`''`"


def render_playbook(entry: str, section: str, english: str) -> list[str]:  # noqa: PLR0912
    real = ROOT / "playbooks" / entry
    plays = load(real)
    choices = {}
    for play in plays:
        for task in play.get("pre_tasks") or []:
            that = (task.get("ansible.builtin.assert") or {}).get("that", [])
            for cond in [that] if isinstance(that, str) else that:
                found = re.fullmatch(r"(\w+) in \[([^\]]*)\]", str(cond).strip())
                if found:
                    choices[found.group(1)] = re.findall(r"'([^']*)'", found.group(2))
    walker = Walker(choices)
    out = [f"## {section} ({english}): `{entry}`", ""]
    out += ["### いつ使うか (When to use it)", "", "```text", *header_comment(real), "```", ""]
    inputs, steps = {}, []
    for play in plays:
        for key, val in (play.get("vars") or {}).items():
            for name, default in JINJA_INPUT.findall(str(val)):
                if name not in ("ansible_check_mode",):
                    inputs[name] = (key, default.strip() or "''")
        steps += [f"1. {t['name']}" for t in play.get("pre_tasks") or []]
        for role in play.get("roles") or []:
            role_name = role["role"] if isinstance(role, dict) else role
            if role_name == "preflight":
                pre = play.get("vars", {}).get("preflight_roles", [])
                walker.roles += [r for r in pre if r not in walker.roles]
                steps.append("1. Preflight: nothing changes until every check below passes")
                steps += walker.steps(walker.role_tasks("preflight"), "preflight", 1)
                if pre:
                    steps.append(f"   1. (run for: {', '.join(f'`{r}`' for r in pre)})")
            else:
                steps.append(f"1. Role `{role_name}`")
                steps += walker.steps(walker.role_tasks(role_name), role_name, 1)
        steps += walker.steps(play.get("tasks") or [], None)
    if inputs:
        out += ["### 入力 (Inputs: `-e name=value`)", "", "| -e | sets | default |", "|---|---|---|"]
        out += [f"| `{name}` | `{key}` | `{default}` |" for name, (key, default) in sorted(inputs.items())]
        out.append("")
    out += ["### 手順 (Steps, in order)", "", *steps, ""]
    out += ["### 変数 (Variables of the roles it uses)", ""]
    for role in sorted(walker.roles):
        rows = [(n, spec) for n, spec in argument_options(role).items() if not n.startswith(CONTRACT_PREFIX)]
        if not rows:
            continue
        out += [f"#### `{role}`", "", *variable_rows(rows, defaults_of(role)), ""]
    return out


def render() -> str:
    out = ["# 運用手順書 (Runbook)", "",
           "<!-- Generated by scripts/generate-runbook.py from playbooks/, roles/*/tasks, roles/*/defaults and",
           "     roles/*/meta/argument_specs.yml. Do not edit: change the code and run `make runbook`. -->", "",
           "Every procedure of the operations manual (タスク管理システム 運用保守マニュアル, version 1.0) as the",
           "playbook that carries it out. Each runs from the repository root as",
           "`ansible-playbook <playbook> [-e name=value ...]`, refuses bad input before it changes anything,",
           "and can be previewed with `--check --diff`.", "", "## 目次 (Contents)", ""]
    out += [f"- [{section} ({english}): `{entry}`](#{anchor(section, english, entry)})"
            for entry, section, english in PLAYBOOKS]
    out += ["- [共通の設定 (The contract between the roles)](#共通の設定-the-contract-between-the-roles)", ""]
    for entry, section, english in PLAYBOOKS:
        out += render_playbook(entry, section, english)
    out += ["## 共通の設定 (The contract between the roles)", "",
            "Defined once in `playbooks/group_vars/all/contract.yml`, read by every role, overridable in an",
            "inventory's group_vars of a group (not its group_vars/all, which the contract outranks); the layout",
            "is also written to the host for the shipped commands.", "",
            *contract_table(), ""]
    return "\n".join(out).rstrip() + "\n"


def anchor(section: str, english: str, entry: str) -> str:
    text = f"{section} ({english}): `{entry}`".lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def render_role(role: str) -> str:
    """A role's README: what it does (its defaults' header), its entry points, its variables."""
    specs = load(ROOT / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]
    main = specs.get("main", next(iter(specs.values())))
    out = [f"# Role `{role}`", "",
           "<!-- Generated by scripts/generate-runbook.py from this role's defaults/main.yml and",
           "     meta/argument_specs.yml. Do not edit: change those and run `make runbook`. -->", "",
           f"{main.get('short_description', '').rstrip('.')}.", ""]
    defaults = ROOT / "roles" / role / "defaults" / "main.yml"
    about = [line for line in header_comment(defaults)] if defaults.exists() else []
    if about:
        out += [" ".join(line.strip() for line in about if line.strip()), ""]
    entries = [name for name in specs if name != "main"]
    if entries:
        out += ["Entry points besides `main` (`tasks_from`): " + ", ".join(f"`{name}`" for name in entries) + ".", ""]
    rows = list(main.get("options", {}).items())
    if rows:
        out += ["## Variables", "", *variable_rows(rows, defaults_of(role)), ""]
    out += ["Where each runbook uses it, step by step: [docs/runbook.md](../../docs/runbook.md).", ""]
    return "\n".join(out)


RULES = ROOT / "roles" / "monitoring" / "files" / "task-manager.rules.yml"
MONITORING_DOC = ROOT / "docs" / "monitoring.md"
ALERTS_BEGIN = ("<!-- alerts: generated by scripts/generate-runbook.py from "
                "roles/monitoring/files/task-manager.rules.yml -->")
ALERTS_END = "<!-- /alerts -->"


def cell(text: str) -> str:
    """An annotation as a table cell: Prometheus's templating named as a reader would."""
    text = re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", r"<\1>", " ".join(str(text).split()))
    text = re.sub(r"\{\{[^}]*\}\}", "…", text)
    return text.replace("|", "\\|")


def alert_table() -> str:
    """docs/monitoring.md with its alert table rewritten from the rules: each alert's level,
    when it fires (its description) and what to run (its runbook), as the alert says them."""
    rows = ["| alert | level | fires when | what to run |", "|---|---|---|---|"]
    for group in load(RULES)["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                notes = rule.get("annotations", {})
                rows.append(f"| `{rule['alert']}` | {rule.get('labels', {}).get('severity', '')} | "
                            f"{cell(notes.get('description', ''))} | {cell(notes.get('runbook', ''))} |")
    text = MONITORING_DOC.read_text(encoding="utf-8")
    head, found, rest = text.partition(ALERTS_BEGIN + "\n")
    _, ended, tail = rest.partition(ALERTS_END)
    if not (found and ended):
        raise SystemExit(f"{MONITORING_DOC.relative_to(ROOT)} lost its alert table's markers: "
                         f"{ALERTS_BEGIN} ... {ALERTS_END}")
    return head + found + "\n".join(rows) + "\n" + ended + tail


def outputs() -> dict[Path, str]:
    found = {OUT: render(), MONITORING_DOC: alert_table()}
    for specs in sorted((ROOT / "roles").glob("*/meta/argument_specs.yml")):
        role = specs.parent.parent.name
        found[ROOT / "roles" / role / "README.md"] = render_role(role)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail when a generated page is out of date")
    args = parser.parse_args()
    stale = []
    for path, text in outputs().items():
        name = str(path.relative_to(ROOT))
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current == text:
            continue
        if args.check:
            diff = difflib.unified_diff(current.splitlines(), text.splitlines(), f"{name} (committed)",
                                        f"{name} (from the code)", lineterm="", n=1)
            print("\n".join(list(diff)[:60]))
            stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"written: {name}")
    if stale:
        print(f"{', '.join(stale)} no longer match the code: run `make runbook` and commit them.", file=sys.stderr)
        return 1
    if args.check:
        print("docs/runbook.md, the roles' READMEs and the alert table match the code")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
