#!/usr/bin/env python3
"""Audit a release's pinned dependencies for known vulnerabilities, on the control node.

Reads app/requirements.txt at REVISION of REPO, runs pip-audit on it against the
configured vulnerability service (PyPI's advisories, or an OSV API such as
scripts/osv-mirror.py), and prints one JSON object: the verdict, what was found, and a
message for the operator. Exit 0 when the release may be built (no known vulnerability,
or only advisories allowed by id), 1 when it must be refused: a known vulnerability not
allowed, or an audit that did not happen. A package the service did not answer for
counts as not audited: never as clean.
  audit-release.py REPO REVISION --release NAME --pip-audit PATH --service pypi|osv
                   [--osv-url URL] [--timeout SECONDS] [--allow ID ...]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile

REQUIREMENTS = "app/requirements.txt"
OSV_MIRROR_HINT = (
    "an OSV mirror (download OSV's PyPI/all.zip on a connected machine, serve it with scripts/osv-mirror.py all.zip, "
    "then -e app_release_audit_service=osv -e app_release_osv_url=http://127.0.0.1:18099/v1/query)"
)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_names(text: str) -> list[str]:
    """The package names pinned in a requirements file (continuation lines and comments skipped)."""
    names = []
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==", line)
        if match:
            names.append(canonical(match.group(1)))
    return names


def service_label(service: str, osv_url: str) -> str:
    return f"{service} ({osv_url})" if service == "osv" and osv_url else service


def run_pip_audit(args: argparse.Namespace, requirements: str, packages: int) -> tuple[dict | None, str, bool]:
    """pip-audit's JSON; or None, why there is none, and whether the service is to blame."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="requirements-") as handle:
        handle.write(requirements)
        handle.flush()
        argv = [args.pip_audit, "--requirement", handle.name, "--no-deps", "--disable-pip", "--format", "json",
                "--progress-spinner", "off", "--timeout", str(args.timeout), "--vulnerability-service", args.service]
        if args.osv_url:
            argv += ["--osv-url", args.osv_url]
        # pip-audit asks once per package: bound the whole run, so a service that hangs ends the audit.
        limit = args.timeout * (packages + 2) + 30
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=limit, check=False)  # noqa: S603
        except FileNotFoundError:
            return None, f"pip-audit is not installed at {args.pip_audit} (app_release_pip_audit)", False
        except subprocess.TimeoutExpired:
            return None, f"pip-audit did not finish within {limit} s", True
    out = proc.stdout.strip()
    if out.startswith("{"):
        try:
            return json.loads(out), "", True
        except ValueError:
            pass
    last = (proc.stderr.strip().splitlines() or [f"rc {proc.returncode}, no output"])[-1]
    return None, f"pip-audit gave no answer: {last[:400]}", True


def decide(args: argparse.Namespace, audit: dict | None, reason: str, pinned: list[str], *,
           service_to_blame: bool = True) -> dict:
    service = service_label(args.service, args.osv_url)
    where = f"{REQUIREMENTS} at {args.revision[:12]}"
    packages = len(pinned)
    given = {a.strip().upper(): a.strip() for a in args.allow if a.strip()}
    allow = set(given)
    deps = (audit or {}).get("dependencies", [])
    skipped = [{"package": d.get("name", "?"), "reason": d["skip_reason"]} for d in deps if "skip_reason" in d]
    answered = {canonical(d.get("name", "")) for d in deps}
    skipped += [{"package": n, "reason": "missing from pip-audit's answer"} for n in pinned if n not in answered]
    vulns = []
    for dep in deps:
        for vuln in dep.get("vulns", []) if "skip_reason" not in dep else []:
            ids = [vuln.get("id", "?"), *vuln.get("aliases", [])]
            vulns.append({
                "package": dep.get("name", "?"), "version": dep.get("version", "?"), "id": ids[0],
                "aliases": ids[1:], "fix_versions": vuln.get("fix_versions", []),
                "allowed": any(i.upper() in allow for i in ids),
            })
    matched = {i.upper() for v in vulns for i in [v["id"], *v["aliases"]]}
    result = {
        "release": args.release, "revision": args.revision, "service": service, "packages": packages,
        "audited": max(len(deps) - len(skipped), 0), "vulnerabilities": vulns, "not_audited": skipped,
        "unused_allow": sorted(given[a] for a in allow if a not in matched),
    }

    if audit is None or not deps or skipped:
        why = reason or (
            f"no answer for {len(skipped)} of {packages} packages ({skipped[0]['package']}: {skipped[0]['reason']})"
            if skipped else "pip-audit listed no packages")
        remedy = (f"Point the audit at a vulnerability database this machine can reach, for instance "
                  f"{OSV_MIRROR_HINT}; or d") if service_to_blame else "D"
        result["verdict"] = "not_audited"
        result["summary"] = f"NOT AUDITED: pip-audit against {service}: {why}"
        result["message"] = (
            f"Release {args.release} is refused: its pinned dependencies ({where}) could not be audited against "
            f"{service}: {why}. A release is never taken as free of known vulnerabilities without an audit. "
            f"{remedy}eploy it unaudited on purpose with -e app_release_audit=false "
            "(the run then says NOT AUDITED).")
        return result

    def describe(v: dict) -> str:
        fixed = f"fixed in {', '.join(v['fix_versions'])}" if v["fix_versions"] else "no fixed version"
        aliases = f", also {', '.join(v['aliases'])}" if v["aliases"] else ""
        return f"{v['package']} {v['version']}: {v['id']} ({fixed}{aliases})"

    refused = [v for v in vulns if not v["allowed"]]
    allowed = [v for v in vulns if v["allowed"]]
    unused = f"; allowed but not found (remove from app_release_audit_allow): {', '.join(result['unused_allow'])}" \
        if result["unused_allow"] else ""
    if refused:
        ids = sorted({v["id"] for v in refused})
        suggested = sorted(set(given.values()) - set(result["unused_allow"]) | set(ids))
        result["verdict"] = "vulnerable"
        result["summary"] = (f"pip-audit against {service}: {len({v['package'] for v in refused})} of {packages} "
                             f"packages with known vulnerabilities not allowed")
        result["message"] = (
            f"Release {args.release} is refused: pip-audit against {service} knows vulnerabilities in its pinned "
            f"dependencies ({where}): {'; '.join(describe(v) for v in refused)}. "
            "Fix: raise those pins (make lock UPGRADE=<package>==<fixed version>), run the tests, commit, deploy the "
            "new revision. To deploy this release anyway, having judged each advisory, allow them by id: "
            f"-e '{json.dumps({'app_release_audit_allow': suggested})}' "
            "(or app_release_audit_allow in the inventory's group_vars)" + unused + ".")
    elif allowed:
        result["verdict"] = "allowed"
        result["summary"] = (f"pip-audit against {service}: {packages} packages audited; known vulnerabilities "
                             f"ALLOWED by app_release_audit_allow: {'; '.join(describe(v) for v in allowed)}{unused}")
        result["message"] = result["summary"]
    else:
        result["verdict"] = "clean"
        result["summary"] = f"pip-audit against {service}: no known vulnerabilities in {packages} packages{unused}"
        result["message"] = result["summary"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo")
    parser.add_argument("revision")
    parser.add_argument("--release", required=True)
    parser.add_argument("--pip-audit", required=True)
    parser.add_argument("--service", choices=["pypi", "osv"], required=True)
    parser.add_argument("--osv-url", default="")
    parser.add_argument("--timeout", type=int, default=15)
    parser.add_argument("--allow", action="append", default=[], help="an advisory id (or alias) to accept")
    args = parser.parse_args()

    shown = subprocess.run(["git", "-C", args.repo, "show", f"{args.revision}:{REQUIREMENTS}"],  # noqa: S603, S607
                           capture_output=True, text=True, check=False)
    if shown.returncode != 0:
        result = decide(args, None, f"{REQUIREMENTS} is not readable at that revision ({shown.stderr.strip()})", [],
                        service_to_blame=False)
    else:
        pinned = pinned_names(shown.stdout)
        audit, reason, service_to_blame = run_pip_audit(args, shown.stdout, len(pinned))
        result = decide(args, audit, reason, pinned, service_to_blame=service_to_blame)
    print(json.dumps(result))
    return 0 if result["verdict"] in ("clean", "allowed") else 1


if __name__ == "__main__":
    sys.exit(main())
